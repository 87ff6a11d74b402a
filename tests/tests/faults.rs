//! Faults under load, with real processes: Redis killed and restarted from its
//! AOF, Redis frozen, ping-host stopped with SIGTERM. Whatever happens, every
//! count answered with 200 is unique and no acknowledged increment is lost.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{JoinHandle, sleep};
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use ping_e2e::{Host, HostConfig, Redis, client, get, request, write_fixture};

/// The tests here load the machine; run them one at a time so that one
/// test's load does not distort another's recovery times.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// One `/ping` as a client saw it.
#[derive(Debug, Clone)]
struct Outcome {
    at: Instant,
    /// The HTTP status, or None when the connection failed.
    status: Option<u16>,
    count: Option<i64>,
    took: Duration,
}

/// `threads` clients sending `/ping` back to back until `stop` is set.
fn load(url: String, threads: usize, stop: Arc<AtomicBool>) -> Vec<JoinHandle<Vec<Outcome>>> {
    (0..threads)
        .map(|_| {
            let url = url.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(15))
                    .build()
                    .expect("client");
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let reply = request(&http, "GET", &url, &[]);
                    let took = started.elapsed();
                    seen.push(match reply {
                        Ok(r) => Outcome {
                            at: Instant::now(),
                            status: Some(r.status),
                            count: (r.status == 200)
                                .then(|| r.body.trim().parse().ok())
                                .flatten(),
                            took,
                        },
                        Err(_) => {
                            // Refused connections come back at once; don't spin.
                            sleep(Duration::from_millis(5));
                            Outcome {
                                at: Instant::now(),
                                status: None,
                                count: None,
                                took,
                            }
                        }
                    });
                }
                seen
            })
        })
        .collect()
}

fn collect(handles: Vec<JoinHandle<Vec<Outcome>>>) -> Vec<Outcome> {
    let mut all: Vec<Outcome> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("load thread"))
        .collect();
    all.sort_by_key(|o| o.at);
    all
}

/// Every acknowledged count is unique and at most `final_count`; returns how
/// many there were.
fn acknowledged_counts_hold(outcomes: &[Outcome], final_count: i64) -> Result<usize> {
    let counts: Vec<i64> = outcomes.iter().filter_map(|o| o.count).collect();
    let unique: HashSet<i64> = counts.iter().copied().collect();
    ensure!(
        unique.len() == counts.len(),
        "{} counts were answered twice",
        counts.len() - unique.len()
    );
    let max = counts.iter().copied().max().unwrap_or(0);
    ensure!(
        max <= final_count,
        "an acknowledged count ({max}) is above the final counter ({final_count}): increments were lost"
    );
    Ok(counts.len())
}

#[test]
fn redis_killed_under_load_and_restarted_from_its_aof_loses_nothing_acknowledged() -> Result<()> {
    let _serial = serial();
    let mut redis = Redis::start()?;
    let host = Host::start(&HostConfig::for_redis(&redis))?;
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(host.url("/ping"), 8, stop.clone());
    sleep(Duration::from_secs(2));
    redis.kill(); // SIGKILL: no chance to flush anything
    let killed = Instant::now();
    sleep(Duration::from_secs(2));
    let restarting = Instant::now();
    redis.restart()?; // same data directory: the AOF replays
    let back = Instant::now();
    sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let outcomes = collect(clients);
    let final_count = redis.counter("ping")?;

    let acked = acknowledged_counts_hold(&outcomes, final_count)?;
    let before: Vec<&Outcome> = outcomes.iter().filter(|o| o.at < killed).collect();
    // Sent after the kill, answered before the restart began. (A reply to an
    // INCR Redis ran just before dying may still arrive after the kill.)
    let during: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.at - o.took > killed && o.at < restarting)
        .collect();
    let last_before = before.iter().filter_map(|o| o.count).max().unwrap_or(0);
    ensure!(
        last_before > 100,
        "too little load before the kill: {last_before}"
    );
    // During the outage: 503, quickly (a refused connection), never a hang.
    ensure!(!during.is_empty(), "no requests during the outage");
    for o in &during {
        ensure!(o.status == Some(503), "during the outage: {o:?}");
        ensure!(o.took < Duration::from_secs(3), "a request hung: {o:?}");
    }
    // After: counting resumes above everything acknowledged before the kill.
    let first_after = outcomes
        .iter()
        .find(|o| o.at > restarting && o.status == Some(200))
        .ok_or_else(|| anyhow::anyhow!("no 200 after Redis came back"))?;
    // From the moment restart() saw Redis answer (a 200 may even come first).
    let recovered_in = first_after.at.saturating_duration_since(back);
    ensure!(
        recovered_in < Duration::from_secs(2),
        "first 200 came {recovered_in:?} after Redis was back"
    );
    ensure!(
        first_after.count > Some(last_before),
        "{first_after:?} after {last_before}"
    );
    let slowest_503 = during.iter().map(|o| o.took).max().unwrap_or_default();
    eprintln!(
        "{} requests: {acked} acknowledged, {} answered 503 during the outage (slowest {slowest_503:?}); last count before the kill {last_before}, final {final_count}; recovered {recovered_in:?} after restart",
        outcomes.len(),
        during.len()
    );
    Ok(())
}

