//! Serving HTTP the way Spin's HTTP trigger does: route first (unknown paths
//! never instantiate anything), answer the runtime's own `/.well-known/spin/`
//! paths, add Spin's `spin-*` request headers, then run the request on a fresh
//! instance of the routed component.
//!
//! Along Spin trigger-http's seams: `server` listens, accepts and drains;
//! `headers` builds Spin's request headers; `executor` makes the guest call;
//! `Refusal` is every answer the runtime gives itself; `admission` caps
//! concurrency. Serving one request, top to bottom, is `HttpServer::dispatch`.

mod admission;
mod executor;
mod headers;
mod instances;
mod limits;
pub mod metrics_endpoint;
mod p3;
mod refusal;
mod server;
pub mod threads;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;

use self::admission::{Admission, Slots};
use self::headers::Target;
pub use self::instances::InstanceReuse;
use self::instances::{Instance, Instances, Lease};
pub use self::limits::{DEFAULT_DRAIN, HttpArgs, RequestLimits};
use self::p3::P3Handler;
pub(crate) use self::refusal::{Refusal, text_response};
use crate::app::App;
use crate::engine::{ComponentPre, Engine, EngineOptions, World};
use crate::metrics::Metrics;
use crate::routing::{Router, WELL_KNOWN_PREFIX};
use crate::spin::redis::{SharedConnections, Timeouts};
use crate::variables::Resolved;

/// The response body type used throughout (wasmtime-wasi-http's).
pub type Body = wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// What the HTTP server needs beyond the app itself.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Engine sizing and the compilation cache.
    pub engine: EngineOptions,
    /// Redis connect and command timeouts.
    pub redis: Timeouts,
    /// Per-request bounds.
    pub limits: RequestLimits,
    /// Whether an instance serves more than one request (off by default).
    pub reuse: InstanceReuse,
    /// The OCI manifest digest the app was pulled as, shown by `/.well-known/spin/info`.
    pub image_digest: Option<String>,
}

/// A component as served: its prepared instance, its idle instances and its
/// request counter.
struct Served {
    component: ComponentPre,
    instances: Arc<Instances>,
    /// A WASIp3 component's instance workers; `None` for WASIp2 components,
    /// which get a fresh instance per request unless `--instance-reuse`.
    p3: Option<P3Handler>,
    /// This component's `spin_request_count_total` series.
    requests: Counter,
}

/// Everything needed to serve an app; built once at start-up.
pub struct HttpServer {
    name: String,
    version: Option<String>,
    image_digest: Option<String>,
    engine: Engine,
    router: Router<Target>,
    components: Vec<Served>,
    metrics: Arc<Metrics>,
    slots: Arc<Slots>,
    limits: RequestLimits,
    /// The `route` label of requests no route matched.
    unrouted: Arc<str>,
    /// The `route` label of the runtime's own `/.well-known/spin/` paths.
    well_known_route: Arc<str>,
    /// How WASIp2 instances are reused (`--instance-reuse`).
    reuse: InstanceReuse,
    /// Whether the idle-instance reaper runs (one for all serving threads).
    reaping: std::sync::atomic::AtomicBool,
}

/// Where a request went, for its metrics.
enum Routed<'a> {
    Route(&'a Target),
    WellKnown,
    Nowhere,
}

