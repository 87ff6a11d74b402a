//! Listen, accept, drain: the one accept loop, shared by the app's port and
//! the metrics endpoint (Spin trigger-http's `serve_http`/`serve_connection`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::Body;

/// How connections on one listener are treated.
#[derive(Debug, Clone, Copy)]
pub struct Connections {
    /// What the listener serves, for log lines ("app", "metrics").
    pub name: &'static str,
    /// Time a client has to send a complete request head; cut off after it.
    pub head_timeout: Duration,
    /// Largest request head in bytes (hyper answers 431 beyond); `None` keeps hyper's default.
    pub max_head: Option<usize>,
    /// How long shutdown waits for in-flight requests.
    pub drain: Duration,
}

/// Serves `listener` until `shutdown` resolves, then lets in-flight requests
/// finish (up to `drain`). `handle` gets each request with the client's and
/// the listener's addresses.
pub async fn serve<H, F>(
    listener: TcpListener,
    settings: Connections,
    shutdown: impl Future<Output = ()>,
    handle: H,
) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>, SocketAddr, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let local = listener.local_addr()?;
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(listener = settings.name, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        let service = hyper::service::service_fn(move |req| {
            let answer = handle(req, client, local);
            async move { Ok::<_, Infallible>(answer.await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(settings.head_timeout);
        if let Some(max) = settings.max_head {
            builder.max_buf_size(max);
        }
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%client, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    drain(graceful, settings).await;
    Ok(())
}

async fn drain(graceful: GracefulShutdown, settings: Connections) {
    if settings.drain.is_zero() {
        return;
    }
    tracing::info!(
        listener = settings.name,
        "shutting down: waiting for in-flight requests"
    );
    if tokio::time::timeout(settings.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = settings.name,
            "in-flight requests still running after {:?}; exiting anyway",
            settings.drain
        );
    }
}
