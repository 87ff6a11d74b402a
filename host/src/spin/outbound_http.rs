//! Outbound HTTP from guests (`wasi:http/outgoing-handler`), held to the
//! component's `allowed_outbound_hosts` like Spin does. ping itself makes no
//! HTTP calls; this keeps the host from being an open proxy for any component.

use std::sync::Arc;

use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::allowed_hosts::{AllowedHosts, Destination, canonical_host, default_port};

/// The `wasi:http` hooks of one instance: its component's allow-list.
pub struct OutboundHttp {
    allowed: Arc<AllowedHosts>,
    component: Arc<str>,
}

impl OutboundHttp {
    /// Hooks that let `component` reach only `allowed`.
    pub fn new(allowed: Arc<AllowedHosts>, component: Arc<str>) -> Self {
        OutboundHttp { allowed, component }
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let destination = uri.host().map(|host| Destination {
            port: uri
                .port_u16()
                .or_else(|| default_port(&scheme))
                .unwrap_or(0),
            host: canonical_host(host),
            scheme,
        });
        let allowed = destination.as_ref().is_some_and(|d| self.allowed.allows(d));
        if !allowed {
            let shown = destination
                .map(|d| d.to_string())
                .unwrap_or_else(|| "(no host)".into());
            tracing::warn!(
                component = &*self.component,
                destination = %shown,
                "outbound HTTP refused: not in allowed_outbound_hosts"
            );
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        drop(fut);
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>,
            ))
        })
    }
}
