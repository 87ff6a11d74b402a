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
//! Capacity: every WASIp2 instance holds one of the pool's slots (a permit
//! of `admission::Slots`): while a request uses it, while it is being dropped
//! (`executor::retire_later`), and while it sits idle here, because an idle
//! instance keeps its place in the pooling allocator. So instances never
//! outnumber `--max-instances`, across components, and a request admitted
//! always finds room to instantiate. An idle instance gives its slot up as
//! soon as another request needs it (`drop_oldest_idle`), and a finished
//! instance is retired rather than kept idle while a request waits (see
//! `admission`). So with a pool too small for the load, reuse stops while
//! requests queue: the waiter gets a fresh instance, not the finished one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use super::admission::{Admission, Slots};
use super::threads;
use crate::engine::{ComponentPre, Engine, HostState};
use crate::metrics::Metrics;

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

impl Instance {
    /// A fresh store for `component`, to instantiate (take one only once
    /// admitted: its memory comes from the pool).
    pub fn fresh(engine: &Engine, component: &ComponentPre) -> Self {
        Instance {
            store: engine.new_store(component),
            proxy: None,
            served: 0,
            idle_since: Instant::now(),
            home: threads::current(),
        }
    }
}

/// An instance and its pool slot, for one request. Fields drop in
/// declaration order, so on every path (answered, failed, past the deadline,
/// the client gone) the instance is gone before its slot is freed and a
/// request admitted next always finds room in the pool.
pub(super) struct Lease {
    pub instance: Instance,
    pub admission: Admission,
}

/// An idle instance and the pool slot it keeps (dropped after it, as in
/// [`Lease`]).
struct Idle {
    instance: Instance,
    slot: OwnedSemaphorePermit,
}

/// One component's idle instances, most recently used last (so the one idle
/// longest comes first).
pub(super) struct Instances {
    reuse: InstanceReuse,
    slots: Arc<Slots>,
    idle: Mutex<Vec<Idle>>,
}

impl Instances {
    /// No idle instances yet; `slots` is the pool they take their slots from.
    pub fn new(reuse: InstanceReuse, slots: Arc<Slots>) -> Self {
        Instances {
            reuse,
            slots,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The most recently used idle instance this serving thread left (else
    /// another thread's) that has not timed out, with its pool slot; `None`
    /// when there is none (then the caller is admitted and takes
    /// [`Instance::fresh`]). Without reuse this never takes the lock.
    pub fn take_idle(&self, metrics: &Arc<Metrics>) -> Option<Lease> {
        if !self.reuse.enabled() {
            return None;
        }
        let home = threads::current();
        let mut idle = self.lock();
        // Oldest first: when the first has not timed out, none has.
        let timeout = self.reuse.idle_timeout;
        let mut expired = Vec::new();
        if idle
            .first()
            .is_some_and(|i| i.instance.idle_since.elapsed() >= timeout)
        {
            expired = idle
                .extract_if(.., |i| i.instance.idle_since.elapsed() >= timeout)
                .collect();
        }
        let mine = idle.iter().rposition(|i| i.instance.home == home);
        let taken = mine.or(idle.len().checked_sub(1)).map(|at| idle.remove(at));
        drop(idle);
        drop(expired);
        let Idle { instance, slot } = taken?;
        Some(Lease {
            instance,
            admission: Slots::resume(slot, metrics),
        })
    }

    /// Called after a request's guest call succeeded: keeps the instance,
    /// with its slot, for the next request unless it has served its N or a
    /// request is waiting for a slot; a retired one is given back for the
    /// caller to drop.
    pub fn checkin(&self, lease: Lease) -> Option<Lease> {
        let Lease {
            mut instance,
            admission,
        } = lease;
        instance.served += 1;
        if instance.served >= self.reuse.max_requests || instance.proxy.is_none() {
            return Some(Lease {
                instance,
                admission,
            });
        }
        let mut idle = self.lock();
        if self.slots.anyone_waiting() {
            return Some(Lease {
                instance,
                admission,
            });
        }
        instance.idle_since = Instant::now();
        instance.home = threads::current();
        idle.push(Idle {
            instance,
            slot: admission.into_slot(),
        });
        None
    }

    /// Since when this component's longest-idle instance has been idle;
    /// `None` when none is (always, without reuse).
    pub fn oldest_idle_since(&self) -> Option<Instant> {
        if !self.reuse.enabled() {
            return None;
        }
        self.lock().first().map(|i| i.instance.idle_since)
    }

    /// Drops the instance idle longest, freeing its slot for a request that
    /// found the pool full; `false` when none is idle.
    pub fn drop_oldest_idle(&self) -> bool {
        if !self.reuse.enabled() {
            return false;
        }
        let mut idle = self.lock();
        let oldest = (!idle.is_empty()).then(|| idle.remove(0));
        drop(idle);
        oldest.is_some()
    }

    /// Drops the instances idle for longer than the timeout; returns how many
    /// are left.
    pub fn reap(&self) -> usize {
        let timeout = self.reuse.idle_timeout;
        let mut idle = self.lock();
        let expired: Vec<Idle> = idle
            .extract_if(.., |i| i.instance.idle_since.elapsed() >= timeout)
            .collect();
        let left = idle.len();
        drop(idle);
        drop(expired);
        left
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}
