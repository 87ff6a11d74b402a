//! WASIp3 components (spin-sdk 7, `wasi:http/handler@0.3.0`) under ping-host,
//! end to end against real Redis, with tests/p3-ping: routes and instance
//! reuse, exact counts under concurrency, Redis down and back, variables,
//! the allow-list, and containment of a misbehaving instance (deadline, trap,
//! memory) without failing the request that comes next.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use ping_e2e::{
    Host, HostConfig, Redis, Registry, client, free_port, get, metric, ping_host,
    pings_are_exact_and_unique, request, wait_until, write_fixture,
};

/// ping-host serving tests/p3-ping against `redis`, with `extra` flags.
fn p3_host(redis: &Redis, extra: &[&str]) -> Result<(Host, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let manifest = write_fixture(dir.path(), "p3-ping")?;
    let mut config = HostConfig::for_redis(redis).manifest(manifest);
    for a in extra {
        config = config.arg(*a);
    }
    Ok((Host::start(&config)?, dir))
}

#[test]
fn routes_answer_and_instances_are_reused() -> Result<()> {
    let redis = Redis::start()?;
    let (host, _dir) = p3_host(&redis, &[])?;
    let hello = get(&host.url("/"))?;
    assert_eq!((hello.status, hello.body.as_str()), (200, "Hello!"));
    assert_eq!(get(&host.url("/ping"))?.body, "1\n");
    assert_eq!(get(&host.url("/ping"))?.body, "2\n");
    assert_eq!(redis.counter("ping")?, 2);
    assert_eq!(get(&host.url("/nowhere"))?.status, 404);
    assert_eq!(get(&host.url("/.well-known/spin/health"))?.status, 200);
    // One instance serves requests one after another (Spin 4.1's default reuse).
    let first: u64 = get(&host.url("/instance"))?.body.parse()?;
    let second: u64 = get(&host.url("/instance"))?.body.parse()?;
    assert!(
        second > first,
        "the instance was reused: {first} then {second}"
    );
    assert!(
        host.logs().contains("wasi:http/handler@0.3.0"),
        "the start-up log says how the component is served: {}",
        host.logs()
    );

    // --max-instance-reuse-count 1: a fresh instance per request, like WASIp2.
    let (fresh, _dir) = p3_host(&redis, &["--max-instance-reuse-count", "1"])?;
    for _ in 0..3 {
        assert_eq!(get(&fresh.url("/instance"))?.body, "1");
    }
    Ok(())
}

#[test]
fn concurrent_pings_are_exact_and_unique() -> Result<()> {
    let redis = Redis::start()?;
    let (host, _dir) = p3_host(&redis, &[])?;
    pings_are_exact_and_unique(&host.url("/ping"), 64, 2000)?;
    assert_eq!(redis.counter("ping")?, 2000, "none lost");
    Ok(())
}

#[test]
fn redis_down_answers_503_then_recovers() -> Result<()> {
    let mut redis = Redis::start()?;
    let (host, _dir) = p3_host(&redis, &[])?;
    assert_eq!(get(&host.url("/ping"))?.status, 200);
    redis.kill();
    let down = get(&host.url("/ping"))?;
    assert_eq!(down.status, 503, "{}", down.body);
    assert!(down.body.contains("redis unavailable"), "{}", down.body);
    redis.restart()?;
    wait_until(Duration::from_secs(20), "/ping to recover", || {
        get(&host.url("/ping")).ok().filter(|r| r.status == 200)
    })?;
    Ok(())
}

#[test]
fn variables_follow_spins_precedence() -> Result<()> {
    let redis = Redis::start()?;
    let dir = tempfile::tempdir()?;
    let manifest = write_fixture(dir.path(), "p3-ping")?;
    let base = HostConfig::for_redis(&redis).manifest(manifest);
    let var = |host: &Host| -> Result<String> { Ok(get(&host.url("/var?name=greeting"))?.body) };

    let default = Host::start(&base)?;
    assert_eq!(var(&default)?, "from the manifest");
    let env = Host::start(&base.clone().env("SPIN_VARIABLE_GREETING", "from env"))?;
    assert_eq!(var(&env)?, "from env");
    let flag = Host::start(
        &base
            .clone()
            .env("SPIN_VARIABLE_GREETING", "from env")
            .arg("--variable")
            .arg("greeting=from the flag"),
    )?;
    assert_eq!(var(&flag)?, "from the flag");
    let undefined = get(&default.url("/var?name=nope"))?;
    assert_eq!(undefined.status, 404);
    assert!(undefined.body.contains("Undefined"), "{}", undefined.body);
    // counter_key from a flag reaches spin:redis through spin:variables.
    let keyed = Host::start(&base.arg("--variable").arg("counter_key=other"))?;
    assert_eq!(get(&keyed.url("/ping"))?.body, "1\n");
    assert_eq!(redis.counter("other")?, 1);
    Ok(())
}

