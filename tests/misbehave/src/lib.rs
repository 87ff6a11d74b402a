//! A component that misbehaves on request, for ping-host's fault tests.
//! Never deploy it.

use std::time::Duration;

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

/// Memory held on purpose by `/grow`, so the allocations are not optimised away.
static mut HOARD: Vec<Vec<u8>> = Vec::new();

/// Requests this instance has served, for `/served`: it shows whether an
/// instance was reused (`--instance-reuse`) or fresh (always 1).
static SERVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[http_component]
fn handle(req: Request) -> Response {
    // `x-echo: spin-headers` on any path: the Spin request headers it got,
    // one `name: value` line each, sorted.
    if req.header("x-echo").and_then(|v| v.as_str()) == Some("spin-headers") {
        let mut lines: Vec<String> = req
            .headers()
            .filter(|(n, _)| n.starts_with("spin-"))
            .map(|(n, v)| format!("{n}: {}", v.as_str().unwrap_or("<binary>")))
            .collect();
        lines.sort();
        return Response::builder()
            .status(200)
            .body(lines.join("\n"))
            .build();
    }
    // `x-redis: <address>` and `x-redis-op: incr|sadd <key>`: the Redis
    // interface's answer as the guest sees it (`Ok(..)` or the error variant).
    if let Some(address) = req.header("x-redis").and_then(|v| v.as_str()) {
        let op = req
            .header("x-redis-op")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let body = match spin_sdk::redis::Connection::open(address) {
            Err(e) => format!("open: {e:?}"),
            Ok(conn) => match op.split_once(' ') {
                Some(("incr", key)) => format!("{:?}", conn.incr(key)),
                Some(("sadd", key)) => format!("{:?}", conn.sadd(key, &["x".to_owned()])),
                _ => "unknown op".to_owned(),
            },
        };
        return Response::builder().status(200).body(body).build();
    }
    let served = SERVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    // The checks of fermyon/conformance-tests, written anew for ping-host:
    // 200 with an empty body when every check holds, else 500 saying which failed.
    if let Some(outcome) = conformance(&req) {
        return outcome;
    }
    let query = req.query().to_owned();
    let (status, body): (u16, String) = match req.path() {
        "/ok" => (200, "ok".into()),
        // How many requests this instance has served, this one included.
        "/served" => (200, served.to_string()),
        // Spins forever without calling the host: only an interrupt stops it.
        "/loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "/trap" => panic!("deliberate trap"),
        // Allocates 1 MiB at a time and keeps it, until the host says no.
        "/grow" => loop {
            let chunk = std::hint::black_box(vec![1u8; 1024 * 1024]);
            // SAFETY: a component instance is single-threaded.
            #[allow(static_mut_refs)]
            unsafe {
                HOARD.push(chunk)
            };
        },
        // Waits on the host's clock (an async host call), like a slow dependency.
        "/sleep" => {
            let ms = query
                .strip_prefix("ms=")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            std::thread::sleep(Duration::from_millis(ms));
            (200, format!("slept {ms} ms"))
        }
        "/echo" => (200, format!("{} bytes", req.body().len())),
        // `/env?NAME`: the WASI environment variable NAME (the manifest's `environment`).
        "/env" => match std::env::var(&query) {
            Ok(value) => (200, value),
            Err(e) => (404, format!("{query}: {e}")),
        },
        _ => (404, "not found".into()),
    };
    Response::builder().status(status).body(body).build()
}

/// `/conformance/*`: what Spin's conformance suite asks of a runtime, or
/// `None` for any other path.
fn conformance(req: &Request) -> Option<Response> {
    let header = |name: &str| req.header(name).and_then(|v| v.as_str()).map(str::to_owned);
    let result = match req.path() {
        "/conformance/variables" => variables(),
        "/conformance/outbound-redis" => match header("redis_address") {
            Some(address) => outbound_redis(&address),
            None => return Some(answer(400, "missing header: redis_address".into())),
        },
        "/conformance/outbound-http" => match header("url") {
            Some(url) => return Some(outbound_http(&url)),
            None => return Some(answer(400, "missing header: url".into())),
        },
        _ => return None,
    };
    Some(match result {
        Ok(()) => answer(200, String::new()),
        Err(e) => answer(500, e),
    })
}

/// An answer; an empty one says `content-length: 0` (as the suite's
/// components do by writing no body) rather than streaming nothing.
fn answer(status: u16, body: String) -> Response {
    let mut builder = Response::builder();
    builder.status(status);
    if body.is_empty() {
        builder.header("content-length", "0");
    }
    builder.body(body).build()
}

/// Fails with `what` unless `ok`.
fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("check failed: {what}"))
    }
}

