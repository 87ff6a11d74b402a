//! Instance reuse (`--instance-reuse N`): off by default, so a request never
//! sees another request's state; when on, one instance serves up to N requests
//! in turn, and an instance that traps, runs past the deadline, hits its
//! memory limit or sits idle past `--idle-instance-timeout` is retired without
//! failing any later request. The component is tests/misbehave: `/served`
//! answers how many requests its instance has served, this one included.

use std::time::Duration;

use anyhow::{Result, ensure};
use ping_e2e::{Host, HostConfig, get, write_fixture};

/// ping-host serving the misbehaving component with `args`.
fn host(args: &[&str]) -> Result<(tempfile::TempDir, Host)> {
    let dir = tempfile::tempdir()?;
    let manifest = write_fixture(dir.path(), "misbehave")?;
    let mut config = HostConfig::default().manifest(&manifest);
    for a in args {
        config = config.arg(*a);
    }
    let host = Host::start(&config)?;
    Ok((dir, host))
}

/// `/served` `n` times in a row: what each instance said.
fn served(host: &Host, n: usize) -> Result<Vec<u32>> {
    (0..n)
        .map(|_| {
            let r = get(&host.url("/served"))?;
            ensure!(r.status == 200, "{r:?}");
            Ok(r.body.trim().parse()?)
        })
        .collect()
}

#[test]
fn by_default_every_request_gets_a_fresh_instance() -> Result<()> {
    let (_dir, host) = host(&[])?;
    ensure!(served(&host, 20)? == vec![1; 20]);
    Ok(())
}

#[test]
fn a_reused_instance_serves_n_requests_then_is_retired() -> Result<()> {
    let (_dir, host) = host(&["--instance-reuse", "4"])?;
    let seen = served(&host, 10)?;
    ensure!(seen == [1, 2, 3, 4, 1, 2, 3, 4, 1, 2], "{seen:?}");
    Ok(())
}

/// With reuse on (`args`), a warm instance that fails on `path` with `status`
/// is retired: the next requests get a fresh instance, and succeed.
fn failed_instance_is_retired(args: &[&str], path: &str, status: u16) -> Result<()> {
    let (_dir, host) = host(args)?;
    ensure!(served(&host, 2)? == [1, 2]);
    let failed = get(&host.url(path))?;
    ensure!(failed.status == status, "{failed:?}");
    // A fresh instance, not the one that failed.
    ensure!(served(&host, 2)? == [1, 2]);
    Ok(())
}

#[test]
fn a_trap_retires_the_instance_and_the_next_request_succeeds() -> Result<()> {
    failed_instance_is_retired(&["--instance-reuse", "16"], "/trap", 500)
}

#[test]
fn a_timed_out_instance_is_retired() -> Result<()> {
    let args = ["--instance-reuse", "16", "--request-timeout", "300ms"];
    failed_instance_is_retired(&args, "/loop", 504)
}

#[test]
fn an_instance_past_its_memory_limit_is_retired() -> Result<()> {
    let args = ["--instance-reuse", "16", "--max-instance-memory-mib", "16"];
    failed_instance_is_retired(&args, "/grow", 500)
}

#[test]
fn an_idle_instance_is_dropped_after_the_idle_timeout() -> Result<()> {
    let (_dir, host) = host(&["--instance-reuse", "16", "--idle-instance-timeout", "200ms"])?;
    ensure!(served(&host, 2)? == [1, 2]);
    std::thread::sleep(Duration::from_millis(500));
    ensure!(served(&host, 2)? == [1, 2]);
    Ok(())
}

#[test]
fn instance_reuse_zero_is_refused_with_the_flag_named() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let manifest = write_fixture(dir.path(), "misbehave")?;
    let (status, output) = HostConfig::default()
        .manifest(&manifest)
        .arg("--instance-reuse")
        .arg("0")
        .run_to_exit()?;
    ensure!(!status.success());
    ensure!(output.contains("--instance-reuse"), "{output}");
    Ok(())
}

/// ping-host serving the three-component app (`a` on `/served` and
/// `/sleep`, `b` on `/ok`, `c` on `/echo`) from a pool of `size` instances,
/// with reuse on and an idle timeout no CI run reaches.
fn pool_of(size: &str, args: &[&str]) -> Result<(tempfile::TempDir, Host)> {
    let dir = tempfile::tempdir()?;
    let manifest = write_fixture(dir.path(), "three-misbehave")?;
    let mut config = HostConfig::default().manifest(&manifest);
    let reuse = ["--instance-reuse", "8", "--max-instances", size];
    let idle = ["--idle-instance-timeout", "60s"];
    for a in reuse.iter().chain(&idle).chain(args) {
        config = config.arg(*a);
    }
    Ok((dir, Host::start(&config)?))
}

/// The bodies of GET `paths`, in turn, each checked to be 200.
fn bodies(host: &Host, paths: &[&str]) -> Result<Vec<String>> {
    let mut bodies = Vec::new();
    for path in paths {
        let reply = get(&host.url(path))?;
        ensure!(reply.status == 200, "{path}: {reply:?}");
        bodies.push(reply.body.trim().to_owned());
    }
    Ok(bodies)
}

