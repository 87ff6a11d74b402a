//! Every answer the runtime gives itself instead of a component's: one type
//! with its status, body, metrics label and log line, used by the server and
//! by the metrics alike (the pattern ping's own component uses for its
//! failures). Answers hyper gives before a request reaches ping-host (400 for
//! an unparsable head, 431 for a head hyper's buffer cannot hold, a closed
//! connection after `--header-read-timeout`) are not among them.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use wasmtime_wasi_http::handler::TrapOrPanicError;

use super::Body;
use crate::engine::MemoryLimitExceeded;
use crate::metrics::Metrics;

/// Why the runtime answered instead of a component.
#[derive(Debug)]
pub enum Refusal {
    /// The request is malformed in a way hyper lets through but a component
    /// cannot be given (no `Host`, an empty, repeated or non-ASCII one): 400
    /// before routing and admission, counted as a rejection
    /// (`reason="bad_request"`), never as a guest error. Spin 3.6.3 closes
    /// the connection without an answer here; a 400 tells the client why.
    BadRequest(&'static str),
    /// The request head is larger than `--max-header-kib` (`limit`, bytes): 431.
    HeadTooLarge { size: usize, limit: usize },
    /// No route matched, or an unknown `/.well-known/spin/` path: 404 with an
    /// empty body and no content type, as Spin 3.6 trigger-http answers it.
    NotFound,
    /// Every instance stayed busy for `--queue-wait`: 503 with `Retry-After: 1`.
    Busy,
    /// The body is over `--max-body-kib`: 413. `declared` is the
    /// `Content-Length` when there was one; otherwise the body was cut off
    /// while the guest read it. `limit` is in bytes.
    BodyTooLarge { declared: Option<u64>, limit: u64 },
    /// The component did not answer within `--request-timeout` (the
    /// duration): 504.
    DeadlineExceeded(std::time::Duration),
    /// The component failed before answering: 500.
    Guest {
        /// Which limit, if any, it hit.
        failure: GuestFailure,
        /// What went wrong, for the log (never sent to the client).
        error: anyhow::Error,
    },
}

/// Why a guest failed to answer; the `kind` label of `ping_host_guest_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestFailure {
    /// The guest trapped (panic, unreachable, out-of-bounds access). For a
    /// WASIp3 instance also a memory-limit hit: wasmtime-wasi-http's
    /// `ProxyHandler` tells its requests only that the worker trapped
    /// (`TrapOrPanicError`), and ping-host logs the cause.
    Trap,
    /// The guest tried to grow its memory past the per-instance limit.
    Memory,
    /// The guest returned without a response, or answered with an error.
    NoResponse,
}

impl GuestFailure {
    /// Which limit, if any, a guest failure comes from. (Running past the
    /// deadline is not among them: the guest yields at each epoch tick rather
    /// than trapping, and the deadline's timer stops it.)
    pub fn classify(e: &anyhow::Error) -> Self {
        if e.chain()
            .any(|c| c.downcast_ref::<MemoryLimitExceeded>().is_some())
        {
            GuestFailure::Memory
        } else if e.chain().any(|c| {
            c.downcast_ref::<wasmtime::Trap>().is_some()
                || c.downcast_ref::<TrapOrPanicError>().is_some()
        }) {
            GuestFailure::Trap
        } else {
            GuestFailure::NoResponse
        }
    }
}

impl Refusal {
    /// A guest failure, classified.
    pub fn guest(error: anyhow::Error) -> Self {
        Refusal::Guest {
            failure: GuestFailure::classify(&error),
            error,
        }
    }

    /// The HTTP status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::HeadTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
            Refusal::Guest { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The metric label: `reason` of `ping_host_requests_rejected_total` for
    /// refusals before the guest ran, `kind` of `ping_host_guest_errors_total`
    /// for guest failures; `None` for 404s (they are counted by route only).
    pub fn metric_label(&self) -> Option<&'static str> {
        match self {
            Refusal::NotFound => None,
            Refusal::BadRequest(_) => Some("bad_request"),
            Refusal::HeadTooLarge { .. } => Some("head_too_large"),
            Refusal::Busy => Some("busy"),
            Refusal::BodyTooLarge { .. } => Some("body_too_large"),
            Refusal::DeadlineExceeded(_) => Some("timeout"),
            Refusal::Guest { failure, .. } => Some(match failure {
                GuestFailure::Trap => "trap",
                GuestFailure::Memory => "memory",
                GuestFailure::NoResponse => "no_response",
            }),
        }
    }

