//! Serving HTTP the way Spin's HTTP trigger does: route first (unknown paths
//! never instantiate anything), answer the runtime's own `/.well-known/spin/`
//! paths, add Spin's `spin-*` request headers, then run the request on a fresh
//! instance of the routed component.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use wasmtime::{Engine, Store};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::app::{App, Source};
use crate::engine;
use crate::metrics::{GuestFailure, Metrics};
use crate::outbound::AllowedHosts;
use crate::redis::{RedisPool, Timeouts};
use crate::routing::{Router, WELL_KNOWN_PREFIX};
use crate::state::{Admission, HostState, MemoryLimitExceeded};
use crate::variables::{ComponentVariables, Resolved};

/// The response body type used throughout.
pub type Body = HyperOutgoingBody;

/// Runtime settings the command line controls.
#[derive(Debug, Clone)]
pub struct Settings {
    pub engine: engine::EngineOptions,
    pub cache_dir: Option<std::path::PathBuf>,
    pub redis: Timeouts,
    /// How long shutdown waits for in-flight requests.
    pub drain: Duration,
    /// The OCI manifest digest the app was pulled as, shown by `/.well-known/spin/info`.
    pub image_digest: Option<String>,
    /// Limits that keep one request (or one client) from taking the host down.
    pub limits: RequestLimits,
}

/// Per-request bounds.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Wall-clock budget of one request, from admission to the response head.
    /// A guest past it is interrupted and the client gets 504.
    pub deadline: Duration,
    /// How long a request waits for a free instance before getting 503.
    pub queue_wait: Duration,
    /// Largest request body accepted (413 beyond).
    pub max_body: u64,
    /// Largest request head (request line plus headers); hyper answers 431 beyond.
    pub max_head: usize,
    /// Time allowed for a client to send a complete request head (slow clients
    /// are cut off after it).
    pub head_timeout: Duration,
}

/// How often the engine's epoch advances. A running guest yields to the async
/// runtime at every tick, so a guest that never returns cannot pin a worker
/// thread, and the request deadline (a timer) can stop it. The tick is short
/// because tokio polls for new I/O only every few dozen task polls: with
/// guests spinning in 10 ms slices, new connections waited up to ~0.6 s.
/// A ping request runs for tens of microseconds, so few ever reach a tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// One component, ready to instantiate per request.
struct Prepared {
    id: Arc<str>,
    pre: ProxyPre<HostState>,
    variables: Arc<ComponentVariables>,
    allowed: Arc<AllowedHosts>,
    max_memory: usize,
    /// This component's `spin_request_count_total` series.
    requests: prometheus_client::metrics::counter::Counter,
}

/// Everything needed to serve an app; built once at start-up.
pub struct Runtime {
    name: String,
    version: Option<String>,
    image_digest: Option<String>,
    router: Router<Target>,
    components: Vec<Prepared>,
    redis: Arc<RedisPool>,
    metrics: Arc<Metrics>,
    /// One permit per pooled instance: the concurrency cap.
    permits: Arc<tokio::sync::Semaphore>,
    limits: RequestLimits,
    /// The `route` label of requests no route matched.
    unrouted: Arc<str>,
    /// The `route` label of the runtime's own `/.well-known/spin/` paths.
    well_known_route: Arc<str>,
}

