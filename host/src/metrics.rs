//! Runtime metrics, served in Prometheus/OpenMetrics text on their own listener
//! (`--metrics-listen`) so that scraping never competes with, or is exposed
//! through, the app's port.
//!
//! The request counter is named and labelled the way Spin's OpenTelemetry
//! counter `spin.request_count` reads after the Collector's Prometheus
//! translation (`spin_request_count_total{app_id,component_id,trigger_type}`):
//! one dashboard then serves both `ping-host` and Spin on a cluster. Everything
//! else is ping-host's own and carries the `ping_host_` prefix.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The wasmtime release ping-host is built on (pinned in host/Cargo.toml).
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpinLabels {
    app_id: Arc<str>,
    component_id: Arc<str>,
    trigger_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    command: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandErrorLabels {
    command: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GuestErrorLabels {
    component_id: Arc<str>,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    wasmtime_version: &'static str,
}

/// Why a guest failed to answer; the `kind` label of `ping_host_guest_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestFailure {
    /// The guest trapped (panic, unreachable, out-of-bounds access).
    Trap,
    /// The guest ran past the request deadline.
    Timeout,
    /// The guest tried to grow its memory past the per-instance limit.
    Memory,
    /// The guest returned without a response, or answered with an error.
    NoResponse,
}

impl GuestFailure {
    fn label(self) -> &'static str {
        match self {
            GuestFailure::Trap => "trap",
            GuestFailure::Timeout => "timeout",
            GuestFailure::Memory => "memory",
            GuestFailure::NoResponse => "no_response",
        }
    }
}

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

impl Metrics {
    /// A registry with every metric registered; `max_instances` is the size of
    /// the instance pool, exported so saturation can be computed.
    pub fn new(max_instances: u32) -> Self {
        let mut registry = Registry::default();
        let spin_requests = Family::default();
        registry.register(
            "spin_request_count",
            "Requests handled by a component (Spin's spin.request_count)",
            spin_requests.clone(),
        );
        let requests = Family::default();
        registry.register(
            "ping_host_http_requests",
            "HTTP requests answered, by matched route, method and status (route is empty when no route matched)",
            requests.clone(),
        );
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "ping_host_http_request_duration_seconds",
            "Time from the request head to the response head, by matched route",
            duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "ping_host_http_requests_in_flight",
            "Requests being handled right now",
            in_flight.clone(),
        );
        let instantiation = Histogram::new(INSTANTIATION_BUCKETS);
        registry.register(
            "ping_host_instantiation_duration_seconds",
            "Time to instantiate a component for one request",
            instantiation.clone(),
        );
        let instances_in_use = Gauge::default();
        registry.register(
            "ping_host_instances_in_use",
            "Component instances running right now",
            instances_in_use.clone(),
        );
        let instances_max = Gauge::<i64>::default();
        instances_max.set(i64::from(max_instances));
        registry.register(
            "ping_host_instances_max",
            "Size of the instance pool (--max-instances)",
            instances_max,
        );
        let rejected = Family::default();
        registry.register(
            "ping_host_requests_rejected",
            "Requests the runtime refused (reason: busy, body_too_large)",
            rejected.clone(),
        );
        let guest_errors = Family::default();
        registry.register(
            "ping_host_guest_errors",
            "Requests a component failed to answer (kind: trap, timeout, memory, no_response)",
            guest_errors.clone(),
        );
        let redis_duration = Family::<CommandLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "ping_host_redis_command_duration_seconds",
            "Latency of Redis commands issued for components, failures included",
            redis_duration.clone(),
        );
        let redis_errors = Family::default();
        registry.register(
            "ping_host_redis_errors",
            "Redis commands that failed (reason: timeout, refused, type, other)",
            redis_errors.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                wasmtime_version: WASMTIME_VERSION,
            })
            .set(1);
        registry.register(
            "ping_host_build_info",
            "Always 1; labels carry the ping-host and wasmtime versions",
            build,
        );
        registry.register_collector(Box::new(ProcessCollector));
        Metrics {
            registry,
            spin_requests,
            requests,
            duration,
            in_flight,
            instantiation,
            instances_in_use,
            rejected,
            guest_errors,
            redis_duration,
            redis_errors,
        }
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

    pub fn observe_instantiation(&self, elapsed: Duration) {
        self.instantiation.observe(elapsed.as_secs_f64());
    }

    /// Marks an instance as running until the guard drops.
    pub fn instance(self: &Arc<Self>) -> InstanceInUse {
        self.instances_in_use.inc();
        InstanceInUse(self.clone())
    }

    pub fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn guest_error(&self, component_id: &Arc<str>, failure: GuestFailure) {
        self.guest_errors
            .get_or_create(&GuestErrorLabels {
                component_id: component_id.clone(),
                kind: failure.label(),
            })
            .inc();
    }

    pub fn redis_command(&self, command: &'static str, elapsed: Duration) {
        self.redis_duration
            .get_or_create(&CommandLabels { command })
            .observe(elapsed.as_secs_f64());
    }

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
        openmetrics_to_prometheus_text(&self.encode())
    }
}

