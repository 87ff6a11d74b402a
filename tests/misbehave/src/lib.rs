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
        _ => (404, "not found".into()),
    };
    Response::builder().status(status).body(body).build()
}
