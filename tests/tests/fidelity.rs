//! Issue 11, the differences from Spin found outside the recorded battery:
//! client errors are 4xx and never guest errors, the request-head limit is
//! exact, Redis outages leave no stale error behind, HEAD on GET routes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ping_e2e::{Host, HostConfig, Redis, free_port, get, metric};

/// Sends `raw` (in `writes` pieces) on a fresh connection; the status and
/// the whole answer, or `None` for a connection closed without one.
fn raw(host: &Host, raw: &[u8], writes: usize) -> Result<Option<(u16, String)>> {
    let mut stream = TcpStream::connect(("127.0.0.1", host.port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let size = raw.len().div_ceil(writes).max(1);
    for piece in raw.chunks(size) {
        // The server may answer and close before reading everything.
        if stream.write_all(piece).is_err() {
            break;
        }
        if writes > 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    if reply.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&reply).into_owned();
    let status = text
        .get(9..12)
        .filter(|_| text.starts_with("HTTP/1."))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no HTTP status in {text:?}"))?;
    Ok(Some((status, text)))
}

fn host_with_metrics(redis: &Redis, args: &[&str]) -> Result<(Host, String)> {
    let metrics_port = free_port();
    let mut config = HostConfig::for_redis(redis)
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{metrics_port}"));
    for a in args {
        config = config.arg(*a);
    }
    Ok((
        Host::start(&config)?,
        format!("http://127.0.0.1:{metrics_port}/metrics"),
    ))
}

#[test]
fn requests_without_a_usable_host_get_400_before_routing_and_are_no_guest_error() -> Result<()> {
    let redis = Redis::start()?;
    let (host, metrics) = host_with_metrics(&redis, &[])?;
    let cases: [(&str, &[u8]); 6] = [
        (
            "no Host, HTTP/1.1",
            b"GET /ping HTTP/1.1\r\nConnection: close\r\n\r\n",
        ),
        ("no Host, HTTP/1.0", b"GET /ping HTTP/1.0\r\n\r\n"),
        (
            "empty Host",
            b"GET /ping HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
        ),
        (
            "non-UTF-8 Host",
            b"GET /ping HTTP/1.1\r\nHost: caf\xe9\r\nConnection: close\r\n\r\n",
        ),
        (
            "two Hosts",
            b"GET /ping HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        ),
        (
            "no Host on an unknown path",
            b"GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n",
        ),
    ];
    for (what, request) in cases {
        let answer = raw(&host, request, 1)?;
        let (status, text) = answer.with_context(|| format!("{what}: no answer"))?;
        ensure!(status == 400, "{what}: {text}");
        ensure!(text.contains("bad request: "), "{what}: {text}");
    }
    let text = get(&metrics)?.body;
    ensure!(
        !text
            .lines()
            .any(|l| l.starts_with("ping_host_guest_errors_total{") && !l.ends_with(" 0")),
        "a client error counted as a guest error:\n{text}"
    );
    ensure!(
        metric(
            &text,
            "ping_host_requests_rejected_total{reason=\"bad_request\"}"
        ) == Some(6.0),
        "{text}"
    );
    ensure!(
        redis.counter("ping")? == 0,
        "no request reached the component"
    );
    Ok(())
}

/// A GET /count whose head is exactly `size` bytes.
fn head_of(host: &Host, size: usize) -> Vec<u8> {
    let start = format!(
        "GET /count HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-Big: ",
        host.port
    );
    let end = "\r\nConnection: close\r\n\r\n";
    let pad = size - start.len() - end.len();
    format!("{start}{}{end}", "a".repeat(pad)).into_bytes()
}

#[test]
fn max_header_kib_refuses_exactly_the_heads_above_it_whatever_the_chunking() -> Result<()> {
    let redis = Redis::start()?;
    for kib in [8usize, 32, 64] {
        let (host, _) = host_with_metrics(&redis, &["--max-header-kib", &kib.to_string()])?;
        let limit = kib * 1024;
        for size in [limit - 100, limit, limit + 1, limit + 4096, limit * 7 / 4] {
            for writes in [1, 64] {
                let want = if size <= limit { 200 } else { 431 };
                let answer = raw(&host, &head_of(&host, size), writes)?;
                let got = answer.map(|(s, _)| s);
                ensure!(
                    got == Some(want),
                    "--max-header-kib {kib}: a {size}-byte head in {writes} writes got {got:?}, want {want}"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn routes_match_as_in_spin_trailing_slash_named_segments_and_duplicates() -> Result<()> {
    let redis = Redis::start()?;
    let dir = tempfile::tempdir()?;
    let manifest = ping_e2e::write_fixture(dir.path(), "routing")?;
    let host = Host::start(
        &HostConfig::default()
            .manifest(&manifest)
            .arg("--variable")
            .arg(format!("redis_port={}", redis.port)),
    )?;
    // Manifest route "/ping/" is served at /ping (Spin 3.6.3, recorded).
    let ping = get(&host.url("/ping"))?;
    ensure!(
        (ping.status, ping.body.as_str()) == (200, "1\n"),
        "{ping:?}"
    );
    // A request path with one trailing slash reaches the route's component
    // (which answers it with its own 404, as under Spin).
    let slash = get(&host.url("/ping/"))?;
    ensure!(
        (slash.status, slash.body.as_str()) == (404, "not found\n"),
        "{slash:?}"
    );
    let echo = |path: &str| {
        ping_e2e::request(
            &ping_e2e::client(),
            "GET",
            &host.url(path),
            &[("x-echo", "spin-headers")],
        )
    };
    // Named segments, with Spin's headers (fermyon/conformance-tests request-shape).
    let named = echo("/named/path/end/rest?key=value")?;
    ensure!(named.status == 200, "{named:?}");
    for line in [
        "spin-component-route: /named/:path_segment/:path_end",
        "spin-matched-route: /named/:path_segment/:path_end/...",
        "spin-path-info: /rest",
        "spin-path-match-path-end: end",
        "spin-path-match-path-segment: path",
        "spin-raw-component-route: /named/:path_segment/:path_end/...",
    ] {
        ensure!(
            named.body.lines().any(|l| l == line),
            "no `{line}` in\n{}",
            named.body
        );
    }
    // The same route twice: the last declaration (misbehave) gets it, and
    // the shadowed one is logged at ERROR as Spin does.
    let dup = echo("/dup")?;
    ensure!(
        dup.status == 200 && dup.body.contains("spin-matched-route: /dup"),
        "{dup:?}"
    );
    ensure!(
        host.logs()
            .contains("  ping: /dup (duplicate of misbehave)"),
        "{}",
        host.logs()
    );
    Ok(())
}