#[test]
fn the_allow_list_refuses_other_redis_addresses() -> Result<()> {
    let redis = Redis::start()?;
    let (host, _dir) = p3_host(&redis, &[])?;
    let c = client();
    let other = request(
        &c,
        "GET",
        &host.url("/"),
        &[("x-redis", "redis://127.0.0.1:1")],
    )?;
    assert_eq!(other.body, "open: Error::InvalidAddress");
    assert!(
        host.logs().contains("not in allowed_outbound_hosts"),
        "{}",
        host.logs()
    );
    let allowed = format!("redis://127.0.0.1:{}", redis.port);
    let ok = request(&c, "GET", &host.url("/"), &[("x-redis", &allowed)])?;
    assert_eq!(ok.body, "Ok(1)");
    Ok(())
}

#[test]
fn a_misbehaving_instance_is_contained_and_the_next_request_succeeds() -> Result<()> {
    let redis = Redis::start()?;
    let metrics_port = free_port().to_string();
    let (host, _dir) = p3_host(
        &redis,
        &["--request-timeout", "1s", "--max-instance-memory-mib", "32"]
            .into_iter()
            .chain(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .collect::<Vec<_>>(),
    )?;
    let guest_errors = |kind: &str| -> Result<f64> {
        let text = get(&format!("http://127.0.0.1:{metrics_port}/metrics"))?.body;
        let series = format!("ping_host_guest_errors_total{{component_id=\"p3\",kind=\"{kind}\"}}");
        Ok(metric(&text, &series).unwrap_or(0.0))
    };
    // Warm one instance up, so each failure below happens on a reused one.
    assert_eq!(get(&host.url("/ping"))?.status, 200);
    let started = Instant::now();
    let spun = get(&host.url("/loop"))?;
    assert_eq!(spun.status, 504, "{}", spun.body);
    assert!(started.elapsed() < Duration::from_secs(5));
    // The instance that ran past the deadline was retired: nothing spins on
    // (a spinning guest would burn a whole core), and a fresh one answers.
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu_ticks(host.pid())?;
    std::thread::sleep(Duration::from_secs(1));
    let burnt = cpu_ticks(host.pid())? - before;
    assert!(
        burnt < 30,
        "ping-host used {burnt} CPU ticks in 1 s while idle"
    );
    assert_eq!(get(&host.url("/instance"))?.body, "1");
    assert_eq!(get(&host.url("/ping"))?.body, "2\n");

    let trapped = get(&host.url("/trap"))?;
    assert_eq!(trapped.status, 500, "{}", trapped.body);
    // Counted as the trap it is, not as a guest that gave no answer.
    assert_eq!(
        (guest_errors("trap")?, guest_errors("no_response")?),
        (1.0, 0.0)
    );
    assert_eq!(get(&host.url("/ping"))?.body, "3\n");

    let grown = get(&host.url("/grow"))?;
    assert_eq!(grown.status, 500, "{}", grown.body);
    assert_eq!(get(&host.url("/ping"))?.body, "4\n");
    assert!(host.logs().contains("past the limit"), "{}", host.logs());
    Ok(())
}

/// User plus system CPU time of process `pid`, in clock ticks (1/100 s here).
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the `(comm)`: state is the 3rd field, utime the 14th, stime the 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

#[test]
fn body_head_and_concurrency_limits_hold() -> Result<()> {
    let redis = Redis::start()?;
    let (host, _dir) = p3_host(
        &redis,
        &[
            "--max-body-kib",
            "1",
            "--max-instances",
            "1",
            "--queue-wait",
            "100ms",
        ],
    )?;
    let c = client();
    // Declared too large: 413 before the guest. Chunked too large: cut off as
    // the guest reads it, still 413.
    let declared = c.post(host.url("/echo")).body(vec![b'x'; 2048]).send()?;
    assert_eq!(declared.status(), 413);
    let chunks = futures_like_stream(vec![b'x'; 4096]);
    let streamed = c
        .post(host.url("/echo"))
        .body(reqwest::blocking::Body::new(chunks))
        .send()?;
    assert_eq!(streamed.status(), 413);
    let fits = c.post(host.url("/echo")).body(vec![b'x'; 512]).send()?;
    assert_eq!(fits.text()?, "512 bytes");
    // A head over --max-header-kib (64 KiB by default): 431.
    let big = "x".repeat(70 * 1024);
    let head = request(&c, "GET", &host.url("/"), &[("x-big", &big)])?;
    assert_eq!(head.status, 431);
    // One request in flight at most: a second one waits 100 ms, then 503.
    let slow = {
        let url = host.url("/sleep?ms=1500");
        std::thread::spawn(move || get(&url))
    };
    std::thread::sleep(Duration::from_millis(300));
    let busy = get(&host.url("/"))?;
    assert_eq!(busy.status, 503, "{}", busy.body);
    assert_eq!(slow.join().expect("thread")?.status, 200);
    assert_eq!(get(&host.url("/"))?.status, 200);
    Ok(())
}

/// A body reqwest sends chunked (no Content-Length).
fn futures_like_stream(bytes: Vec<u8>) -> impl std::io::Read + Send + 'static {
    std::io::Cursor::new(bytes)
}

