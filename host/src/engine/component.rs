//! Loading a component: read its Wasm, compile it (or take it from the
//! compilation cache), link it against the host's interfaces and find which
//! HTTP world it exports — `wasi:http/handler@0.3.0` (WASIp3) first, as
//! `wasmtime serve` and Spin 4.1 check, else `wasi:http/incoming-handler@0.2.x`
//! (WASIp2) — with errors that name the component.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use wasmtime::component::Component;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use super::{Engine, Generation, HostState, Stores};
use crate::allowed_hosts::AllowedHosts;
use crate::app::{App, Source};
use crate::spin::outbound_http::OutboundHttp;
use crate::spin::redis::{MAX_CONNECTIONS_PER_INSTANCE, RedisCtx, SharedConnections};
use crate::variables::{ComponentVariables, Resolved};

/// What every instance of one component gets from the host.
#[derive(Clone)]
pub struct ComponentEnv {
    /// The component's variables, resolved and expanded.
    pub variables: Arc<ComponentVariables>,
    /// The component's `allowed_outbound_hosts`, expanded and parsed.
    pub allowed: Arc<AllowedHosts>,
    /// The process-wide Redis connections.
    pub redis: Arc<SharedConnections>,
    /// The component's `environment`: the WASI environment variables every
    /// instance sees (`std::env::var` in the guest), as Spin sets them.
    pub environment: Arc<[(String, String)]>,
}

/// Which HTTP world a component exports, and so how it is served.
#[derive(Clone)]
pub enum World {
    /// `wasi:http/incoming-handler@0.2.x` (spin-sdk <= 5): a fresh instance
    /// per request.
    P2(ProxyPre<HostState>),
    /// `wasi:http/handler@0.3.0` (spin-sdk 7): instances reused for many
    /// requests, several at once.
    P3(ServicePre<HostState>),
}

/// One component, compiled, linked and ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct ComponentPre {
    id: Arc<str>,
    world: World,
    env: ComponentEnv,
    /// Makes its stores, on its generation's engine.
    stores: Stores,
    /// Redis connections one instance may hold open at once.
    max_redis_connections: usize,
}

impl ComponentPre {
    /// The component's id (`[component.<id>]`).
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// The HTTP world it exports, with the pre-linked instance.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The pre-linked WASIp2 instance, for `instantiate_async`.
    ///
    /// # Panics
    ///
    /// When the component is a WASIp3 one (check [`Self::world`] first).
    pub fn pre(&self) -> &ProxyPre<HostState> {
        match &self.world {
            World::P2(pre) => pre,
            World::P3(_) => panic!("component `{}` is a WASIp3 component", self.id),
        }
    }

    /// What makes this component's stores (on its generation's engine).
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// Lets each instance serve `n` requests at once (WASIp3): its Redis
    /// connection cap, per request, becomes `n` times as large.
    pub fn serve_concurrently(&mut self, n: usize) {
        self.max_redis_connections = MAX_CONNECTIONS_PER_INSTANCE.saturating_mul(n.max(1));
    }

    /// Fresh store data for one instance.
    pub(super) fn instance_state(&self, max_memory: usize) -> HostState {
        let env = &self.env;
        HostState::new(
            RedisCtx::new(
                env.redis.clone(),
                env.allowed.clone(),
                self.id.clone(),
                self.max_redis_connections,
            ),
            env.variables.clone(),
            OutboundHttp::new(env.allowed.clone(), self.id.clone()),
            &env.environment,
            max_memory,
        )
    }
}

/// Whether an allow-list entry's host is an IPv6 address written without
/// brackets (`redis://::1:6379`, what `redis://{{ redis_host }}:{{ redis_port }}`
/// renders for `redis_host = "::1"`).
fn unbracketed_ipv6(entry: &str) -> bool {
    let Some((_, rest)) = entry.split_once("://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    !authority.starts_with('[') && authority.matches(':').count() >= 2
}

/// `allowed_outbound_hosts` templates name variables (`{{ redis_port }}`), so a
/// bad entry is usually a bad variable value: this names them, and where each
/// is set, for the start-up error. Empty when the entries name no variable.
fn named_variables(templates: &[String]) -> String {
    let mut names: Vec<&str> = Vec::new();
    let parsed: Vec<_> = templates
        .iter()
        .filter_map(|t| crate::variables::Template::parse(t).ok())
        .collect();
    for name in parsed.iter().flat_map(|t| t.references()) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return String::new();
    }
    let each: Vec<String> = names
        .iter()
        .map(|n| format!("`{n}` ({})", crate::variables::env_name(n)))
        .collect();
    format!(
        " allowed_outbound_hosts is built from the variables {}: check their values \
         (set with --variable NAME=VALUE or the environment variable shown)",
        each.join(", ")
    )
}