    /// Counts this refusal (a guest error of the routed `component`, or a
    /// rejection by the runtime; `component` is `None` before routing, where
    /// no guest can have failed) and logs what is worth a line.
    pub fn record(&self, metrics: &Metrics, component: Option<&std::sync::Arc<str>>) {
        let Some(label) = self.metric_label() else {
            return;
        };
        match (self, component) {
            (Refusal::DeadlineExceeded(deadline), Some(component)) => {
                metrics.guest_error(component, label);
                tracing::error!(
                    component = &**component,
                    "request stopped: no response within the {deadline:?} deadline (--request-timeout)"
                );
            }
            (Refusal::Guest { failure, error }, Some(component)) => {
                metrics.guest_error(component, label);
                tracing::error!(component = &**component, kind = ?failure, "request failed: {error:?}");
            }
            (Refusal::BadRequest(why), _) => {
                metrics.rejected(label);
                tracing::debug!("bad request: {why}");
            }
            _ => metrics.rejected(label),
        }
    }

    /// The response the client gets.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        if let Refusal::NotFound = self {
            let mut response = text_response(status, Bytes::new());
            response.headers_mut().remove(http::header::CONTENT_TYPE);
            return response;
        }
        let mut response = text_response(status, self.body());
        if let Refusal::Busy = self {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }

    fn body(&self) -> String {
        match self {
            Refusal::BadRequest(why) => format!("bad request: {why}\n"),
            Refusal::HeadTooLarge { size, limit } => format!(
                "a request head of {size} bytes is larger than the {limit} bytes allowed (--max-header-kib)\n"
            ),
            Refusal::NotFound => String::new(),
            Refusal::Busy => "every instance is busy; retry shortly\n".into(),
            Refusal::BodyTooLarge { declared, limit } => {
                let size = declared.map_or("the request body is".to_owned(), |n| {
                    format!("a request body of {n} bytes is")
                });
                format!("{size} larger than the {limit} bytes allowed (--max-body-kib)\n")
            }
            Refusal::DeadlineExceeded(_) => {
                "the component did not answer within the request deadline\n".into()
            }
            Refusal::Guest { .. } => "Internal Server Error\n".into(),
        }
    }
}

/// A short plain-text response from the runtime itself.
pub fn text_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_status_label_and_body() {
        let busy = Refusal::Busy.into_response();
        assert_eq!(busy.status(), 503);
        assert_eq!(busy.headers()["retry-after"], "1");
        let large = Refusal::BodyTooLarge {
            declared: Some(2048),
            limit: 1024,
        };
        assert_eq!(large.metric_label(), Some("body_too_large"));
        assert_eq!(
            large.body(),
            "a request body of 2048 bytes is larger than the 1024 bytes allowed (--max-body-kib)\n"
        );
        assert_eq!(
            Refusal::DeadlineExceeded(std::time::Duration::from_secs(1)).status(),
            504
        );
        let memory = anyhow::Error::new(MemoryLimitExceeded {
            desired: 2,
            limit: 1,
        })
        .context("the guest failed before responding");
        assert_eq!(Refusal::guest(memory).metric_label(), Some("memory"));
        let silent = anyhow::anyhow!("the guest returned without setting a response");
        assert_eq!(Refusal::guest(silent).metric_label(), Some("no_response"));
        assert_eq!(Refusal::NotFound.metric_label(), None);
        let not_found = Refusal::NotFound.into_response();
        assert_eq!(not_found.status(), 404);
        assert!(
            not_found.headers().get("content-type").is_none(),
            "Spin's 404 has no body and no content type"
        );
        let bad = Refusal::BadRequest("no Host header");
        assert_eq!(
            (bad.status(), bad.metric_label()),
            (StatusCode::BAD_REQUEST, Some("bad_request"))
        );
    }
}