impl Runtime {
    /// Compiles (or loads from cache) and links every routed component. All
    /// configuration problems surface here, before the first request.
    pub fn new(app: &App, vars: &Resolved, settings: &Settings) -> Result<Self> {
        let engine = engine::engine(&settings.engine)?;
        let linker = engine::linker(&engine)?;
        let metrics = Arc::new(Metrics::new(settings.engine.max_instances));
        tick_epochs(&engine);
        let mut components = Vec::new();
        let mut index = std::collections::HashMap::new();
        let mut routes = Vec::new();
        for trigger in &app.http_triggers {
            let slot = match index.get(&trigger.component) {
                Some(i) => *i,
                None => {
                    let prepared = prepare(
                        app,
                        &trigger.component,
                        vars,
                        &engine,
                        &linker,
                        settings,
                        &metrics,
                    )?;
                    components.push(prepared);
                    index.insert(trigger.component.clone(), components.len() - 1);
                    components.len() - 1
                }
            };
            routes.push((
                trigger.route.clone(),
                Target::new(slot, &trigger.route, &metrics)?,
            ));
        }
        Ok(Runtime {
            name: app.name.clone(),
            version: app.version.clone(),
            image_digest: settings.image_digest.clone(),
            router: Router::new(routes)?,
            components,
            redis: Arc::new(RedisPool::new(settings.redis, metrics.clone())),
            permits: Arc::new(tokio::sync::Semaphore::new(
                settings.engine.max_instances as usize,
            )),
            metrics,
            limits: settings.limits,
            unrouted: Arc::from(""),
            well_known_route: Arc::from(WELL_KNOWN_PREFIX),
        })
    }