impl Engine {
    /// Loads component `id` of `app` with its variables and allow-list
    /// resolved from `vars`. Every configuration problem surfaces here.
    pub fn prepare(
        &self,
        app: &App,
        id: &str,
        vars: &Resolved,
        redis: &Arc<SharedConnections>,
    ) -> Result<ComponentPre> {
        let spec = app
            .components
            .get(id)
            .with_context(|| format!("no component `{id}`"))?;
        let expanded = spec
            .allowed_outbound_hosts
            .iter()
            .map(|h| vars.expand(h))
            .collect::<Result<Vec<_>, _>>()?;
        for entry in expanded.iter().filter(|e| unbracketed_ipv6(e)) {
            tracing::warn!(
                component = id,
                entry = %entry,
                "allowed_outbound_hosts entry with an unbracketed IPv6 address: ping-host \
                 allows it, but Spin 3.6 accepts it and never matches it (it compares the \
                 host in brackets), so the same app is refused there; write the address in \
                 brackets (for example redis_host = \"[::1]\")"
            );
        }
        let allowed = AllowedHosts::parse(&expanded).with_context(|| {
            format!(
                "[component.{id}]{}",
                named_variables(&spec.allowed_outbound_hosts)
            )
        })?;
        let env = ComponentEnv {
            variables: Arc::new(ComponentVariables::for_component(app, id, vars)?),
            allowed: Arc::new(allowed),
            redis: redis.clone(),
            environment: spec
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        self.link(id, &spec.source, env)
    }

    /// Compiles (or loads from the cache) and links the component at `source`.
    pub fn link(&self, id: &str, source: &Source, env: ComponentEnv) -> Result<ComponentPre> {
        let wasm = source
            .load()
            .with_context(|| format!("component `{id}`: cannot read {source}"))?;
        if !wasm.starts_with(b"\0asm") {
            bail!("component `{id}`: {source} is not a WebAssembly file");
        }
        let generation = generation(&wasm);
        let flavor = self.flavor(generation)?;
        let compiled = self.compile(&flavor.stores.engine, id, &wasm)?;
        // wasmtime's link error names the first import it cannot satisfy.
        let pre = flavor
            .linker
            .instantiate_pre(&compiled)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "component `{id}` imports an interface that ping-host does not provide \
                     (it provides WASI 0.2 and 0.3, wasi:http 0.2 and 0.3, fermyon:spin/redis@2.0.0, \
                     fermyon:spin/variables@2.0.0, spin:redis/redis@3.0.0 and spin:variables/variables@3.0.0)"
                )
            })?;
        let world = match generation {
            Generation::P3 => World::P3(
                ServicePre::new(pre)
                    .map_err(anyhow::Error::from)
                    .with_context(|| {
                        format!("component `{id}`: its wasi:http/handler@0.3.0 export is unusable")
                    })?,
            ),
            Generation::P2 => World::P2(
                ProxyPre::new(pre)
                    .map_err(anyhow::Error::from)
                    .with_context(|| {
                        format!(
                            "component `{id}` exports neither wasi:http/handler@0.3.0 nor \
                     wasi:http/incoming-handler@0.2.x: is it an HTTP component?"
                        )
                    })?,
            ),
        };
        Ok(ComponentPre {
            id: id.into(),
            world,
            env,
            stores: flavor.stores.clone(),
            max_redis_connections: MAX_CONNECTIONS_PER_INSTANCE,
        })
    }

    /// The engine that compiles and runs the component whose Wasm is `wasm`.
    pub(super) fn engine_for(&self, wasm: &[u8]) -> Result<&wasmtime::Engine> {
        Ok(&self.flavor(generation(wasm))?.stores.engine)
    }

    /// The compiled component; wasmtime's cache (when configured) makes a
    /// second start with the same Wasm and engine settings skip Cranelift.
    fn compile(&self, engine: &wasmtime::Engine, id: &str, wasm: &[u8]) -> Result<Component> {
        if let Some(dir) = &self.precompiled {
            return self.load_precompiled(engine, dir, id, wasm);
        }
        Component::new(engine, wasm)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("component `{id}`: cannot compile it"))
    }
}

/// Which generation of HTTP component `wasm` is, from the names the
/// component itself (not a nested one) exports: `wasi:http/handler@0.3.x`
/// makes it WASIp3, as `wasmtime serve` and Spin 4.1 decide; anything else is
/// tried as WASIp2, and linking says what is wrong with it.
fn generation(wasm: &[u8]) -> Generation {
    use wasmparser::{Parser, Payload};
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(Payload::ModuleSection { .. } | Payload::ComponentSection { .. }) => depth += 1,
            Ok(Payload::End(_)) if depth > 0 => depth -= 1,
            Ok(Payload::End(_)) | Err(_) => break,
            Ok(Payload::ComponentExportSection(exports)) if depth == 0 => {
                let p3 = exports
                    .into_iter()
                    .flatten()
                    .any(|e| e.name.name.starts_with("wasi:http/handler@0.3."));
                if p3 {
                    return Generation::P3;
                }
            }
            Ok(_) => {}
        }
    }
    Generation::P2
}
