//! Spin's `spin-*` request headers (Spin 3.6 trigger-http `headers.rs`), so
//! components using the SDK router see what they would under Spin. The headers
//! that depend only on the route are built once at start-up ([`Target`]); the
//! rest per request ([`spin_headers`]).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use http::{HeaderName, HeaderValue, Request};
use prometheus_client::metrics::histogram::Histogram;

use crate::app::HttpTrigger;
use crate::metrics::Metrics;

/// What a route leads to: a component, and the Spin headers that depend only
/// on the route, built once at start-up rather than per request.
pub(super) struct Target {
    /// Index of the component in the server's list.
    pub(super) slot: usize,
    /// `spin-matched-route`, `spin-raw-component-route`, `spin-component-route`, `spin-base-path`.
    pub(super) headers: [(HeaderName, HeaderValue); 4],
    /// The `route` label of this route's metrics.
    pub(super) route: Arc<str>,
    /// This route's `ping_host_http_request_duration_seconds` series.
    pub(super) latency: Histogram,
    /// `spin-path-match-<name>` for each named segment, in route order
    /// (`None` for a name that is not a valid header name).
    path_match_names: Vec<Option<HeaderName>>,
}

impl Target {
    /// Spin 3.6 trigger-http: `spin-matched-route` is the route under the
    /// app's base, `spin-raw-component-route` the route as written,
    /// `spin-component-route` that without `/...`, `spin-base-path` the base.
    pub(super) fn new(slot: usize, trigger: &HttpTrigger, metrics: &Metrics) -> Result<Self> {
        let route = trigger.route.as_str();
        let based = trigger.based_route();
        let label: Arc<str> = based.as_str().into();
        let component_route = route.strip_suffix("/...").unwrap_or(route);
        let value = |v: &str| HeaderValue::from_str(v).with_context(|| format!("route `{route}`"));
        let path_match_names = based
            .split('/')
            .filter_map(|seg| seg.strip_prefix(':'))
            .map(path_match_name)
            .collect();
        Ok(Target {
            slot,
            path_match_names,
            latency: metrics.route_histogram(&label),
            route: label,
            headers: [
                (
                    HeaderName::from_static("spin-matched-route"),
                    value(&based)?,
                ),
                (
                    HeaderName::from_static("spin-raw-component-route"),
                    value(route)?,
                ),
                (
                    HeaderName::from_static("spin-component-route"),
                    value(component_route)?,
                ),
                (
                    HeaderName::from_static("spin-base-path"),
                    value(&trigger.base)?,
                ),
            ],
        })
    }
}

/// Sets `headers` on `req`, replacing any the client sent under those names.
pub(super) fn insert<B>(
    req: &mut Request<B>,
    headers: Vec<(HeaderName, HeaderValue)>,
    target: &Target,
) {
    let map = req.headers_mut();
    for (name, value) in headers.into_iter().chain(target.headers.iter().cloned()) {
        map.insert(name, value);
    }
}

/// The Spin request headers that change per request (`spin-full-url`,
/// `spin-path-info`, `spin-client-addr`); [`insert`] adds them with the route's.
pub(super) fn spin_headers<B>(
    req: &Request<B>,
    client: SocketAddr,
    local: SocketAddr,
    path_info: &str,
) -> Vec<(HeaderName, HeaderValue)> {
    let authority = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| local.to_string());
    let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let pairs = [
        (
            "spin-full-url",
            format!("http://{authority}{path_and_query}"),
        ),
        ("spin-path-info", path_info.to_owned()),
        ("spin-client-addr", client.to_string()),
    ];
    pairs
        .into_iter()
        .filter_map(|(name, value)| {
            Some((
                HeaderName::from_static(name),
                HeaderValue::from_str(&value).ok()?,
            ))
        })
        .collect()
}

/// `spin-path-match-<name>` for each named segment of the matched route, the
/// name's `_` written `-` (Spin 3.6 trigger-http: `/:path_segment` gives
/// `spin-path-match-path-segment`).
/// The names are built once per route ([`Target::new`]); only the values are
/// per request.
pub(super) fn path_matches(
    target: &Target,
    captures: &[(&str, &str)],
) -> Vec<(HeaderName, HeaderValue)> {
    target
        .path_match_names
        .iter()
        .zip(captures)
        .filter_map(|(name, (_, value))| Some((name.clone()?, HeaderValue::from_str(value).ok()?)))
        .collect()
}

fn path_match_name(segment: &str) -> Option<HeaderName> {
    let name = format!("spin-path-match-{}", segment.replace('_', "-")).to_ascii_lowercase();
    HeaderName::from_bytes(name.as_bytes()).ok()
}

