//! Instance reuse, opt-in (`ping-host up --instance-reuse N`): one instance of
//! a component serves up to N requests in turn instead of one, like
//! `wasmtime serve --max-instance-reuse-count N` (wasmtime-cli 48).
//!
//! **Off by default** (N = 1): Spin 3 and containerd-shim-spin give every
//! request a fresh instance, and a component may keep global state (a cache, a
//! counter, a half-finished buffer) that the next request would then see. Turn
//! it on only for components written for it.
//!
//! Why: a fresh instance per request costs creating, calling and tearing down
//! an isolated instance (~50–60 µs of CPU in profiles); a reused instance costs
//! only the call. An instance is *retired* (dropped, never reused) when its
//! call fails in any way — trap, memory limit, deadline (its future is dropped
//! with the store inside) — when it has served N requests, or when it has sat
//! idle past `--idle-instance-timeout`.
//!
//! Idle instances stay on the connection's task (no worker task per instance,
//! unlike wasmtime-wasi-http's `handler::ProxyHandler`, which also needs the
//! engine-wide `component-model-async` feature): a request takes the most
//! recently used idle instance its own serving thread left, so its memory is
//! still in that core's cache and the Redis connections it holds are driven
//! by that thread's runtime; only when its thread has none idle does it take
//! another thread's.
//!
//! Capacity: an instance is idle here, held by an admitted request, or being
//! dropped with its request's slot (`executor::retire_later`), and a fresh
//! one is created only when none is idle, so one component's instances never
//! outnumber `--max-instances` (the pool's size). With reuse on and several
//! components, idle instances hold no admission slot, so one component's idle
//! instances can fill pool slots another component's request then lacks.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use super::threads;
use crate::engine::{ComponentPre, Engine, HostState};

/// How instances are reused (`--instance-reuse`, `--idle-instance-timeout`,
/// and for WASIp3 components `--max-instance-reuse-count` and
/// `--max-instance-concurrent-reuse-count`, Spin 4.1's flags).
#[derive(Debug, Clone, Copy)]
pub struct InstanceReuse {
    /// Requests one WASIp2 instance serves before it is retired; 1 = a fresh
    /// instance per request (Spin 3's behaviour, the default).
    pub max_requests: u32,
    /// How long an idle instance (either generation) is kept for the next request.
    pub idle_timeout: Duration,
    /// Requests one WASIp3 instance serves before it is dropped (at least 1;
    /// Spin 4.1's default is 128).
    pub p3_max_requests: u32,
    /// Requests one WASIp3 instance serves at once (at least 1; Spin 4.1's
    /// default is 16).
    pub p3_max_concurrent: u32,
}

impl InstanceReuse {
    /// WASIp2: a fresh instance per request; WASIp3: Spin 4.1's
    /// `DEFAULT_WASIP3_MAX_INSTANCE_REUSE_COUNT` (128) and
    /// `DEFAULT_WASIP3_MAX_INSTANCE_CONCURRENT_REUSE_COUNT` (16); 1 s idle
    /// timeout (Spin 4.1's and `wasmtime serve`'s default).
    pub const DEFAULT: InstanceReuse = InstanceReuse {
        max_requests: 1,
        idle_timeout: Duration::from_secs(1),
        p3_max_requests: 128,
        p3_max_concurrent: 16,
    };

    /// Whether any instance is ever reused.
    pub fn enabled(&self) -> bool {
        self.max_requests > 1
    }
}

impl Default for InstanceReuse {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A store for one request: either fresh (not yet instantiated) or an idle
/// instance taken for reuse.
pub(super) struct Instance {
    /// The store, with its limiter and epoch deadline (see `Engine::new_store`).
    pub store: Store<HostState>,
    /// The instantiated component, once it is.
    pub proxy: Option<Proxy>,
    /// Requests served so far, the current one excluded.
    served: u32,
    /// When it last went idle.
    idle_since: Instant,
    /// The serving thread that last used it (`threads::current`).
    home: usize,
}

/// One component's idle instances, most recently used last (so the one idle
/// longest comes first).
pub(super) struct Instances {
    reuse: InstanceReuse,
    idle: Mutex<Vec<Instance>>,
}

impl Instances {
    /// No idle instances yet.
    pub fn new(reuse: InstanceReuse) -> Self {
        Instances {
            reuse,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The most recently used idle instance this serving thread left (else
    /// another thread's) that has not timed out, else a fresh store. Without
    /// reuse this never takes the lock.
    pub fn checkout(&self, engine: &Engine, component: &ComponentPre) -> Instance {
        let home = threads::current();
        if self.reuse.enabled() {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            // Oldest first: when the first has not timed out, none has.
            let timeout = self.reuse.idle_timeout;
            if idle
                .first()
                .is_some_and(|i| i.idle_since.elapsed() >= timeout)
            {
                idle.retain(|i| i.idle_since.elapsed() < timeout);
            }
            let mine = idle.iter().rposition(|i| i.home == home);
            if let Some(at) = mine.or(idle.len().checked_sub(1)) {
                return idle.remove(at);
            }
        }
        Instance {
            store: engine.new_store(component),
            proxy: None,
            served: 0,
            idle_since: Instant::now(),
            home,
        }
    }

    /// Called after a request's guest call succeeded: keeps the instance for
    /// the next request unless it has served its N; a retired instance is
    /// given back for the caller to drop.
    pub fn checkin(&self, mut instance: Instance) -> Option<Instance> {
        instance.served += 1;
        if instance.served >= self.reuse.max_requests || instance.proxy.is_none() {
            return Some(instance);
        }
        instance.idle_since = Instant::now();
        instance.home = threads::current();
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(instance);
        None
    }

    /// Drops the instances idle for longer than the timeout; returns how many
    /// are left.
    pub fn reap(&self) -> usize {
        let timeout = self.reuse.idle_timeout;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|i| i.idle_since.elapsed() < timeout);
        idle.len()
    }
}