    /// The runtime's metrics, for the `--metrics-listen` endpoint.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// `(route, component id)` pairs, for the start-up log.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.router
            .routes()
            .map(|(r, t)| (r, &*self.components[t.slot].id))
    }

    /// Serves on `listener` until `shutdown` resolves, then lets in-flight
    /// requests finish (up to `drain`).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        drain: Duration,
    ) -> Result<()> {
        let local = listener.local_addr()?;
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, client) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Usually EMFILE: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let runtime = self.clone();
            let service = hyper::service::service_fn(move |req| {
                let runtime = runtime.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(runtime.handle(req, client, local).await)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(true)
                .header_read_timeout(self.limits.head_timeout)
                .max_buf_size(self.limits.max_head)
                .serve_connection(TokioIo::new(stream), service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%client, "connection ended: {e}");
                }
            });
        }
        drop(listener);
        tracing::info!("shutting down: waiting for in-flight requests");
        if tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("in-flight requests still running after {drain:?}; exiting anyway");
        }
        Ok(())
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        client: SocketAddr,
        local: SocketAddr,
    ) -> Response<Body> {
        let started = Instant::now();
        let _in_flight = self.metrics.in_flight();
        let method = req.method().clone();
        // Copy the path for the access log only when it is on: this runs per request.
        let logged_path =
            tracing::enabled!(tracing::Level::DEBUG).then(|| req.uri().path().to_owned());
        let (response, routed) = self.dispatch(req, client, local).await;
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        let route = match routed {
            Routed::Route(target) => {
                target.latency.observe(elapsed.as_secs_f64());
                &target.route
            }
            Routed::WellKnown => &self.well_known_route,
            Routed::Nowhere => &self.unrouted,
        };
        self.metrics.record_request(route, &method, status);
        if let Some(path) = logged_path {
            tracing::debug!(%method, %path, status, ?elapsed, "request");
        }
        response
    }

    async fn dispatch(
        &self,
        mut req: Request<Incoming>,
        client: SocketAddr,
        local: SocketAddr,
    ) -> (Response<Body>, Routed<'_>) {
        let path = req.uri().path();
        if let Some(rest) = path.strip_prefix(WELL_KNOWN_PREFIX) {
            return (self.well_known(rest), Routed::WellKnown);
        }
        let Some(found) = self.router.find(path) else {
            return (plain(StatusCode::NOT_FOUND, "Not Found\n"), Routed::Nowhere);
        };
        let target = found.target;
        if let Some(refusal) = self.check_body_size(&req) {
            return (refusal, Routed::Route(target));
        }
        let dynamic = spin_headers(&req, client, local, found.path_info);
        // `found` borrowed the path; from here on only `target` (owned by the router) is used.
        let headers = req.headers_mut();
        for (name, value) in dynamic.into_iter().chain(target.headers.iter().cloned()) {
            headers.insert(name, value);
        }
        let component = &self.components[target.slot];
        let Some(admission) = self.admit().await else {
            return (busy(), Routed::Route(target));
        };
        component.requests.inc();
        let deadline = self.limits.deadline;
        let response = match tokio::time::timeout(deadline, self.run(component, req, admission))
            .await
        {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                let failure = classify(&e);
                self.metrics.guest_error(&component.id, failure);
                tracing::error!(component = &*component.id, kind = ?failure, "request failed: {e:?}");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n")
            }
            Err(_) => {
                // Dropping the guest's future stopped it: it yields at every
                // epoch tick, so even a guest stuck in a loop ends here.
                self.metrics
                    .guest_error(&component.id, GuestFailure::Timeout);
                tracing::error!(
                    component = &*component.id,
                    "request stopped: no response within the {deadline:?} deadline (--request-timeout-secs)"
                );
                timed_out()
            }
        };
        (response, Routed::Route(target))
    }

    /// A slot in the instance pool, waiting at most `queue_wait` for one.
    async fn admit(&self) -> Option<Admission> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                match tokio::time::timeout(
                    self.limits.queue_wait,
                    self.permits.clone().acquire_owned(),
                )
                .await
                {
                    Ok(Ok(p)) => p,
                    _ => {
                        self.metrics.rejected("busy");
                        return None;
                    }
                }
            }
        };
        Some(Admission {
            _permit: permit,
            _gauge: self.metrics.instance(),
        })
    }

    /// 413 when the declared body is larger than allowed. Bodies without a
    /// length are cut off at the same size while the guest reads them.
    fn check_body_size(&self, req: &Request<Incoming>) -> Option<Response<Body>> {
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse::<u64>()
            .ok()?;
        (declared > self.limits.max_body).then(|| self.too_large(Some(declared)))
    }

    /// 413, counted; `declared` is the Content-Length when there was one.
    fn too_large(&self, declared: Option<u64>) -> Response<Body> {
        self.metrics.rejected("body_too_large");
        let size = declared.map_or("the request body is".to_owned(), |n| {
            format!("a request body of {n} bytes is")
        });
        plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{size} larger than the {} bytes allowed (--max-body-kib)\n",
                self.limits.max_body
            ),
        )
    }

    /// Instantiates `component` and lets it answer `req`.
    async fn run(
        &self,
        component: &Prepared,
        req: Request<Incoming>,
        admission: Admission,
    ) -> Result<Response<Body>> {
        let mut state = HostState::new(
            component.id.clone(),
            self.redis.clone(),
            component.allowed.clone(),
            component.variables.clone(),
            component.max_memory,
        );
        state.admission = Some(admission);
        let mut store = Store::new(component.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        // Yield to the async runtime at every epoch tick (see EPOCH_TICK).
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let max_body = self.limits.max_body;
        let overflowed = Arc::new(AtomicBool::new(false));
        let flag = overflowed.clone();
        let req = req.map(|body| {
            http_body_util::Limited::new(body, max_body as usize).map_err(move |e| {
                match e.downcast::<hyper::Error>() {
                    Ok(e) => wasmtime_wasi_http::Error::Hyper(*e),
                    // Limited's only other error: the body outgrew the limit.
                    Err(_) => {
                        flag.store(true, Ordering::Relaxed);
                        wasmtime_wasi_http::Error::HttpRequestBodySize(Some(max_body))
                    }
                }
            })
        });
        let request = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let outparam = store.data_mut().http().new_response_outparam(sender)?;
        let pre = component.pre.clone();
        let id = component.id.clone();
        let metrics = self.metrics.clone();
        // The guest runs on this connection's task. Only when it is still
        // running once the response head exists (it keeps streaming its body)
        // does the rest of it move to a task of its own: a spawn per request
        // costs cross-thread wake-ups that profiles showed.
        let mut guest = Box::pin(async move {
            let instantiating = Instant::now();
            let proxy = pre.instantiate_async(&mut store).await?;
            metrics.observe_instantiation(instantiating.elapsed());
            let result = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, outparam)
                .await;
            if let Err(e) = &result {
                tracing::error!(component = &*id, "guest failed: {e:?}");
            }
            result
        });
        let mut receiver = receiver;
        let answered = tokio::select! {
            biased;
            finished = &mut guest => match receiver.try_recv() {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(code)) => bail!("the guest answered with an error: {code:?}"),
                Err(_) => match finished {
                    Ok(()) => bail!("the guest returned without setting a response"),
                    Err(e) => Err(anyhow::Error::from(e).context("the guest failed before responding")),
                },
            },
            head = &mut receiver => {
                // The body still streams: bounded by the same deadline.
                let deadline = self.limits.deadline;
                tokio::spawn(async move {
                    if tokio::time::timeout(deadline, guest).await.is_err() {
                        tracing::error!("response body still streaming after {deadline:?}; stopped");
                    }
                });
                match head {
                    Ok(Ok(response)) => Ok(response),
                    Ok(Err(code)) => Err(anyhow::anyhow!("the guest answered with an error: {code:?}")),
                    Err(_) => Err(anyhow::anyhow!("the guest dropped its response")),
                }
            }
        };
        // A body cut off at the limit makes most guests fail. The client sent
        // too much, so it gets 413 rather than the guest's 5xx.
        let failed = answered
            .as_ref()
            .map_or(true, |r| r.status().is_server_error());
        if failed && overflowed.load(Ordering::Relaxed) {
            return Ok(self.too_large(None));
        }
        answered
    }

    /// `/.well-known/spin/health` and `/.well-known/spin/info`, answered by the
    /// runtime itself so probes never depend on the guest.
    fn well_known(&self, rest: &str) -> Response<Body> {
        match rest {
            "health" => plain(StatusCode::OK, "OK"),
            "info" => {
                let mut info = serde_json::Map::new();
                info.insert("name".into(), self.name.clone().into());
                if let Some(v) = &self.version {
                    info.insert("version".into(), v.clone().into());
                }
                if let Some(d) = &self.image_digest {
                    info.insert("oci_image_digest".into(), d.clone().into());
                }
                let body = serde_json::to_string_pretty(&info).unwrap_or_default();
                let mut response = plain(StatusCode::OK, body);
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            _ => plain(StatusCode::NOT_FOUND, "Not Found\n"),
        }
    }
}

