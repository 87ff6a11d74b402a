//! 2,000 pings from 64 concurrent connections: none lost, none repeated,
//! with a fresh instance per request and with instances reused.

use ping_e2e::{Host, HostConfig, Redis, pings_are_exact_and_unique};

const CONNECTIONS: usize = 64;
const TOTAL: usize = 2000;

#[test]
fn concurrent_pings_are_exact_and_unique() -> anyhow::Result<()> {
    let (_host, redis) = exact_and_unique(&["--threads", "2"])?;
    // Each serving thread keeps its own connection, driven by its own runtime
    // (64 connections spread by SO_REUSEPORT reach both threads).
    let list: String = redis.cmd(&["CLIENT", "LIST"])?;
    let hosts = list.lines().filter(|l| l.contains("cmd=incr")).count();
    assert_eq!(hosts, 2, "one Redis connection per serving thread:\n{list}");
    Ok(())
}

#[test]
fn concurrent_pings_are_exact_and_unique_with_instance_reuse() -> anyhow::Result<()> {
    exact_and_unique(&["--instance-reuse", "128"]).map(drop)
}

/// Runs the pings against a host started with `args`; hands back the host,
/// still serving, and its Redis.
fn exact_and_unique(args: &[&str]) -> anyhow::Result<(Host, Redis)> {
    let redis = Redis::start()?;
    let config = args
        .iter()
        .fold(HostConfig::for_redis(&redis), |config, arg| {
            config.arg(*arg)
        });
    let host = Host::start(&config)?;
    pings_are_exact_and_unique(&host.url("/ping"), CONNECTIONS, TOTAL)?;
    assert_eq!(
        redis.counter("ping")?,
        TOTAL as i64,
        "the final count equals the requests made"
    );
    Ok((host, redis))
}
