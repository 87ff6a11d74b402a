//! `GET /metrics` on its own listener (`--metrics-listen`), so that scraping
//! never competes with, or is exposed through, the app's port. It shares the
//! app's accept loop (`super::server::serve`).

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode};
use tokio::net::TcpListener;

use super::{Body, text_response};
use crate::metrics::{self, Metrics};

/// Serves `GET /metrics` on `listener` until `shutdown` resolves. Anything
/// else gets 404; the listener is meant for Prometheus, not for clients.
pub async fn serve(
    metrics: Arc<Metrics>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let settings = super::server::Connections {
        name: "metrics",
        head_timeout: Duration::from_secs(10),
        max_head: None,
        drain: Duration::ZERO,
    };
    super::server::serve(listener, settings, shutdown, move |req, _, _| {
        let answer = scrape(&metrics, &req);
        async move { answer }
    })
    .await
}

/// Prometheus asks for OpenMetrics; anything else gets the classic format.
fn scrape<B>(metrics: &Metrics, req: &Request<B>) -> Response<Body> {
    if req.uri().path() != "/metrics" {
        return text_response(
            StatusCode::NOT_FOUND,
            "Not Found: metrics are at /metrics\n",
        );
    }
    let openmetrics = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let (body, content_type) = if openmetrics {
        (metrics.encode(), metrics::CONTENT_TYPE)
    } else {
        (
            metrics.encode_prometheus_text(),
            metrics::PROMETHEUS_CONTENT_TYPE,
        )
    };
    let mut response = text_response(StatusCode::OK, body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response
}
