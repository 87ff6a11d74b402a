//! Runtime metrics, encoded as Prometheus/OpenMetrics text for the
//! `--metrics-listen` endpoint (`http::metrics_endpoint`).
//!
//! The request counter is named and labelled the way Spin's OpenTelemetry
//! counter `spin.request_count` reads after the Collector's Prometheus
//! translation (`spin_request_count_total{app_id,component_id,trigger_type}`):
//! one dashboard then serves both `ping-host` and Spin on a cluster. Everything
//! else is ping-host's own and carries the `ping_host_` prefix.

use std::sync::Arc;
use std::time::Duration;

mod labels;
mod process;
mod text;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};

use self::labels::*;
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

/// The wasmtime release ping-host is built on (pinned in host/Cargo.toml; a
/// test keeps the two equal).
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Content type of [`Metrics::encode_prometheus_text`]'s output.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Request latency buckets, seconds: sub-millisecond (a cached `GET /`) up to
/// the request deadline.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Instantiation takes microseconds with the pooling allocator.
const INSTANTIATION_BUCKETS: [f64; 10] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.1,
];

/// Every metric ping-host registers, in registration order: name and help.
/// The names are an interface (dashboards and alerts read them).
const REGISTERED: [(&str, &str); 12] = [
    (
        "spin_request_count",
        "Requests handled by a component (Spin's spin.request_count)",
    ),
    (
        "ping_host_http_requests",
        "HTTP requests answered, by matched route, method and status (route is empty when no route matched)",
    ),
    (
        "ping_host_http_request_duration_seconds",
        "Time from the request head to the response head, by matched route",
    ),
    (
        "ping_host_http_requests_in_flight",
        "Requests being handled right now",
    ),
    (
        "ping_host_instantiation_duration_seconds",
        "Time to instantiate a component for one request",
    ),
    (
        "ping_host_instances_in_use",
        "Component instances running right now",
    ),
    (
        "ping_host_instances_max",
        "Size of the instance pool (--max-instances)",
    ),
    (
        "ping_host_requests_rejected",
        "Requests the runtime refused (reason: bad_request, head_too_large, busy, body_too_large)",
    ),
    (
        "ping_host_guest_errors",
        "Requests a component failed to answer (kind: trap, timeout, memory, no_response)",
    ),
    (
        "ping_host_redis_command_duration_seconds",
        "Latency of Redis commands issued for components, failures included",
    ),
    (
        "ping_host_redis_errors",
        "Redis commands that failed (reason: timeout, refused, type, other)",
    ),
    (
        "ping_host_build_info",
        "Always 1; labels carry the ping-host and wasmtime versions",
    ),
];

/// Every metric ping-host keeps, shared by the server, the Redis pool and the
/// scrape endpoint.
pub struct Metrics {
    registry: Registry,
    spin_requests: Family<SpinLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    in_flight: Gauge,
    instantiation: Histogram,
    instances_in_use: Gauge,
    rejected: Family<ReasonLabels, Counter>,
    guest_errors: Family<GuestErrorLabels, Counter>,
    redis_duration: Family<CommandLabels, Histogram>,
    redis_errors: Family<CommandErrorLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// A family of latency histograms, one per label set.
fn latency_family<L: Clone + std::hash::Hash + Eq>() -> Family<L, Histogram, fn() -> Histogram> {
    Family::new_with_constructor(latency_histogram as fn() -> Histogram)
}

impl Metrics {
    /// A registry with every metric registered; `max_instances` is the size of
    /// the instance pool, exported so saturation can be computed.
    pub fn new(max_instances: u32) -> Self {
        let metrics = Metrics {
            registry: Registry::default(),
            spin_requests: Family::default(),
            requests: Family::default(),
            duration: latency_family(),
            in_flight: Gauge::default(),
            instantiation: Histogram::new(INSTANTIATION_BUCKETS),
            instances_in_use: Gauge::default(),
            rejected: Family::default(),
            guest_errors: Family::default(),
            redis_duration: latency_family(),
            redis_errors: Family::default(),
        };
        metrics.registered(max_instances)
    }