/// Why a request cannot be handed to a component, if it cannot: the
/// authority wasmtime-wasi-http (and so Spin 3.6 trigger-http) requires must
/// come from the URI or from exactly one non-empty, visible-ASCII `Host`
/// header that parses as `host[:port]` (RFC 9112 §3.2: otherwise 400).
pub(super) fn client_error<B>(req: &Request<B>) -> Option<&'static str> {
    if req.uri().authority().is_some() {
        return None;
    }
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let Some(host) = hosts.next() else {
        return Some("no Host header");
    };
    if hosts.next().is_some() {
        return Some("more than one Host header");
    }
    if host.is_empty() {
        return Some("empty Host header");
    }
    let Ok(text) = host.to_str() else {
        return Some("the Host header is not visible ASCII");
    };
    if text.parse::<http::uri::Authority>().is_err() {
        return Some("the Host header is not host[:port]");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_segments_become_spin_path_match_headers() {
        let target = Target::new(
            0,
            &trigger("/:path_segment/users/:id", "/"),
            &Metrics::new(1),
        )
        .expect("valid route");
        let headers = path_matches(&target, &[("path_segment", "path"), ("id", "42")]);
        let got: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().expect("ascii")))
            .collect();
        assert_eq!(
            got,
            [
                ("spin-path-match-path-segment", "path"),
                ("spin-path-match-id", "42")
            ]
        );
    }

    #[test]
    fn requests_without_a_usable_authority_are_client_errors() {
        let with = |host: Option<&[u8]>| {
            let mut req = Request::get("/ping").body(()).expect("request");
            if let Some(h) = host {
                req.headers_mut().insert(
                    http::header::HOST,
                    HeaderValue::from_bytes(h).expect("header value"),
                );
            }
            client_error(&req)
        };
        assert_eq!(with(Some(b"127.0.0.1:3000")), None);
        assert_eq!(with(Some(b"[::1]:3000")), None);
        assert_eq!(with(None), Some("no Host header"));
        assert_eq!(with(Some(b"")), Some("empty Host header"));
        assert!(with(Some(b"caf\xc3\xa9")).is_some(), "non-ASCII Host");
        assert!(with(Some(b"a b")).is_some(), "not an authority");
        let mut twice = Request::get("/").body(()).expect("request");
        twice
            .headers_mut()
            .append(http::header::HOST, HeaderValue::from_static("a"));
        twice
            .headers_mut()
            .append(http::header::HOST, HeaderValue::from_static("b"));
        assert_eq!(client_error(&twice), Some("more than one Host header"));
        let absolute = Request::get("http://example.test/ping")
            .body(())
            .expect("request");
        assert_eq!(
            client_error(&absolute),
            None,
            "the URI's authority is enough"
        );
    }

    fn header<'a>(t: &'a Target, name: &str) -> &'a str {
        let (_, value) = t
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .expect("header present");
        value.to_str().expect("ascii")
    }

    fn trigger(route: &str, base: &str) -> HttpTrigger {
        HttpTrigger {
            id: "t".into(),
            route: route.into(),
            component: "c".into(),
            base: base.into(),
        }
    }

    #[test]
    fn route_headers_under_a_base_are_spins() {
        // fermyon/conformance-tests request-shape's expectations.
        let metrics = Metrics::new(1);
        let t = Target::new(
            0,
            &trigger("/:path_segment/:path_end/...", "/base"),
            &metrics,
        )
        .expect("valid route");
        assert_eq!(
            header(&t, "spin-matched-route"),
            "/base/:path_segment/:path_end/..."
        );
        assert_eq!(
            header(&t, "spin-raw-component-route"),
            "/:path_segment/:path_end/..."
        );
        assert_eq!(
            header(&t, "spin-component-route"),
            "/:path_segment/:path_end"
        );
        assert_eq!(header(&t, "spin-base-path"), "/base");
        let root = Target::new(0, &trigger("/", "/"), &metrics).expect("valid route");
        assert_eq!(header(&root, "spin-matched-route"), "/");
    }

    #[test]
    fn route_headers_are_spins() {
        let metrics = Metrics::new(1);
        let wildcard = Target::new(0, &trigger("/api/...", "/"), &metrics).expect("valid route");
        assert_eq!(header(&wildcard, "spin-matched-route"), "/api/...");
        assert_eq!(header(&wildcard, "spin-raw-component-route"), "/api/...");
        assert_eq!(header(&wildcard, "spin-component-route"), "/api");
        assert_eq!(header(&wildcard, "spin-base-path"), "/");
        let exact = Target::new(1, &trigger("/ping", "/"), &metrics).expect("valid route");
        assert_eq!(header(&exact, "spin-component-route"), "/ping");
    }

    #[test]
    fn request_headers_carry_the_url_path_info_and_client() {
        let metrics = Metrics::new(1);
        let target = Target::new(0, &trigger("/api/...", "/"), &metrics).expect("valid route");
        let mut req = Request::get("/api/x?y=1")
            .header("host", "example.test:3000")
            .body(())
            .expect("request");
        let client: SocketAddr = "10.0.0.9:5555".parse().expect("addr");
        let local: SocketAddr = "127.0.0.1:3000".parse().expect("addr");
        let dynamic = spin_headers(&req, client, local, "/x");
        insert(&mut req, dynamic, &target);
        let h = req.headers();
        assert_eq!(h["spin-full-url"], "http://example.test:3000/api/x?y=1");
        assert_eq!(h["spin-path-info"], "/x");
        assert_eq!(h["spin-client-addr"], "10.0.0.9:5555");
        assert_eq!(h["spin-matched-route"], "/api/...");
    }
}
