//! Serving HTTP the way Spin's HTTP trigger does: route first (unknown paths
//! never instantiate anything), answer the runtime's own `/.well-known/spin/`
//! paths, add Spin's `spin-*` request headers, then run the request on a fresh
//! instance of the routed component.

use std::net::SocketAddr;
use std::sync::Arc;
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
use crate::outbound::AllowedHosts;
use crate::redis::{RedisPool, Timeouts};
use crate::routing::{Router, WELL_KNOWN_PREFIX};
use crate::state::HostState;
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
}

/// One component, ready to instantiate per request.
struct Prepared {
    id: Arc<str>,
    pre: ProxyPre<HostState>,
    variables: Arc<ComponentVariables>,
    allowed: Arc<AllowedHosts>,
    max_memory: usize,
}

/// Everything needed to serve an app; built once at start-up.
pub struct Runtime {
    name: String,
    version: Option<String>,
    image_digest: Option<String>,
    router: Router<Target>,
    components: Vec<Prepared>,
    redis: Arc<RedisPool>,
}

impl Runtime {
    /// Compiles (or loads from cache) and links every routed component. All
    /// configuration problems surface here, before the first request.
    pub fn new(app: &App, vars: &Resolved, settings: &Settings) -> Result<Self> {
        let engine = engine::engine(&settings.engine)?;
        let linker = engine::linker(&engine)?;
        let mut components = Vec::new();
        let mut index = std::collections::HashMap::new();
        let mut routes = Vec::new();
        for trigger in &app.http_triggers {
            let slot = match index.get(&trigger.component) {
                Some(i) => *i,
                None => {
                    let prepared =
                        prepare(app, &trigger.component, vars, &engine, &linker, settings)?;
                    components.push(prepared);
                    index.insert(trigger.component.clone(), components.len() - 1);
                    components.len() - 1
                }
            };
            routes.push((trigger.route.clone(), Target::new(slot, &trigger.route)?));
        }
        Ok(Runtime {
            name: app.name.clone(),
            version: app.version.clone(),
            image_digest: settings.image_digest.clone(),
            router: Router::new(routes)?,
            components,
            redis: Arc::new(RedisPool::new(settings.redis)),
        })
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
                .header_read_timeout(Duration::from_secs(10))
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
        // Copy what the access log needs only when it is on: this runs per request.
        let logged = tracing::enabled!(tracing::Level::DEBUG).then(|| {
            (
                Instant::now(),
                req.method().clone(),
                req.uri().path().to_owned(),
            )
        });
        let response = self.dispatch(req, client, local).await;
        if let Some((started, method, path)) = logged {
            tracing::debug!(%method, %path, status = response.status().as_u16(), elapsed = ?started.elapsed(), "request");
        }
        response
    }

    async fn dispatch(
        &self,
        mut req: Request<Incoming>,
        client: SocketAddr,
        local: SocketAddr,
    ) -> Response<Body> {
        let path = req.uri().path();
        if let Some(rest) = path.strip_prefix(WELL_KNOWN_PREFIX) {
            return self.well_known(rest);
        }
        let Some(found) = self.router.find(path) else {
            return plain(StatusCode::NOT_FOUND, "Not Found\n");
        };
        let target = found.target;
        let dynamic = spin_headers(&req, client, local, found.path_info);
        // `found` borrowed the path; from here on only `target` (owned by the router) is used.
        let headers = req.headers_mut();
        for (name, value) in dynamic.into_iter().chain(target.headers.iter().cloned()) {
            headers.insert(name, value);
        }
        let component = &self.components[target.slot];
        match self.run(component, req).await {
            Ok(response) => response,
            Err(e) => {
                tracing::error!(component = &*component.id, "request failed: {e:?}");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n")
            }
        }
    }

    /// Instantiates `component` and lets it answer `req`.
    async fn run(&self, component: &Prepared, req: Request<Incoming>) -> Result<Response<Body>> {
        let state = HostState::new(
            component.id.clone(),
            self.redis.clone(),
            component.allowed.clone(),
            component.variables.clone(),
            component.max_memory,
        );
        let mut store = Store::new(component.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let request = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let outparam = store.data_mut().http().new_response_outparam(sender)?;
        let pre = component.pre.clone();
        let id = component.id.clone();
        // The guest runs on this connection's task. Only when it is still
        // running once the response head exists (it keeps streaming its body)
        // does the rest of it move to a task of its own: a spawn per request
        // costs cross-thread wake-ups that profiles showed.
        let mut guest = Box::pin(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
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
        tokio::select! {
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
                tokio::spawn(guest);
                match head {
                    Ok(Ok(response)) => Ok(response),
                    Ok(Err(code)) => bail!("the guest answered with an error: {code:?}"),
                    Err(_) => bail!("the guest dropped its response"),
                }
            }
        }
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
    Ok(Prepared {
        id: id.into(),
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
}

impl Target {
    fn new(slot: usize, route: &str) -> Result<Self> {
        let component_route = route.strip_suffix("/...").unwrap_or(route);
        let value = |v: &str| HeaderValue::from_str(v).with_context(|| format!("route `{route}`"));
        Ok(Target {
            slot,
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
        let wildcard = Target::new(0, "/api/...").expect("valid route");
        assert_eq!(header(&wildcard, "spin-matched-route"), "/api/...");
        assert_eq!(header(&wildcard, "spin-raw-component-route"), "/api/...");
        assert_eq!(header(&wildcard, "spin-component-route"), "/api");
        assert_eq!(header(&wildcard, "spin-base-path"), "/");
        let exact = Target::new(1, "/ping").expect("valid route");
        assert_eq!(header(&exact, "spin-component-route"), "/ping");
    }
}