    /// Registers every metric under its [`REGISTERED`] name.
    fn registered(mut self, max_instances: u32) -> Self {
        let instances_max = Gauge::<i64>::default();
        instances_max.set(i64::from(max_instances));
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                wasmtime_version: WASMTIME_VERSION,
            })
            .set(1);
        let all: [Box<dyn Metric>; 12] = [
            Box::new(self.spin_requests.clone()),
            Box::new(self.requests.clone()),
            Box::new(self.duration.clone()),
            Box::new(self.in_flight.clone()),
            Box::new(self.instantiation.clone()),
            Box::new(self.instances_in_use.clone()),
            Box::new(instances_max),
            Box::new(self.rejected.clone()),
            Box::new(self.guest_errors.clone()),
            Box::new(self.redis_duration.clone()),
            Box::new(self.redis_errors.clone()),
            Box::new(build),
        ];
        for ((name, help), metric) in REGISTERED.into_iter().zip(all) {
            self.registry.register(name, help, Boxed(metric));
        }
        self.registry
            .register_collector(Box::new(process::ProcessCollector));
        self
    }

    /// The `spin_request_count_total` series of one component, resolved once
    /// at start-up so the hot path is one atomic add.
    pub fn spin_request_counter(&self, app_id: &str, component_id: &Arc<str>) -> Counter {
        self.spin_requests.get_or_create_owned(&SpinLabels {
            app_id: app_id.into(),
            component_id: component_id.clone(),
            trigger_type: "http",
        })
    }

    /// The latency histogram of one route, resolved once at start-up.
    pub fn route_histogram(&self, route: &Arc<str>) -> Histogram {
        self.duration.get_or_create_owned(&RouteLabels {
            route: route.clone(),
        })
    }

    /// Counts one answered request.
    pub fn record_request(&self, route: &Arc<str>, method: &http::Method, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                method: method_label(method),
                status,
            })
            .inc();
    }

    /// Marks a request in flight until the guard drops.
    pub fn in_flight(self: &Arc<Self>) -> InFlight {
        self.in_flight.inc();
        InFlight(self.clone())
    }

    /// Observes one instantiation's duration.
    pub fn observe_instantiation(&self, elapsed: Duration) {
        self.instantiation.observe(elapsed.as_secs_f64());
    }

    /// Marks an instance as running until the guard drops.
    pub fn instance(self: &Arc<Self>) -> InstanceInUse {
        self.instances_in_use.inc();
        InstanceInUse(self.clone())
    }

    /// Counts a request the runtime refused (`reason`: bad_request, head_too_large, busy, body_too_large).
    pub fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Counts a request `component_id` failed to answer (`kind`: trap,
    /// timeout, memory, no_response).
    pub fn guest_error(&self, component_id: &Arc<str>, kind: &'static str) {
        self.guest_errors
            .get_or_create(&GuestErrorLabels {
                component_id: component_id.clone(),
                kind,
            })
            .inc();
    }

    /// Observes one Redis command's latency.
    pub fn redis_command(&self, command: &'static str, elapsed: Duration) {
        self.redis_duration
            .get_or_create(&CommandLabels { command })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a failed Redis command (`reason`: timeout, refused, type, other).
    pub fn redis_error(&self, command: &'static str, reason: &'static str) {
        self.redis_errors
            .get_or_create(&CommandErrorLabels { command, reason })
            .inc();
    }

    /// The whole registry in OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The registry in the classic Prometheus text format (0.0.4), for
    /// clients that do not ask for OpenMetrics (curl, `promtool check metrics`).
    pub fn encode_prometheus_text(&self) -> String {
        text::openmetrics_to_prometheus_text(&self.encode())
    }
}

/// A registered metric of any type, so registration is one table.
#[derive(Debug)]
struct Boxed(Box<dyn Metric>);

impl EncodeMetric for Boxed {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Decrements `ping_host_http_requests_in_flight` on drop.
pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// Decrements `ping_host_instances_in_use` on drop.
pub struct InstanceInUse(Arc<Metrics>);

impl Drop for InstanceInUse {
    fn drop(&mut self) {
        self.0.instances_in_use.dec();
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_counter_reads_like_spins_after_translation() {
        let metrics = Metrics::new(8);
        let counter = metrics.spin_request_counter("ping", &Arc::from("ping"));
        counter.inc();
        counter.inc();
        let text = metrics.encode();
        assert!(
            text.contains(
                "spin_request_count_total{app_id=\"ping\",component_id=\"ping\",trigger_type=\"http\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("ping_host_instances_max 8"), "{text}");
        assert!(text.contains("ping_host_build_info{version="), "{text}");
    }

    #[test]
    fn unknown_methods_do_not_mint_series() {
        let metrics = Metrics::new(1);
        let route: Arc<str> = Arc::from("/ping");
        for m in ["BREW", "WHEN", "GET"] {
            let method = http::Method::from_bytes(m.as_bytes()).expect("token");
            metrics.record_request(&route, &method, 405);
        }
        let text = metrics.encode();
        assert!(
            text.contains("method=\"other\",status=\"405\"} 2"),
            "{text}"
        );
        assert!(!text.contains("BREW"), "{text}");
    }

    #[test]
    fn guards_restore_the_gauges() {
        let metrics = Arc::new(Metrics::new(1));
        {
            let _a = metrics.in_flight();
            let _b = metrics.instance();
            assert!(metrics.encode().contains("ping_host_instances_in_use 1"));
        }
        let text = metrics.encode();
        assert!(text.contains("ping_host_instances_in_use 0"), "{text}");
        assert!(
            text.contains("ping_host_http_requests_in_flight 0"),
            "{text}"
        );
    }

    #[test]
    fn the_wasmtime_version_label_matches_the_pin() {
        let manifest = include_str!("../../Cargo.toml");
        assert!(
            manifest.contains(&format!("wasmtime = {{ version = \"={WASMTIME_VERSION}\"")),
            "update WASMTIME_VERSION to host/Cargo.toml's wasmtime pin"
        );
    }
}