/// The two text formats differ, for what this registry emits, only in that
/// OpenMetrics names a counter family without its `_total` suffix in `# HELP`
/// and `# TYPE`, and ends with `# EOF`.
fn openmetrics_to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 256);
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves. Anything
/// else gets 404; the listener is meant for Prometheus, not for clients.
pub async fn serve(
    metrics: Arc<Metrics>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("metrics listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let metrics = metrics.clone();
        let service = hyper::service::service_fn(move |req: http::Request<_>| {
            let metrics = metrics.clone();
            async move {
                let response = if req.uri().path() == "/metrics" {
                    // Prometheus asks for OpenMetrics; anything else gets the classic format.
                    let openmetrics = req
                        .headers()
                        .get(http::header::ACCEPT)
                        .and_then(|a| a.to_str().ok())
                        .is_some_and(|a| a.contains("application/openmetrics-text"));
                    let (body, content_type) = if openmetrics {
                        (metrics.encode(), CONTENT_TYPE)
                    } else {
                        (metrics.encode_prometheus_text(), PROMETHEUS_CONTENT_TYPE)
                    };
                    let mut r = crate::server::plain(http::StatusCode::OK, body);
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(content_type),
                    );
                    r
                } else {
                    crate::server::plain(
                        http::StatusCode::NOT_FOUND,
                        "Not Found: metrics are at /metrics\n",
                    )
                };
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("metrics connection ended: {e}");
            }
        });
    }
}

/// Standard methods by name; anything else is "other", so a client cannot
/// mint label values (and series) at will.
fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
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

/// The standard `process_*` metrics (CPU, resident memory, start time), read
/// from `/proc` at scrape time, so local dashboards can show CPU and memory the
/// way cAdvisor's `container_*` metrics do on a cluster.
#[derive(Debug)]
struct ProcessCollector;

/// Linux reports `/proc` times in USER_HZ, fixed at 100 by the kernel ABI.
const USER_HZ: f64 = 100.0;

struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: i64,
    start_time_seconds: f64,
    open_fds: i64,
}

fn process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is parenthesised and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15; starttime is 22 (1-based, with pid and comm).
    let cpu_seconds = (ticks(11)? + ticks(12)?) / USER_HZ;
    let started_ticks = ticks(19)?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let resident_kib: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let boot_time: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64);
    Some(ProcessStats {
        cpu_seconds,
        resident_bytes: resident_kib * 1024,
        start_time_seconds: boot_time + started_ticks / USER_HZ,
        open_fds,
    })
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = process_stats() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(stats.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            MetricType::Counter,
        )?)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                stats.resident_bytes as f64,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                stats.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                stats.open_fds as f64,
            ),
        ];
        for (name, help, value) in gauges {
            ConstGauge::new(value).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
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
    fn classic_text_names_counters_with_their_suffix() {
        let metrics = Metrics::new(1);
        metrics
            .spin_request_counter("ping", &Arc::from("ping"))
            .inc();
        let text = metrics.encode_prometheus_text();
        assert!(
            text.contains("# TYPE spin_request_count_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP spin_request_count_total Requests"),
            "{text}"
        );
        assert!(text.contains("# TYPE ping_host_in"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        assert!(metrics.encode().ends_with("# EOF\n"));
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
    fn process_metrics_come_from_proc() {
        let text = Metrics::new(1).encode();
        let rss = process_stats().expect("linux /proc").resident_bytes;
        assert!(rss > 1024 * 1024, "{rss}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
    }
}
