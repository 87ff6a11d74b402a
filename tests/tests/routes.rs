//! Every route of the component, end to end: status, body, content type.

use ping_e2e::{Host, HostConfig, Redis, client, get, request};

const TEXT: &str = "text/plain; charset=utf-8";

#[test]
fn each_route_answers_as_documented() -> anyhow::Result<()> {
    let redis = Redis::start()?;
    let host = Host::start(&HostConfig::for_redis(&redis))?;
    let c = client();

    let hello = get(&host.url("/"))?;
    assert_eq!(
        (
            hello.status,
            hello.body.as_str(),
            hello.content_type.as_str()
        ),
        (200, "Hello!", TEXT)
    );

    let zero = get(&host.url("/count"))?;
    assert_eq!(
        (zero.status, zero.body.as_str()),
        (200, "0\n"),
        "an absent counter counts 0"
    );

    for expected in 1..=3 {
        let ping = get(&host.url("/ping"))?;
        assert_eq!(
            (ping.status, ping.body.clone(), ping.content_type.as_str()),
            (200, format!("{expected}\n"), TEXT)
        );
    }
    assert_eq!(
        redis.counter("ping")?,
        3,
        "the count lives in Redis under `ping`"
    );

    let json = request(
        &c,
        "GET",
        &host.url("/ping"),
        &[("accept", "application/json")],
    )?;
    assert_eq!(
        (json.status, json.body.as_str(), json.content_type.as_str()),
        (200, r#"{"count":4}"#, "application/json")
    );

    let count = get(&host.url("/count"))?;
    assert_eq!(
        (count.status, count.body.as_str()),
        (200, "4\n"),
        "/count does not increment"
    );
    let count_json = request(
        &c,
        "GET",
        &host.url("/count"),
        &[("accept", "application/json")],
    )?;
    assert_eq!(count_json.body, r#"{"count":4}"#);

    let test = get(&host.url("/test"))?;
    assert_eq!((test.status, test.body.as_str()), (200, "Success"));

    let deleted = request(&c, "DELETE", &host.url("/ping"), &[])?;
    assert_eq!(deleted.status, 200);
    assert_eq!(
        redis.cmd::<i64>(&["EXISTS", "ping"])?,
        0,
        "DELETE /ping removed the key"
    );
    assert_eq!(
        get(&host.url("/ping"))?.body,
        "1\n",
        "counting restarts after a delete"
    );

    let del_ping = get(&host.url("/del_ping"))?;
    assert_eq!(
        del_ping.status, 200,
        "the workshop's /del_ping answers 200 (the original answered 500)"
    );
    assert_eq!(redis.cmd::<i64>(&["EXISTS", "ping"])?, 0);
    Ok(())
}

#[test]
fn wrong_methods_and_unknown_paths() -> anyhow::Result<()> {
    let redis = Redis::start()?;
    let host = Host::start(&HostConfig::for_redis(&redis))?;
    let c = client();

    let post = request(&c, "POST", &host.url("/ping"), &[])?;
    assert_eq!(post.status, 405);
    assert_eq!(
        post.headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, HEAD, DELETE")
    );
    let put = request(&c, "PUT", &host.url("/count"), &[])?;
    assert_eq!(
        (
            put.status,
            put.headers.get("allow").and_then(|v| v.to_str().ok())
        ),
        (405, Some("GET, HEAD"))
    );
    assert_eq!(
        redis.counter("ping")?,
        0,
        "a refused method changes nothing"
    );

    for path in ["/nope", "/ping/extra", "/.well-known/spin/nope"] {
        assert_eq!(get(&host.url(path))?.status, 404, "{path}");
    }
    Ok(())
}

#[test]
fn runtime_paths_are_answered_by_the_host() -> anyhow::Result<()> {
    let redis = Redis::start()?;
    let host = Host::start(&HostConfig::for_redis(&redis))?;
    let health = get(&host.url("/.well-known/spin/health"))?;
    assert_eq!((health.status, health.body.as_str()), (200, "OK"));
    let info = get(&host.url("/.well-known/spin/info"))?;
    assert_eq!(
        (info.status, info.content_type.as_str()),
        (200, "application/json")
    );
    assert!(
        info.body.contains("\"name\": \"ping\"") && info.body.contains("\"version\": \"0.1.0\""),
        "{}",
        info.body
    );
    Ok(())
}

#[test]
fn a_counter_that_is_not_a_number_is_a_conflict_not_a_crash() -> anyhow::Result<()> {
    let redis = Redis::start()?;
    let host = Host::start(&HostConfig::for_redis(&redis))?;
    redis.cmd::<()>(&["SET", "ping", "not-a-number"])?;
    let ping = get(&host.url("/ping"))?;
    assert_eq!(ping.status, 409, "{}", ping.body);
    assert!(
        ping.body.contains("`ping`") && ping.body.contains("DELETE /ping"),
        "{}",
        ping.body
    );
    assert_eq!(get(&host.url("/count"))?.status, 409);
    redis.cmd::<()>(&["DEL", "ping"])?;
    assert_eq!(
        get(&host.url("/ping"))?.body,
        "1\n",
        "the host kept serving"
    );
    Ok(())
}