/// Loads, compiles and links one component, with errors that name it.
fn prepare(
    app: &App,
    id: &str,
    vars: &Resolved,
    engine: &Engine,
    linker: &wasmtime::component::Linker<HostState>,
    settings: &Settings,
    metrics: &Metrics,
) -> Result<Prepared> {
    let spec = app
        .components
        .get(id)
        .with_context(|| format!("no component `{id}`"))?;
    let wasm = read_wasm(&spec.source, id)?;
    let compiled = engine::load_component(engine, &wasm, settings.cache_dir.as_deref())
        .with_context(|| format!("component `{id}`"))?;
    // wasmtime's link error names the first import it cannot satisfy.
    let pre = linker
        .instantiate_pre(&compiled)
        .map_err(anyhow::Error::from)
        .with_context(|| {
            format!(
                "component `{id}` imports an interface that ping-host does not provide \
                 (it provides WASI 0.2, wasi:http 0.2, fermyon:spin/redis@2.0.0 and fermyon:spin/variables@2.0.0)"
            )
        })?;
    let pre = ProxyPre::new(pre).map_err(anyhow::Error::from).with_context(|| {
        format!("component `{id}` does not export wasi:http/incoming-handler@0.2.x: is it an HTTP component?")
    })?;
    let expanded = spec
        .allowed_outbound_hosts
        .iter()
        .map(|h| vars.expand(h))
        .collect::<Result<Vec<_>, _>>()?;
    let allowed = AllowedHosts::parse(&expanded).with_context(|| format!("[component.{id}]"))?;
    let variables = ComponentVariables::for_component(app, id, vars)?;
    let id: Arc<str> = id.into();
    Ok(Prepared {
        requests: metrics.spin_request_counter(&app.name, &id),
        id,
        pre,
        variables: Arc::new(variables),
        allowed: Arc::new(allowed),
        max_memory: settings.engine.max_memory,
    })
}

