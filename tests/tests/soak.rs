//! A bounded soak: `/ping` at half of what this client can drive, for
//! PING_SOAK_SECS seconds (60 in `make test`; `make soak` runs 600). No
//! request may fail, ping-host's resident memory must stay flat once warm,
//! and the counter must equal the number of acknowledged pings exactly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use ping_e2e::{Host, HostConfig, Redis, request};

const CLIENTS: usize = 8;
/// Growth of resident memory allowed between the warm baseline and the end.
const RSS_SLACK: u64 = 8 * 1024 * 1024;

fn soak_secs() -> u64 {
    std::env::var("PING_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// `CLIENTS` threads sending `/ping`; with `rate` set, paced to that many
/// requests per second in total, else as fast as they can.
fn drive(host: &Host, tally: &Arc<Tally>, secs: f64, rate: Option<f64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let url = host.url("/ping");
            let tally = tally.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let http = ping_e2e::client();
                let period = rate.map(|r| Duration::from_secs_f64(CLIENTS as f64 / r));
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    match request(&http, "GET", &url, &[]) {
                        Ok(r) if r.status == 200 => tally.ok.fetch_add(1, Ordering::Relaxed),
                        _ => tally.failed.fetch_add(1, Ordering::Relaxed),
                    };
                    if let Some(p) = period {
                        next += p;
                        if let Some(wait) = next.checked_duration_since(Instant::now()) {
                            sleep(wait);
                        }
                    }
                }
            })
        })
        .collect();
    sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("client thread");
    }
}

#[test]
fn soak_at_half_capacity_keeps_memory_flat_and_the_count_exact() -> Result<()> {
    let secs = soak_secs();
    let redis = Redis::start()?;
    let host = Host::start(&HostConfig::for_redis(&redis))?;
    let tally = Arc::new(Tally {
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });

    // Capacity: what these clients drive flat out for 3 s (this also warms up).
    drive(&host, &tally, 3.0, None);
    let warm_up = tally.ok.load(Ordering::Relaxed);
    let capacity = warm_up as f64 / 3.0;
    let rate = capacity / 2.0;
    let baseline = host.rss_bytes()?;

    let started = Instant::now();
    let sampler = {
        let pid = host.pid();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while started.elapsed() < Duration::from_secs(secs) {
                sleep(Duration::from_secs(5));
                if let Ok(bytes) = ping_e2e::rss_bytes_of(pid) {
                    samples.push(bytes);
                }
            }
            samples
        })
    };
    drive(&host, &tally, secs as f64, Some(rate));
    let samples = sampler.join().expect("sampler");
    let end = host.rss_bytes()?;

    let ok = tally.ok.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    let counter = redis.counter("ping")?;
    let peak = samples.iter().copied().max().unwrap_or(end);
    eprintln!(
        "soak {secs}s at {rate:.0} req/s (capacity {capacity:.0}): {ok} ok, {failed} failed; counter {counter}; RSS {} MiB warm, {} MiB peak, {} MiB at the end",
        baseline / (1 << 20),
        peak / (1 << 20),
        end / (1 << 20)
    );
    ensure!(failed == 0, "{failed} requests failed");
    ensure!(
        counter == ok as i64,
        "{ok} pings acknowledged, counter {counter}"
    );
    let soaked = ok - warm_up;
    ensure!(
        (soaked as f64) > rate * secs as f64 * 0.8,
        "the soak ran below its rate: {soaked} requests in {secs} s"
    );
    ensure!(
        end <= baseline + RSS_SLACK && peak <= baseline + RSS_SLACK,
        "resident memory grew: {baseline} warm, {peak} peak, {end} at the end (samples {samples:?})"
    );
    Ok(())
}
