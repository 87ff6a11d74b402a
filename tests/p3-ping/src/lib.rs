//! A spin-sdk 7 component (exports `wasi:http/handler@0.3.0`) for ping-host's
//! WASIp3 tests: `/ping` does what ping's own component does (one `INCR`
//! through `spin:redis/redis@3.0.0`, the address built from Spin variables),
//! and other routes misbehave on request so containment can be tested.
//! Never deploy it.

use std::time::Duration;

use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{IntoResponse, Request, StatusCode};
use spin_sdk::{http_service, redis, variables};

/// Memory held on purpose by `/grow`, so the allocations are not optimised away.
static mut HOARD: Vec<Vec<u8>> = Vec::new();
/// Requests this instance has started: `/instance` answers it, so the tests
/// can see an instance being reused (or not).
static mut STARTED: u64 = 0;

#[http_service]
async fn handle(req: Request) -> impl IntoResponse {
    // SAFETY: one instance runs on one thread; concurrent requests interleave
    // only at await points, and this is not held across one.
    #[allow(static_mut_refs)]
    let started = unsafe {
        STARTED += 1;
        STARTED
    };
    let (status, body) = route(req, started).await;
    (status, body)
}

async fn route(req: Request, started: u64) -> (StatusCode, String) {
    if let Some(address) = header(&req, "x-redis") {
        let body = match redis::Connection::open(&address).await {
            Err(e) => format!("open: {e:?}"),
            Ok(conn) => format!("{:?}", conn.incr("p3-probe").await),
        };
        return (StatusCode::OK, body);
    }
    let query = req.uri().query().unwrap_or("").to_owned();
    match req.uri().path() {
        "/" => (StatusCode::OK, "Hello!".into()),
        "/ping" => match ping().await {
            Ok(n) => (StatusCode::OK, format!("{n}\n")),
            Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
        },
        "/instance" => (StatusCode::OK, started.to_string()),
        // A variable's value as the component sees it.
        "/var" => match variables::get(query.strip_prefix("name=").unwrap_or("")).await {
            Ok(v) => (StatusCode::OK, v),
            Err(e) => (StatusCode::NOT_FOUND, format!("{e:?}")),
        },
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
            // SAFETY: see `handle`.
            #[allow(static_mut_refs)]
            unsafe {
                HOARD.push(chunk)
            };
        },
        // Waits on the host's clock, like a slow dependency.
        "/sleep" => {
            let ms = query
                .strip_prefix("ms=")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            spin_sdk::time::sleep(Duration::from_millis(ms)).await;
            (StatusCode::OK, format!("slept {ms} ms"))
        }
        // A body it cannot read whole fails the request, as most guests do.
        "/echo" => match req.into_body().bytes().await {
            Ok(b) => (StatusCode::OK, format!("{} bytes", b.len())),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:?}")),
        },
        _ => (StatusCode::NOT_FOUND, "not found".into()),
    }
}

/// ping's `/ping`: the address from `redis_host`, `redis_port` and
/// `redis_password`, one atomic `INCR` of `counter_key`.
async fn ping() -> Result<i64, String> {
    let var = async |name: &str| {
        variables::get(name)
            .await
            .map_err(|e| format!("variable {name}: {e:?}"))
    };
    let host = var("redis_host").await?;
    let port = var("redis_port").await?;
    let password = var("redis_password").await.unwrap_or_default();
    let key = var("counter_key").await?;
    let auth = if password.is_empty() {
        String::new()
    } else {
        format!(":{password}@")
    };
    let conn = redis::Connection::open(format!("redis://{auth}{host}:{port}"))
        .await
        .map_err(|e| format!("redis unavailable: {e:?}"))?;
    conn.incr(&key)
        .await
        .map_err(|e| format!("redis unavailable: {e:?}"))
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
