//! 2,000 pings from 64 concurrent connections: none lost, none repeated,
//! with a fresh instance per request and with instances reused.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use ping_e2e::{Host, HostConfig, Redis, client, request};

const CONNECTIONS: usize = 64;
const PER_CONNECTION: usize = 2000 / CONNECTIONS + 1; // 32 connections do one more
const TOTAL: usize = 2000;

#[test]
fn concurrent_pings_are_exact_and_unique() -> anyhow::Result<()> {
    let (_host, redis) = exact_and_unique(&["--threads", "2"])?;
    // Each serving thread keeps its own connection, driven by its own runtime
    // (64 connections spread by SO_REUSEPORT reach both threads).
    let list: String = redis.cmd(&["CLIENT", "LIST"])?;
    let hosts = list
        .lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .count();
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
    let mut config = HostConfig::for_redis(&redis);
    for a in args {
        config = config.arg(*a);
    }
    let host = Host::start(&config)?;
    let url = host.url("/ping");
    let seen = Arc::new(Mutex::new(Vec::with_capacity(TOTAL)));
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let (url, seen) = (url.clone(), seen.clone());
            // Spread TOTAL exactly: the first TOTAL % CONNECTIONS threads do one more.
            let n = if i < TOTAL % CONNECTIONS {
                PER_CONNECTION
            } else {
                PER_CONNECTION - 1
            };
            std::thread::spawn(move || -> anyhow::Result<()> {
                let c = client(); // one keep-alive connection per thread
                for _ in 0..n {
                    let r = request(&c, "GET", &url, &[])?;
                    anyhow::ensure!(r.status == 200, "status {} body {}", r.status, r.body);
                    let count: i64 = r.body.trim().parse()?;
                    seen.lock().expect("lock").push(count);
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread")?;
    }
    let counts = seen.lock().expect("lock").clone();
    assert_eq!(counts.len(), TOTAL);
    let unique: HashSet<_> = counts.iter().collect();
    assert_eq!(unique.len(), TOTAL, "every request got its own count");
    assert_eq!(
        redis.counter("ping")?,
        TOTAL as i64,
        "the final count equals the requests made"
    );
    assert_eq!(counts.iter().max(), Some(&(TOTAL as i64)));
    assert_eq!(counts.iter().min(), Some(&1));
    Ok((host, redis))
}
