//! Redis going away: /ping fails fast with 503, the rest keeps working, and
//! service resumes by itself when Redis returns.

use std::time::Duration;

use ping_e2e::{Host, HostConfig, Redis, get, wait_until};

#[test]
fn redis_outage_is_503_then_recovers_without_a_restart() -> anyhow::Result<()> {
    outage_then_recovery(&[])
}

/// The same with reused instances, which keep their Redis connection between
/// requests: reuse changes neither the outage's 503s nor the recovery. (It
/// cannot tell whether the component drops its connection after a failure:
/// ping-host's connection reconnects by itself either way.)
#[test]
fn redis_outage_with_instance_reuse_is_503_then_recovers() -> anyhow::Result<()> {
    outage_then_recovery(&["--instance-reuse", "128"])
}

fn outage_then_recovery(args: &[&str]) -> anyhow::Result<()> {
    let mut redis = Redis::start()?;
    let config = args
        .iter()
        .fold(HostConfig::for_redis(&redis), |config, arg| {
            config.arg(*arg)
        });
    let host = Host::start(&config)?;
    assert_eq!(get(&host.url("/ping"))?.body, "1\n");

    redis.kill();
    // The client times out after 30 s, so a hang fails this test rather than blocking it.
    for path in ["/ping", "/count", "/test"] {
        let r = get(&host.url(path))?;
        assert_eq!(r.status, 503, "{path}: {}", r.body);
        assert!(
            r.body.starts_with("redis unavailable"),
            "{path}: {}",
            r.body
        );
    }
    let hello = get(&host.url("/"))?;
    assert_eq!(
        (hello.status, hello.body.as_str()),
        (200, "Hello!"),
        "routes without Redis keep working"
    );

    redis.restart()?;
    let next = wait_until(Duration::from_secs(20), "/ping to succeed again", || {
        get(&host.url("/ping")).ok().filter(|r| r.status == 200)
    })?;
    assert_eq!(next.body, "2\n", "AOF kept the count across the outage");
    Ok(())
}
