//! The command line as users and log shippers meet it: logs written to a file
//! carry no terminal colour codes, `--log-format json` writes one JSON object
//! per line, and durations take units while the old integer flags still work.

use anyhow::{Result, ensure};
use std::time::{Duration, Instant};

use ping_e2e::{Host, HostConfig, Redis, get, write_fixture};

#[test]
fn logs_to_a_file_are_plain_text() -> Result<()> {
    let redis = Redis::start()?;
    let host = Host::start(&HostConfig::for_redis(&redis))?;
    ensure!(get(&host.url("/ping"))?.status == 200);
    let logs = host.logs();
    ensure!(logs.contains("serving on"), "{logs}");
    ensure!(
        !logs.contains('\u{1b}'),
        "ANSI escape codes in a log file: {logs:?}"
    );
    Ok(())
}

#[test]
fn json_logs_are_one_object_per_line() -> Result<()> {
    let redis = Redis::start()?;
    let host = Host::start(
        &HostConfig::for_redis(&redis)
            .arg("--log-format")
            .arg("json"),
    )?;
    ensure!(get(&host.url("/ping"))?.status == 200);
    let logs = host.logs();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(!lines.is_empty(), "no log lines");
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| anyhow::anyhow!("not JSON ({e}): {line}"))?;
        ensure!(value["level"].is_string(), "no level: {line}");
    }
    ensure!(
        lines.iter().any(|l| l.contains("serving on")),
        "the start-up line is there: {logs}"
    );
    Ok(())
}

/// The deadline is what the flag says, in either spelling: a guest that loops
/// is stopped with 504 after it (30 s by default).
#[test]
fn durations_take_units_and_the_old_spellings_still_work() -> Result<()> {
    for args in [["--request-timeout", "1s"], ["--request-timeout-secs", "1"]] {
        let dir = tempfile::tempdir()?;
        let manifest = write_fixture(dir.path(), "misbehave")?;
        let host = Host::start(
            &HostConfig::default()
                .manifest(manifest)
                .arg(args[0])
                .arg(args[1]),
        )?;
        let asked = Instant::now();
        let reply = get(&host.url("/loop"))?;
        let took = asked.elapsed();
        ensure!(reply.status == 504, "{args:?}: {reply:?}");
        ensure!(
            took < Duration::from_secs(10),
            "{args:?}: stopped after {took:?}"
        );
    }
    Ok(())
}

#[test]
fn a_duration_without_a_unit_is_refused_with_the_fix() -> Result<()> {
    let (status, stderr) = HostConfig::default()
        .arg("--request-timeout")
        .arg("30")
        .run_to_exit()?;
    ensure!(!status.success());
    ensure!(
        stderr.contains("--request-timeout") && stderr.contains("with a unit, like 30s"),
        "{stderr}"
    );
    let (status, stderr) = HostConfig::default()
        .arg("--request-timeout")
        .arg("2s")
        .arg("--request-timeout-secs")
        .arg("2")
        .run_to_exit()?;
    ensure!(!status.success());
    ensure!(stderr.contains("cannot be used with"), "{stderr}");
    Ok(())
}
