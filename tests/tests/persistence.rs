//! The count survives the host and Redis restarting.

use ping_e2e::{Host, HostConfig, Redis, get};

fn ping(host: &Host) -> anyhow::Result<i64> {
    let r = get(&host.url("/ping"))?;
    anyhow::ensure!(r.status == 200, "status {} body {}", r.status, r.body);
    Ok(r.body.trim().parse()?)
}

#[test]
fn restarting_the_host_continues_the_count() -> anyhow::Result<()> {
    let redis = Redis::start()?;
    let config = HostConfig::for_redis(&redis);
    let mut host = Host::start(&config)?;
    for _ in 0..5 {
        ping(&host)?;
    }
    assert!(host.terminate()?.success(), "SIGTERM is a clean exit");
    let host = Host::start(&config)?;
    assert_eq!(ping(&host)?, 6);
    Ok(())
}

#[test]
fn killing_redis_loses_no_acknowledged_increment() -> anyhow::Result<()> {
    let mut redis = Redis::start()?;
    let host = Host::start(&HostConfig::for_redis(&redis))?;
    let mut acknowledged = 0;
    for _ in 0..50 {
        acknowledged = ping(&host)?;
    }
    // SIGKILL: with appendfsync always every acknowledged INCR is already on disk.
    redis.kill();
    redis.restart()?;
    assert_eq!(redis.counter("ping")?, acknowledged);
    let next = ping_e2e::wait_until(
        std::time::Duration::from_secs(20),
        "/ping to work again",
        || ping(&host).ok(),
    )?;
    assert_eq!(
        next,
        acknowledged + 1,
        "the host reconnected by itself and continued"
    );
    Ok(())
}
