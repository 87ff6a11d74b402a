//! What the command-line flag groups share. Each module owns its flags (a
//! `#[derive(clap::Args)]` struct flattened into `ping-host up`, as Spin's
//! trigger `CliArgs` and wasmtime's `RunCommon` are), with defaults taken from
//! the type the flags fill in.

use std::time::Duration;

/// A duration flag that also has an old unit-suffixed integer spelling
/// (`--request-timeout 30s` and the hidden `--request-timeout-secs 30`): the
/// old one wins when given, so scripts written for it keep working.
pub(crate) fn duration(
    flag: humantime::Duration,
    legacy: Option<u64>,
    unit: fn(u64) -> Duration,
) -> Duration {
    legacy.map_or(*flag, unit)
}
