//! Runtime limits: a guest that loops, traps or eats memory is stopped and
//! answered without hurting anyone else; excess load waits and then gets 503;
//! malformed, oversized and slow requests are refused with 4xx. The
//! misbehaving guest is tests/misbehave, a real Spin component.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use ping_e2e::{Host, HostConfig, client, free_port, get, metric, request, write_fixture};

/// ping-host serving the misbehaving component with `args`; also returns the
/// metrics URL.
fn misbehaving_host(args: &[&str]) -> Result<(tempfile::TempDir, Host, String)> {
    let dir = tempfile::tempdir()?;
    let manifest = write_fixture(dir.path(), "misbehave")?;
    let metrics_port = free_port();
    let mut config = HostConfig::default()
        .manifest(&manifest)
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{metrics_port}"));
    for a in args {
        config = config.arg(*a);
    }
    let host = Host::start(&config)?;
    Ok((
        dir,
        host,
        format!("http://127.0.0.1:{metrics_port}/metrics"),
    ))
}

fn guest_errors(metrics_url: &str, kind: &str) -> Result<f64> {
    let text = get(metrics_url)?.body;
    Ok(metric(
        &text,
        &format!("ping_host_guest_errors_total{{component_id=\"misbehave\",kind=\"{kind}\"}}"),
    )
    .unwrap_or(0.0))
}

#[test]
fn a_guest_that_loops_forever_is_stopped_with_504_and_others_are_served() -> Result<()> {
    let (_dir, mut host, metrics) = misbehaving_host(&["--request-timeout-secs", "2"])?;
    // More looping guests than the runtime has worker threads (one per core).
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let url = host.url("/loop");
            std::thread::spawn(move || get(&url).map(|r| (r.status, Instant::now())))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // While they spin, others are answered, and before the loops are stopped.
    let mut answered = Vec::new();
    for _ in 0..5 {
        let asked = Instant::now();
        let ok = get(&host.url("/ok"))?;
        ensure!(ok.status == 200 && ok.body == "ok", "{ok:?}");
        answered.push(Instant::now());
        eprintln!("/ok answered in {:?} while guests loop", asked.elapsed());
    }
    for handle in loops {
        let (status, at) = handle.join().expect("thread")?;
        ensure!(status == 504, "a looping guest got {status}");
        ensure!(
            answered.iter().all(|a| *a < at),
            "/ok waited for the loops to be stopped"
        );
    }
    ensure!(host.is_running(), "the host died");
    ensure!(guest_errors(&metrics, "timeout")? == 4.0);
    let text = get(&metrics)?.body;
    ensure!(
        metric(&text, "ping_host_instances_in_use") == Some(0.0),
        "stopped guests still hold instances:\n{text}"
    );
    ensure!(host.logs().contains("deadline"), "{}", host.logs());
    Ok(())
}

#[test]
fn a_trapping_guest_gets_500_and_the_host_lives_on() -> Result<()> {
    let (_dir, mut host, metrics) = misbehaving_host(&[])?;
    for _ in 0..3 {
        let trap = get(&host.url("/trap"))?;
        ensure!(trap.status == 500, "{trap:?}");
        ensure!(
            !trap.body.contains("deliberate"),
            "internals leak: {}",
            trap.body
        );
    }
    ensure!(get(&host.url("/ok"))?.status == 200);
    ensure!(host.is_running());
    ensure!(guest_errors(&metrics, "trap")? == 3.0);
    let logs = host.logs();
    ensure!(
        logs.contains("deliberate trap"),
        "the guest's panic is logged: {logs}"
    );
    ensure!(logs.contains("request failed"), "{logs}");
    Ok(())
}

#[test]
fn a_guest_growing_past_its_memory_limit_gets_500() -> Result<()> {
    let (_dir, mut host, metrics) = misbehaving_host(&["--max-instance-memory-mib", "16"])?;
    let before = host.rss_bytes()?;
    for _ in 0..3 {
        let grow = get(&host.url("/grow"))?;
        ensure!(grow.status == 500, "{grow:?}");
    }
    ensure!(get(&host.url("/ok"))?.status == 200);
    ensure!(host.is_running());
    ensure!(guest_errors(&metrics, "memory")? == 3.0);
    let logs = host.logs();
    ensure!(
        logs.contains("past the limit of 16777216 bytes"),
        "the log says which limit: {logs}"
    );
    // The host itself did not absorb the guest's appetite.
    let after = host.rss_bytes()?;
    ensure!(
        after < before + 64 * 1024 * 1024,
        "RSS grew from {before} to {after}"
    );
    Ok(())
}