#[test]
fn draining_finishes_in_flight_requests() -> Result<()> {
    let redis = Redis::start()?;
    let (mut host, _dir) = p3_host(&redis, &[])?;
    let slow = {
        let url = host.url("/sleep?ms=800");
        std::thread::spawn(move || get(&url))
    };
    std::thread::sleep(Duration::from_millis(200));
    let status = host.terminate()?;
    assert!(status.success(), "{status:?}");
    let answer = slow.join().expect("thread")?;
    assert_eq!((answer.status, answer.body.as_str()), (200, "slept 800 ms"));
    Ok(())
}

#[test]
fn push_and_serve_from_the_registry() -> Result<()> {
    let registry = Registry::start(None)?;
    let docker = tempfile::tempdir()?;
    let docker_env = docker.path().display().to_string();
    let dir = tempfile::tempdir()?;
    let manifest = write_fixture(dir.path(), "p3-ping")?;
    let reference = format!("{}/p3-ping:v1", registry.host());
    let out = ping_host(
        &[
            "push",
            &reference,
            "--manifest",
            &manifest.display().to_string(),
        ],
        &[("DOCKER_CONFIG", &docker_env)],
        None,
    )?;
    ensure!(
        out.status.success(),
        "push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pinned = String::from_utf8(out.stdout)?.trim().to_owned();
    let redis = Redis::start()?;
    let cache = tempfile::tempdir()?;
    let host = Host::start(
        &HostConfig::for_redis(&redis)
            .from_registry(pinned)
            .cache_dir(cache.path())
            .env("DOCKER_CONFIG", docker_env),
    )?;
    assert_eq!(get(&host.url("/ping"))?.body, "1\n");
    assert_eq!(get(&host.url("/ping"))?.body, "2\n");
    assert!(
        host.logs().contains("wasi:http/handler@0.3.0"),
        "{}",
        host.logs()
    );
    Ok(())
}

#[test]
fn one_app_serves_both_generations_side_by_side() -> Result<()> {
    let redis = Redis::start()?;
    let dir = tempfile::tempdir()?;
    let manifest = write_fixture(dir.path(), "p2-and-p3")?;
    let host = Host::start(&HostConfig::for_redis(&redis).manifest(manifest))?;
    // WASIp2 ping (fresh instance per request) and WASIp3 (reused), each on
    // its own engine.
    assert_eq!(get(&host.url("/ping"))?.body, "1\n");
    assert_eq!(get(&host.url("/instance"))?.body, "1");
    assert_eq!(get(&host.url("/ping"))?.body, "2\n");
    assert_eq!(get(&host.url("/instance"))?.body, "2");
    Ok(())
}

/// With `--instance-reuse`, an idle WASIp2 instance keeps its pool slot; a
/// WASIp3 request that finds the pool (of one) full makes it give the slot up
/// instead of waiting out `--queue-wait` and getting 503.
#[test]
fn a_wasip3_request_gets_the_slot_an_idle_wasip2_instance_kept() -> Result<()> {
    let redis = Redis::start()?;
    let dir = tempfile::tempdir()?;
    let manifest = write_fixture(dir.path(), "p2-and-p3")?;
    let mut config = HostConfig::for_redis(&redis).manifest(manifest);
    for a in ["--instance-reuse", "8", "--max-instances", "1"] {
        config = config.arg(a);
    }
    for a in ["--idle-instance-timeout", "60s", "--queue-wait", "2s"] {
        config = config.arg(a);
    }
    let host = Host::start(&config)?;
    assert_eq!(get(&host.url("/ping"))?.body, "1\n");
    let p3 = get(&host.url("/instance"))?;
    assert_eq!((p3.status, p3.body.as_str()), (200, "1"), "{p3:?}");
    assert_eq!(get(&host.url("/ping"))?.body, "2\n");
    Ok(())
}
