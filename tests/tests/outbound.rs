//! allowed_outbound_hosts is enforced, and secrets stay out of the logs.

use ping_e2e::{Host, HostConfig, Redis, get, write_fixture};

fn host_allowing(
    redis: &Redis,
    allowed: &str,
    extra: &[&str],
) -> anyhow::Result<(tempfile::TempDir, Host)> {
    let dir = tempfile::tempdir()?;
    let manifest = write_fixture(dir.path(), "allowed-from-variable")?;
    let mut config = HostConfig::for_redis(redis)
        .manifest(manifest)
        .arg("--variable")
        .arg(format!("allowed={allowed}"));
    for a in extra {
        config = config.arg(*a);
    }
    let host = Host::start(&config)?;
    Ok((dir, host))
}

#[test]
fn a_redis_that_is_not_allowed_is_refused_and_logged() -> anyhow::Result<()> {
    let redis = Redis::start_with_password(Some("s3cret-Pa55"))?;
    // Same host, other port: not the Redis the component is configured for.
    let (_dir, host) = host_allowing(&redis, "redis://127.0.0.1:1", &[])?;
    let ping = get(&host.url("/ping"))?;
    assert_eq!(ping.status, 503, "{}", ping.body);
    assert!(
        ping.body.contains("allowed_outbound_hosts"),
        "{}",
        ping.body
    );
    assert_eq!(redis.counter("ping")?, 0, "nothing reached Redis");
    let logs = host.logs();
    assert!(logs.contains("not in allowed_outbound_hosts"), "{logs}");
    assert!(
        logs.contains(&format!("redis://127.0.0.1:{}", redis.port)),
        "the log names the refused destination: {logs}"
    );
    assert!(
        !logs.contains("s3cret-Pa55"),
        "the password must never be logged: {logs}"
    );
    assert!(!ping.body.contains("s3cret-Pa55"));
    Ok(())
}

#[test]
fn the_allowed_redis_works_with_a_password_that_needs_escaping() -> anyhow::Result<()> {
    let password = "p@ss:w/rd%#?";
    let redis = Redis::start_with_password(Some(password))?;
    let allowed = format!("redis://127.0.0.1:{}", redis.port);
    let (_dir, host) = host_allowing(&redis, &allowed, &[])?;
    assert_eq!(get(&host.url("/ping"))?.body, "1\n");
    assert_eq!(redis.counter("ping")?, 1);
    Ok(())
}

#[test]
fn a_wrong_password_is_503_and_never_echoed() -> anyhow::Result<()> {
    let redis = Redis::start_with_password(Some("right-one"))?;
    let allowed = format!("redis://127.0.0.1:{}", redis.port);
    let (_dir, host) = host_allowing(
        &redis,
        &allowed,
        &["--variable", "redis_password=wrong-guess-123"],
    )?;
    let ping = get(&host.url("/ping"))?;
    assert_eq!(ping.status, 503, "{}", ping.body);
    let logs = host.logs();
    for secret in ["wrong-guess-123", "right-one"] {
        assert!(
            !ping.body.contains(secret) && !logs.contains(secret),
            "secret leaked: {} / {logs}",
            ping.body
        );
    }
    Ok(())
}

/// The component is pointed, through its variables, at other forms of the
/// allowed Redis's address: names that resolve to it, other spellings of the
/// IP, other ports, user-info tricks. ping-host refuses every one before
/// dialling, and nothing reaches Redis.
#[test]
fn allowed_outbound_hosts_cannot_be_bypassed_through_the_component() -> anyhow::Result<()> {
    let redis = Redis::start()?;
    let allowed = format!("redis://127.0.0.1:{}", redis.port);
    let port = redis.port.to_string();
    let tricks: [(&str, &str); 8] = [
        ("localhost", &port),
        ("::1", &port),
        ("127.1", &port),
        ("2130706433", &port),
        ("0x7f000001", &port),
        ("127.0.0.1", "1"),
        ("127.0.0.2", &port),
        // redis://127.0.0.1:PORT@evil.invalid:PORT/0: the allowed address as user info.
        (&format!("127.0.0.1:{port}@evil.invalid"), &port),
    ];
    for (host_var, port_var) in tricks {
        let dir = tempfile::tempdir()?;
        let manifest = write_fixture(dir.path(), "allowed-from-variable")?;
        let host = Host::start(
            &HostConfig::default()
                .manifest(manifest)
                .arg("--variable")
                .arg(format!("allowed={allowed}"))
                .arg("--variable")
                .arg(format!("redis_host={host_var}"))
                .arg("--variable")
                .arg(format!("redis_port={port_var}")),
        )?;
        let ping = get(&host.url("/ping"))?;
        anyhow::ensure!(
            ping.status == 503 && ping.body.contains("allowed_outbound_hosts"),
            "redis_host={host_var} redis_port={port_var}: {ping:?}"
        );
        anyhow::ensure!(
            host.logs().contains("redis address refused"),
            "{}",
            host.logs()
        );
    }
    anyhow::ensure!(redis.counter("ping")? == 0, "something reached Redis");
    Ok(())
}

/// ping-host keeps each address string a guest opened, parsed, for the next
/// request on the same serving thread; the allow-list check still runs per
/// component on every open. One thread, two components: `trusted` may reach
/// Redis and opens it first, then `other`, which may not, opens the same
/// address string and is refused every time.
#[test]
fn an_address_another_component_opened_stays_refused() -> anyhow::Result<()> {
    let redis = Redis::start()?;
    let address = format!("redis://127.0.0.1:{}", redis.port);
    let dir = tempfile::tempdir()?;
    let manifest = ping_e2e::write_manifest(
        dir.path(),
        &format!(
            "spin_manifest_version = 2\n\
             [application]\nname = \"two\"\n\
             [[trigger.http]]\nroute = \"/trusted/...\"\ncomponent = \"trusted\"\n\
             [[trigger.http]]\nroute = \"/other/...\"\ncomponent = \"other\"\n\
             [component.trusted]\nsource = \"@MISBEHAVE_WASM@\"\n\
             allowed_outbound_hosts = [\"{address}\"]\n\
             [component.other]\nsource = \"@MISBEHAVE_WASM@\"\n"
        ),
    )?;
    let host = Host::start(
        &HostConfig::default()
            .manifest(manifest)
            .arg("--threads")
            .arg("1"),
    )?;
    let client = ping_e2e::client();
    let open = |path: &str| {
        ping_e2e::request(
            &client,
            "GET",
            &host.url(path),
            &[("x-redis", &address), ("x-redis-op", "incr opened")],
        )
    };
    for round in 1..=3 {
        let trusted = open("/trusted/x")?;
        assert_eq!(trusted.body, format!("Ok({round})"), "{trusted:?}");
        let other = open("/other/x")?;
        assert_eq!(
            other.body, "open: Error::InvalidAddress",
            "round {round}: {other:?}"
        );
    }
    assert_eq!(
        redis.counter("opened")?,
        3,
        "only the trusted component's INCRs"
    );
    Ok(())
}