#[test]
fn a_frozen_redis_gives_bounded_503s_then_recovers() -> Result<()> {
    let _serial = serial();
    let redis = Redis::start()?;
    let host = Host::start(
        &HostConfig::for_redis(&redis)
            .arg("--redis-response-timeout-ms")
            .arg("500"),
    )?;
    ensure!(get(&host.url("/ping"))?.body == "1\n");
    redis.pause()?;
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut answered = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let reply = request(&http, "GET", &host.url("/ping"), &[])?;
        answered.push(started.elapsed());
        ensure!(reply.status == 503, "{reply:?}");
        ensure!(reply.body.contains("timed out"), "{}", reply.body);
    }
    redis.resume()?;
    let recovered = Instant::now();
    let count = ping_e2e::wait_until(Duration::from_secs(10), "a 200 after thawing", || {
        let r = get(&host.url("/ping")).ok()?;
        (r.status == 200).then_some(r.body)
    })?;
    eprintln!(
        "frozen Redis: 503 after {answered:?}; 200 again {:?} after SIGCONT, count {}",
        recovered.elapsed(),
        count.trim()
    );
    // The INCRs sent while Redis was frozen were applied when it thawed
    // although their clients got 503: an unacknowledged increment may count,
    // an acknowledged one is never lost.
    let n: i64 = count.trim().parse()?;
    ensure!((2..=7).contains(&n), "count {n}");
    Ok(())
}

#[test]
fn sigterm_under_load_drains_in_flight_requests_and_corrupts_nothing() -> Result<()> {
    let _serial = serial();
    let redis = Redis::start()?;
    let dir = tempfile::tempdir()?;
    let manifest = write_fixture(dir.path(), "ping-and-misbehave")?;
    let config = HostConfig::for_redis(&redis).manifest(&manifest);
    let mut host = Host::start(&config)?;
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(host.url("/ping"), 6, stop.clone());
    sleep(Duration::from_secs(1));
    // A slow request in flight when the signal arrives.
    let slow_url = host.url("/sleep?ms=1500");
    let slow = std::thread::spawn(move || request(&client(), "GET", &slow_url, &[]));
    sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    let status = host.terminate()?;
    let exited = Instant::now();
    sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let outcomes = collect(clients);
    let slow = slow.join().expect("slow thread")?;

    ensure!(status.success(), "ping-host exited with {status}");
    ensure!(
        slow.status == 200 && slow.body == "slept 1500 ms",
        "the in-flight request was cut: {slow:?}"
    );
    ensure!(
        exited.duration_since(signalled) >= Duration::from_millis(900),
        "ping-host exited before its in-flight request finished"
    );
    // Every answer was a 200 or a refused connection: nothing half-done.
    for o in &outcomes {
        ensure!(matches!(o.status, Some(200) | None), "{o:?}");
    }
    ensure!(
        outcomes.iter().any(|o| o.status.is_none() && o.at > exited),
        "new requests after shutdown were not refused"
    );
    let final_count = redis.counter("ping")?;
    let acked = acknowledged_counts_hold(&outcomes, final_count)?;
    ensure!(
        acked as i64 == final_count,
        "{acked} increments acknowledged but the counter is {final_count}"
    );
    // A new ping-host carries on from there.
    let host = Host::start(&config)?;
    let next = get(&host.url("/ping"))?;
    ensure!(
        next.body.trim() == (final_count + 1).to_string(),
        "{next:?}"
    );
    eprintln!(
        "SIGTERM under load: {acked} acknowledged pings, counter {final_count}, slow request finished, exit {status}"
    );
    Ok(())
}

#[test]
fn the_load_helper_sees_failures() -> Result<()> {
    // Nothing listens on this port: every request is a refused connection.
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(
        format!("http://127.0.0.1:{}/ping", ping_e2e::free_port()),
        2,
        stop.clone(),
    );
    sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let outcomes = collect(clients);
    if outcomes.iter().any(|o| o.status.is_some()) {
        bail!("a dead port answered: {outcomes:?}");
    }
    ensure!(!outcomes.is_empty());
    Ok(())
}