/// A component variable set to `value`, an undefined one, and three names
/// the variables interface must refuse as invalid.
fn variables() -> Result<(), String> {
    use spin_sdk::variables::{Error, get};
    check(
        matches!(get("variable"), Ok(v) if v == "value"),
        "variable = value",
    )?;
    check(
        matches!(get("non_existent"), Err(Error::Undefined(_))),
        "non_existent is undefined",
    )?;
    for name in ["invalid-name", "invalid!name", "4invalidname"] {
        check(
            matches!(get(name), Err(Error::InvalidName(_))),
            &format!("{name} is an invalid name"),
        )?;
    }
    Ok(())
}

/// SET/GET, INCR, DEL of two keys, then SET/APPEND/GET through `execute`;
/// a Redis error is the body as the interface reports it.
fn outbound_redis(address: &str) -> Result<(), String> {
    use spin_sdk::redis::{Connection, RedisParameter, RedisResult};
    let e = |e: spin_sdk::redis::Error| e.to_string();
    let conn = Connection::open(address).map_err(e)?;
    conn.set("conformance-get-set", b"Eureka!").map_err(e)?;
    let got = conn.get("conformance-get-set").map_err(e)?;
    check(got.as_deref() == Some(&b"Eureka!"[..]), "GET after SET")?;
    conn.set("conformance-incr", b"0").map_err(e)?;
    check(
        conn.incr("conformance-incr").map_err(e)? == 1,
        "INCR of 0 is 1",
    )?;
    let keys = [
        "conformance-get-set".to_owned(),
        "conformance-incr".to_owned(),
    ];
    check(conn.del(&keys).map_err(e)? == 2, "DEL of two keys is 2")?;
    let bin = |b: &[u8]| RedisParameter::Binary(b.to_vec());
    conn.execute("set", &[bin(b"conformance"), bin(b"Eureka!")])
        .map_err(e)?;
    conn.execute("append", &[bin(b"conformance"), bin(b" I've got it!")])
        .map_err(e)?;
    let values = conn.execute("get", &[bin(b"conformance")]).map_err(e)?;
    check(
        matches!(values.as_slice(), [RedisResult::Binary(b)] if b == b"Eureka! I've got it!"),
        "GET through execute after APPEND",
    )
}

/// POSTs `Hello, world!` to `url` through wasi:http's outgoing-handler
/// (as the suite does, with a Content-Length) and answers what came back
/// (status and body), or 500 with the error code the handler gave.
fn outbound_http(url: &str) -> Response {
    use spin_sdk::http::{Headers, Method, OutgoingBody, OutgoingRequest, Scheme};
    use spin_sdk::wit::wasi::http0_2_0::outgoing_handler;
    let Some((scheme, rest)) = url.split_once("://") else {
        return answer(400, format!("not a URL: {url}"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let body = b"Hello, world!";
    let headers = Headers::new();
    let length = body.len().to_string().into_bytes();
    if headers.append("content-length", &length).is_err() {
        return answer(500, "cannot set content-length".into());
    }
    let request = OutgoingRequest::new(headers);
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_owned()),
    };
    let set = request.set_method(&Method::Post).is_ok()
        && request.set_scheme(Some(&scheme)).is_ok()
        && request.set_authority(Some(authority)).is_ok()
        && request.set_path_with_query(Some(path)).is_ok();
    if !set {
        return answer(400, format!("cannot build a request for {url}"));
    }
    let Ok(outgoing) = request.body() else {
        return answer(500, "no request body".into());
    };
    if let Ok(stream) = outgoing.write()
        && let Err(e) = stream.blocking_write_and_flush(body)
    {
        return answer(500, format!("writing the request body: {e:?}"));
    }
    if let Err(e) = OutgoingBody::finish(outgoing, None) {
        return answer(500, e.to_string());
    }
    let future = match outgoing_handler::handle(request, None) {
        Ok(future) => future,
        Err(e) => return answer(500, e.to_string()),
    };
    let incoming = loop {
        match future.get() {
            Some(Ok(Ok(incoming))) => break incoming,
            Some(Ok(Err(e))) => return answer(500, e.to_string()),
            Some(Err(())) => return answer(500, "response already taken".into()),
            None => future.subscribe().block(),
        }
    };
    let status = incoming.status();
    let Ok(body) = incoming.consume() else {
        return answer(500, "no response body".into());
    };
    let Ok(stream) = body.stream() else {
        return answer(500, "no response body stream".into());
    };
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(16 * 1024) {
        bytes.extend(chunk);
    }
    answer(status, String::from_utf8_lossy(&bytes).into_owned())
}