fn read_wasm(source: &Source, id: &str) -> Result<std::sync::Arc<[u8]>> {
    let bytes = source
        .load()
        .with_context(|| format!("component `{id}`: cannot read {source}"))?;
    if !bytes.starts_with(b"\0asm") {
        bail!("component `{id}`: {source} is not a WebAssembly file");
    }
    Ok(bytes)
}

/// What a route leads to: a component, and the Spin headers that depend only
/// on the route, built once at start-up rather than per request.
struct Target {
    slot: usize,
    headers: [(HeaderName, HeaderValue); 4],
    /// The `route` label of this route's metrics.
    route: Arc<str>,
    latency: prometheus_client::metrics::histogram::Histogram,
}

/// Where a request went, for its metrics.
enum Routed<'a> {
    Route(&'a Target),
    WellKnown,
    Nowhere,
}

impl Target {
    fn new(slot: usize, route: &str, metrics: &Metrics) -> Result<Self> {
        let label: Arc<str> = route.into();
        let component_route = route.strip_suffix("/...").unwrap_or(route);
        let value = |v: &str| HeaderValue::from_str(v).with_context(|| format!("route `{route}`"));
        Ok(Target {
            slot,
            latency: metrics.route_histogram(&label),
            route: label,
            headers: [
                (HeaderName::from_static("spin-matched-route"), value(route)?),
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
                    HeaderValue::from_static("/"),
                ),
            ],
        })
    }
}

/// The Spin request headers that change per request, so components using the
/// SDK router see what they would under Spin.
fn spin_headers(
    req: &Request<Incoming>,
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

/// Advances `engine`'s epoch every [`EPOCH_TICK`] for as long as the engine lives.
fn tick_epochs(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the epoch ticker ({e}); guests cannot be interrupted");
    }
}

/// Which limit, if any, a guest failure comes from. (Running past the
/// deadline is not among them: the guest yields at each epoch tick rather than
/// trapping, and the deadline's timer stops it in `dispatch`.)
fn classify(e: &anyhow::Error) -> GuestFailure {
    if e.chain()
        .any(|c| c.downcast_ref::<MemoryLimitExceeded>().is_some())
    {
        GuestFailure::Memory
    } else if e
        .chain()
        .any(|c| c.downcast_ref::<wasmtime::Trap>().is_some())
    {
        GuestFailure::Trap
    } else {
        GuestFailure::NoResponse
    }
}

/// 503 with `Retry-After` when every instance is busy.
fn busy() -> Response<Body> {
    let mut response = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "every instance is busy; retry shortly\n",
    );
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn timed_out() -> Response<Body> {
    plain(
        StatusCode::GATEWAY_TIMEOUT,
        "the component did not answer within the request deadline\n",
    )
}

/// A short plain-text response from the runtime itself.
pub fn plain(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
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

    fn header<'a>(t: &'a Target, name: &str) -> &'a str {
        let (_, value) = t
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .expect("header present");
        value.to_str().expect("ascii")
    }

    #[test]
    fn route_headers_are_spins() {
        let metrics = Metrics::new(1);
        let wildcard = Target::new(0, "/api/...", &metrics).expect("valid route");
        assert_eq!(header(&wildcard, "spin-matched-route"), "/api/...");
        assert_eq!(header(&wildcard, "spin-raw-component-route"), "/api/...");
        assert_eq!(header(&wildcard, "spin-component-route"), "/api");
        assert_eq!(header(&wildcard, "spin-base-path"), "/");
        let exact = Target::new(1, "/ping", &metrics).expect("valid route");
        assert_eq!(header(&exact, "spin-component-route"), "/ping");
    }
}