/// One component's idle instance must not keep another component's request
/// out of a pool of one: it gives its slot up. `/served` restarts at 1 on a
/// new instance.
#[test]
fn an_idle_instance_gives_its_pool_slot_to_another_component() -> Result<()> {
    let (_dir, host) = pool_of("1", &[])?;
    let seen = bodies(&host, &["/served", "/served", "/ok", "/served"])?;
    ensure!(seen == ["1", "2", "ok", "1"], "{seen:?}");
    Ok(())
}

/// In a full pool, the instance idle longest gives its slot up first,
/// whichever component it belongs to: `b`'s (idle since before `a`'s) makes
/// room for `c`, and `a`'s instance, kept, serves its second request.
#[test]
fn the_instance_idle_longest_gives_its_slot_up_first() -> Result<()> {
    let (_dir, host) = pool_of("2", &[])?;
    let seen = bodies(&host, &["/ok", "/served", "/echo", "/served"])?;
    ensure!(seen == ["ok", "1", "0 bytes", "2"], "{seen:?}");
    Ok(())
}

/// While a request on `/sleep` (component `a`, 800 ms) holds the only slot
/// of a pool of one, a request on `waiting_path` waits for it (up to 2 s);
/// both answers, slow one first.
fn wait_behind_a_slow_request(waiting_path: &str) -> Result<[ping_e2e::Reply; 2]> {
    let (_dir, host) = pool_of("1", &["--queue-wait", "2s"])?;
    let slow_url = host.url("/sleep?ms=800");
    let slow = std::thread::spawn(move || get(&slow_url));
    // Long enough for a loaded CI machine to keep the two in order.
    std::thread::sleep(Duration::from_millis(200));
    let waiting = get(&host.url(waiting_path))?;
    let slow = slow.join().expect("the slow request's thread")?;
    ensure!(slow.status == 200, "{slow:?}");
    Ok([slow, waiting])
}

/// A request waiting for the only slot is handed the instance its own
/// component just finished with (its second request), rather than the
/// instance going idle with the slot and the waiter being refused after
/// `--queue-wait`, or the instance being dropped for a fresh one.
#[test]
fn a_waiting_request_is_handed_the_instance_its_component_finished_with() -> Result<()> {
    let [_, waiting] = wait_behind_a_slow_request("/served")?;
    ensure!(
        (waiting.status, waiting.body.trim()) == (200, "2"),
        "{waiting:?}"
    );
    Ok(())
}

/// A request of another component waiting for the only slot gets it when
/// the instance holding it finishes: that instance is dropped, not kept idle.
#[test]
fn a_waiting_request_of_another_component_gets_the_slot() -> Result<()> {
    let [_, waiting] = wait_behind_a_slow_request("/ok")?;
    ensure!(
        (waiting.status, waiting.body.trim()) == (200, "ok"),
        "{waiting:?}"
    );
    Ok(())
}

/// No hand-over while a request of another component waits: the finished
/// instance is given up, its slot goes to the request that has waited
/// longest (here the other component's), and the later request of the same
/// component gets a fresh instance afterwards (`/served` is 1, not 2). The
/// arrivals are 200 ms apart so that a loaded CI machine keeps their order.
#[test]
fn no_hand_over_while_another_component_waits() -> Result<()> {
    let (_dir, host) = pool_of("1", &["--queue-wait", "2s"])?;
    let slow_url = host.url("/sleep?ms=800");
    let slow = std::thread::spawn(move || get(&slow_url));
    std::thread::sleep(Duration::from_millis(200));
    let other_url = host.url("/ok");
    let other = std::thread::spawn(move || get(&other_url));
    std::thread::sleep(Duration::from_millis(200));
    let same = get(&host.url("/served"))?;
    let other = other.join().expect("the other component's thread")?;
    let slow = slow.join().expect("the slow request's thread")?;
    ensure!(
        slow.status == 200 && other.status == 200,
        "{slow:?} {other:?}"
    );
    ensure!((same.status, same.body.trim()) == (200, "1"), "{same:?}");
    Ok(())
}

/// A waiter that gave up (503 after `--queue-wait`) leaves its place at the
/// head of the queue behind; the instance that finishes later skips it and
/// goes to the request that still waits (`/served` is 2). Timeline: the slow
/// request holds the only slot for 1 s; the first waiter comes at 0.2 s and
/// gives up at 0.8 s, the second comes at 0.6 s and would wait until 1.2 s.
#[test]
fn a_waiter_that_gave_up_is_skipped_for_the_next_one() -> Result<()> {
    let (_dir, host) = pool_of("1", &["--queue-wait", "600ms"])?;
    let slow_url = host.url("/sleep?ms=1000");
    let slow = std::thread::spawn(move || get(&slow_url));
    std::thread::sleep(Duration::from_millis(200));
    let first_url = host.url("/served");
    let first = std::thread::spawn(move || get(&first_url));
    std::thread::sleep(Duration::from_millis(400));
    let second = get(&host.url("/served"))?;
    let first = first.join().expect("the first waiter's thread")?;
    let slow = slow.join().expect("the slow request's thread")?;
    ensure!(
        slow.status == 200 && first.status == 503,
        "{slow:?} {first:?}"
    );
    ensure!(
        (second.status, second.body.trim()) == (200, "2"),
        "{second:?}"
    );
    Ok(())
}