impl HttpServer {
    /// Compiles (or loads from cache) and links every routed component. All
    /// configuration problems surface here, before the first request.
    pub fn new(app: &App, vars: &Resolved, settings: &Settings) -> Result<Self> {
        let engine = Engine::new(&settings.engine)?;
        let metrics = Arc::new(Metrics::new(settings.engine.max_instances));
        let redis = Arc::new(SharedConnections::new(settings.redis, metrics.clone()));
        let slots = Arc::new(Slots::new(
            settings.engine.max_instances as usize,
            settings.limits.queue_wait,
        ));
        let mut components: Vec<Served> = Vec::new();
        let mut routes = Vec::new();
        for trigger in &app.http_triggers {
            let id = &trigger.component;
            let slot = match components.iter().position(|s| &**s.component.id() == id) {
                Some(slot) => slot,
                None => {
                    let mut component = engine.prepare(app, id, vars, &redis)?;
                    let p3 = match component.world().clone() {
                        World::P2(_) => None,
                        World::P3(pre) => Some(P3Handler::new(
                            &mut component,
                            pre,
                            settings.reuse,
                            settings.limits.deadline,
                            metrics.clone(),
                        )),
                    };
                    components.push(Served {
                        component,
                        instances: Arc::new(Instances::new(settings.reuse, slots.clone())),
                        p3,
                        requests: metrics.spin_request_counter(&app.name, &Arc::from(id.as_str())),
                    });
                    components.len() - 1
                }
            };
            routes.push((trigger.based_route(), Target::new(slot, trigger, &metrics)?));
        }
        let router = Router::new(routes)?;
        if !router.duplicates().is_empty() {
            // Spin 3.6 trigger-http: the last declaration wins, the others are logged.
            let lines: Vec<String> = router
                .duplicates()
                .iter()
                .map(|d| {
                    let shadowed = &app.http_triggers[d.shadowed].component;
                    let effective = &app.http_triggers[d.effective].component;
                    format!("  {shadowed}: {} (duplicate of {effective})", d.route)
                })
                .collect();
            tracing::error!(
                "The following component routes are duplicates and will never be used:\n{}",
                lines.join("\n")
            );
        }
        Ok(HttpServer {
            name: app.name.clone(),
            version: app.version.clone(),
            image_digest: settings.image_digest.clone(),
            engine,
            router,
            components,
            slots,
            metrics,
            limits: settings.limits,
            unrouted: Arc::from(""),
            well_known_route: Arc::from(WELL_KNOWN_PREFIX),
            reuse: settings.reuse,
            reaping: Default::default(),
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
            .map(|(r, t)| (r, &**self.components[t.slot].component.id()))
    }

    /// Serves on `listener` until `shutdown` resolves, then lets in-flight
    /// requests finish (up to `drain`).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        drain: Duration,
    ) -> Result<()> {
        let settings = server::Connections {
            name: "app",
            head_timeout: self.limits.head_timeout,
            // hyper refuses only heads its buffer cannot hold; `dispatch`
            // enforces the exact limit on the parsed head.
            max_head: Some(self.limits.max_head + 1),
            drain,
        };
        self.reap_idle_instances();
        server::serve(listener, settings, shutdown, move |req, client, local| {
            let server = self.clone();
            async move { server.handle(req, client, local).await }
        })
        .await?;
        Ok(())
    }

    /// With `--instance-reuse`, drops instances idle past the timeout, checking
    /// every timeout; stops when the server is dropped.
    fn reap_idle_instances(self: &Arc<Self>) {
        let reuse = self.reuse;
        if !reuse.enabled()
            || self
                .reaping
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let server = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(reuse.idle_timeout);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(server) = server.upgrade() else {
                    return;
                };
                for served in &server.components {
                    served.instances.reap();
                }
            }
        });
    }

    /// One request, with its metrics and access log.
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

    /// Client errors → route → body-size check → Spin headers → admission →
    /// the guest, under the request deadline. Every refusal is counted and
    /// answered here.
    async fn dispatch(
        &self,
        mut req: Request<Incoming>,
        client: SocketAddr,
        local: SocketAddr,
    ) -> (Response<Body>, Routed<'_>) {
        let size = limits::head_size(&req);
        let limit = self.limits.max_head;
        let refusal = (size > limit)
            .then_some(Refusal::HeadTooLarge { size, limit })
            .or_else(|| headers::client_error(&req).map(Refusal::BadRequest));
        if let Some(refusal) = refusal {
            refusal.record(&self.metrics, None);
            return (refusal.into_response(), Routed::Nowhere);
        }
        let path = req.uri().path();
        if let Some(rest) = path.strip_prefix(WELL_KNOWN_PREFIX) {
            return (self.well_known(rest), Routed::WellKnown);
        }
        let Some(found) = self.router.find(path) else {
            return (Refusal::NotFound.into_response(), Routed::Nowhere);
        };
        let target = found.target;
        let served = &self.components[target.slot];
        let answer = match self.check_body_size(&req) {
            Err(refusal) => Err(refusal),
            Ok(()) => {
                let mut dynamic = headers::spin_headers(&req, client, local, found.path_info);
                dynamic.extend(headers::path_matches(target, &found.captures));
                headers::insert(&mut req, dynamic, target);
                self.run(served, req).await
            }
        };
        let response = answer.unwrap_or_else(|refusal| {
            refusal.record(&self.metrics, Some(served.component.id()));
            refusal.into_response()
        });
        (response, Routed::Route(target))
    }

    /// Admits the request and runs it within the deadline: on an instance
    /// (fresh unless `--instance-reuse`) for WASIp2, on a reused one for WASIp3.
    async fn run(
        &self,
        served: &Served,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Refusal> {
        let (limits, metrics) = (&self.limits, &self.metrics);
        match &served.p3 {
            Some(handler) => {
                let admission = self.admit().await?;
                served.requests.inc();
                within(limits, p3::execute(handler, req, admission, limits)).await
            }
            None => {
                let lease = self.lease(served).await?;
                served.requests.inc();
                let (component, instances) = (&served.component, &served.instances);
                let run = executor::execute(component, instances, req, lease, limits, metrics);
                within(limits, run).await
            }
        }
    }

    /// A WASIp2 instance of `served` and its pool slot: an idle instance
    /// (`--instance-reuse`) brings the slot it kept, a fresh one is created
    /// once admitted. With reuse on, a request that finds the pool full also
    /// takes an instance of its component handed over as it finishes.
    async fn lease(&self, served: &Served) -> Result<Lease, Refusal> {
        let instances = &served.instances;
        if let Some(lease) = instances.take_idle(&self.metrics) {
            return Ok(lease);
        }
        let fresh = |admission| Lease {
            instance: Instance::fresh(&self.engine, &served.component),
            admission,
        };
        if let Some(admission) = self.slots.try_admit(&self.metrics) {
            return Ok(fresh(admission));
        }
        if !self.reuse.enabled() {
            return Ok(fresh(self.admit().await?));
        }
        let (mut handed, _waiting) = match instances.take_idle_or_wait(&self.metrics) {
            Ok(lease) => return Ok(lease),
            Err(waiting) => waiting,
        };
        tokio::select! {
            biased;
            Ok(lease) = &mut handed => Ok(lease),
            admission = self.admit() => {
                // Closed first, so no instance is handed over from here on;
                // one handed over as the slot came (or the wait ran out) is
                // taken, and the slot goes back.
                handed.close();
                match handed.try_recv() {
                    Ok(lease) => Ok(lease),
                    Err(_) => Ok(fresh(admission?)),
                }
            },
        }
    }

    /// A slot in the instance pool, or `Busy` after the queue wait. When every
    /// slot is taken, idle instances (`--instance-reuse`, any component) are
    /// dropped one at a time, the one idle longest first, to free one.
    async fn admit(&self) -> Result<Admission, Refusal> {
        // Again when another request took the chosen one first.
        let make_room = || loop {
            let oldest = self.components.iter().filter_map(|s| {
                let since = s.instances.oldest_idle_since()?;
                Some((since, &s.instances))
            });
            match oldest.min_by_key(|(since, _)| *since) {
                None => return false,
                Some((_, instances)) if instances.drop_oldest_idle() => return true,
                Some(_) => {}
            }
        };
        let admitted = self.slots.admit(&self.metrics, make_room).await;
        admitted.ok_or(Refusal::Busy)
    }

    /// 413 when the declared body is larger than allowed. Bodies without a
    /// length are cut off at the same size while the guest reads them.
    fn check_body_size(&self, req: &Request<Incoming>) -> Result<(), Refusal> {
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        match declared {
            Some(n) if n > self.limits.max_body => Err(Refusal::BodyTooLarge {
                declared: Some(n),
                limit: self.limits.max_body,
            }),
            _ => Ok(()),
        }
    }

    /// `/.well-known/spin/health` and `/.well-known/spin/info`, answered by the
    /// runtime itself so probes never depend on the guest.
    fn well_known(&self, rest: &str) -> Response<Body> {
        match rest {
            // Spin 3.6 trigger-http: `OK`, without a content type.
            "health" => {
                let mut response = text_response(StatusCode::OK, "OK");
                response.headers_mut().remove(http::header::CONTENT_TYPE);
                response
            }
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
                let mut response = text_response(StatusCode::OK, body);
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            _ => Refusal::NotFound.into_response(),
        }
    }
}

/// `run` under the request deadline (504 past it). Dropping the guest's
/// future on timeout stops it: it yields at every epoch tick, so even a guest
/// stuck in a loop ends here.
async fn within(
    limits: &RequestLimits,
    run: impl Future<Output = Result<Response<Body>, Refusal>>,
) -> Result<Response<Body>, Refusal> {
    tokio::time::timeout(limits.deadline, run)
        .await
        .unwrap_or(Err(Refusal::DeadlineExceeded(limits.deadline)))
}
