//! The Redis password never leaves where it belongs: not in logs, error
//! bodies, either /metrics, or the runtime's info endpoint. (The OCI artifact
//! is covered in oci.rs: a value set for a variable never reaches it.)

use anyhow::{Result, ensure};
use ping_e2e::{Host, HostConfig, Redis, free_port, get};

const PASSWORD: &str = "Sup3r-S3cret_pw!";
const WRONG: &str = "Wr0ng-S3cret_pw!";

fn host_with(redis: &Redis, password: &str) -> Result<(Host, String)> {
    let metrics_port = free_port();
    let host = Host::start(
        &HostConfig::for_redis(redis)
            .arg("--variable")
            .arg(format!("redis_password={password}"))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics_port}")),
    )?;
    Ok((host, format!("http://127.0.0.1:{metrics_port}/metrics")))
}

#[test]
fn the_redis_password_appears_nowhere() -> Result<()> {
    let redis = Redis::start_with_password(Some(PASSWORD))?;
    let mut seen = Vec::new();
    for password in [PASSWORD, WRONG] {
        let (host, metrics) = host_with(&redis, password)?;
        let ping = get(&host.url("/ping"))?;
        ensure!(
            ping.status == if password == PASSWORD { 200 } else { 503 },
            "{ping:?}"
        );
        seen.push(("/ping body", ping.body));
        seen.push(("/test body", get(&host.url("/test"))?.body));
        seen.push(("component /metrics", get(&host.url("/metrics"))?.body));
        seen.push(("ping-host /metrics", get(&metrics)?.body));
        seen.push(("info", get(&host.url("/.well-known/spin/info"))?.body));
        seen.push(("logs", host.logs()));
    }
    // The wrong password really failed, so error paths were exercised.
    ensure!(seen[6].1.contains("redis unavailable"), "{}", seen[6].1);
    for (where_, text) in &seen {
        for secret in [PASSWORD, WRONG] {
            ensure!(
                !text.contains(secret),
                "the password is in the {where_}:\n{text}"
            );
        }
    }
    Ok(())
}
