//! `ping-baseline LISTEN_ADDR REDIS_PORT`: the fastest honest `/ping` on this
//! machine. `GET /` answers `Hello!`; `GET /ping` does one INCR on a single
//! multiplexed Redis connection and answers the count, like the component.
//! Whatever ping-host is slower than this is runtime overhead.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:3100".into());
    let redis_port: u16 = args.next().unwrap_or_else(|| "6379".into()).parse()?;
    let client = redis::Client::open(format!("redis://127.0.0.1:{redis_port}/0"))?;
    let conn = client.get_multiplexed_async_connection().await?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("ping-baseline on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let conn = conn.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let mut conn = conn.clone();
                async move {
                    let (status, body) = match req.uri().path() {
                        "/" => (200, Bytes::from_static(b"Hello!")),
                        "/ping" => match redis::cmd("INCR")
                            .arg("ping")
                            .query_async::<i64>(&mut conn)
                            .await
                        {
                            Ok(n) => (200, Bytes::from(format!("{n}\n"))),
                            Err(e) => (503, Bytes::from(format!("redis unavailable: {e}\n"))),
                        },
                        _ => (404, Bytes::from_static(b"Not Found\n")),
                    };
                    let mut resp = Response::new(Full::new(body));
                    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
                    resp.headers_mut().insert(
                        "content-type",
                        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
                    );
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