#[test]
fn excess_requests_wait_then_get_503_with_retry_after() -> Result<()> {
    let (_dir, host, metrics) =
        misbehaving_host(&["--max-instances", "2", "--queue-wait-ms", "300"])?;
    let slow: Vec<_> = (0..8)
        .map(|_| {
            let url = host.url("/sleep?ms=1500");
            std::thread::spawn(move || request(&client(), "GET", &url, &[]))
        })
        .collect();
    let mut ok = 0;
    let mut busy = 0;
    for handle in slow {
        let reply = handle.join().expect("thread")?;
        match reply.status {
            200 => ok += 1,
            503 => {
                busy += 1;
                ensure!(
                    reply
                        .headers
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        == Some("1"),
                    "503 without Retry-After: {reply:?}"
                );
            }
            other => anyhow::bail!("unexpected {other}: {}", reply.body),
        }
    }
    ensure!((ok, busy) == (2, 6), "{ok} served, {busy} refused");
    let text = get(&metrics)?.body;
    ensure!(metric(&text, "ping_host_requests_rejected_total{reason=\"busy\"}") == Some(6.0));
    // The pool drains: the next request is served.
    ensure!(get(&host.url("/ok"))?.status == 200);
    Ok(())
}

/// A finished instance frees its pool slot on a task of its own, after its
/// answer has gone out (`executor::retire_later`); the request already
/// waiting behind it on the same connection (HTTP/1.1 pipelining) must find
/// that slot free, even with a pool of one and `--queue-wait 0s`.
#[test]
fn pipelined_requests_on_a_pool_of_one_are_all_served() -> Result<()> {
    let (_dir, host, _) = misbehaving_host(&["--max-instances", "1", "--queue-wait", "0s"])?;
    let mut stream = TcpStream::connect(("127.0.0.1", host.port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let one = "GET /ok HTTP/1.1\r\nHost: ping\r\n\r\n";
    let last = "GET /ok HTTP/1.1\r\nHost: ping\r\nConnection: close\r\n\r\n";
    stream.write_all(format!("{one}{one}{one}{last}").as_bytes())?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    let statuses: Vec<&str> = reply
        .match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| reply.get(at + 9..at + 12))
        .collect();
    ensure!(statuses == ["200"; 4], "{statuses:?} in {reply:?}");
    Ok(())
}

/// Writes `raw` on a fresh connection and returns the status line's code.
fn raw_status(host: &Host, raw: &[u8]) -> Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", host.port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    // The server may answer and close before reading all of a huge request.
    let _ = stream.write_all(raw);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let text = String::from_utf8_lossy(&reply);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no HTTP status in {text:?}"))
}

#[test]
fn malformed_oversized_and_slow_requests_get_4xx_and_the_host_is_unaffected() -> Result<()> {
    let (_dir, mut host, metrics) = misbehaving_host(&[
        "--max-header-kib",
        "16",
        "--max-body-kib",
        "64",
        "--header-read-timeout-secs",
        "1",
    ])?;
    let big_header = format!(
        "GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(32 * 1024)
    );
    let cases: [(&str, Vec<u8>, u16); 5] = [
        ("a bad request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
        (
            "an invalid header",
            b"GET /ok HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
            400,
        ),
        ("a 32 KiB header", big_header.into_bytes(), 431),
        (
            "a declared 10 MiB body",
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n".to_vec(),
            413,
        ),
        (
            "an invalid Content-Length",
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n".to_vec(),
            400,
        ),
    ];
    for (what, raw, want) in cases {
        let got = raw_status(&host, &raw)?;
        ensure!(got == want, "{what}: got {got}, want {want}");
    }
    // A chunked body with no declared length is cut off at the limit while the
    // guest reads it: the guest never gets more than 64 KiB, the client a 413.
    let mut chunked =
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", 8192).as_bytes());
        chunked.extend_from_slice(&[b'x'; 8192]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let got = raw_status(&host, &chunked)?;
    ensure!(got == 413, "a 160 KiB chunked body got {got}");
    let small = request(&client(), "POST", &host.url("/echo"), &[])?;
    ensure!(small.status == 200, "{small:?}");

    // Slow clients: 50 connections that never finish their request head are
    // closed after the header timeout, and never hold up anyone else.
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| -> Result<TcpStream> {
            let mut s = TcpStream::connect(("127.0.0.1", host.port))?;
            s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Slow: ")?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            Ok(s)
        })
        .collect::<Result<_>>()?;
    for _ in 0..10 {
        ensure!(get(&host.url("/ok"))?.status == 200);
    }
    for s in &mut slow {
        let mut buf = Vec::new();
        // Returns (EOF) once the server gives up on the client; a read timeout
        // (the server kept the connection) is an error.
        s.read_to_end(&mut buf)
            .context("a slow client's connection was kept open")?;
    }
    ensure!(host.is_running());
    let text = get(&metrics)?.body;
    ensure!(
        metric(
            &text,
            "ping_host_requests_rejected_total{reason=\"body_too_large\"}"
        ) == Some(2.0),
        "{text}"
    );
    Ok(())
}
