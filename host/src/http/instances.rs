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
//! Idle instances wait in a list per component (no worker task per instance,
//! unlike wasmtime-wasi-http's `handler::ProxyHandler`, which also needs the
//! engine-wide `component-model-async` feature), and run on the task of the
//! request that takes them: a request takes the most recently used idle
//! instance its own serving thread left, so its memory is still in that
//! core's cache and the Redis connections it holds are driven by that
//! thread's runtime; only when its thread has none idle does it take another
//! thread's. (An instance handed to a waiting request goes to whichever
//! thread that request is on.)
//!
//! Capacity: every WASIp2 instance holds one of the pool's slots (a permit
//! of `admission::Slots`): while a request uses it, while it is being dropped
//! (`executor::retire_later`), and while it sits idle here, because an idle
//! instance keeps its place in the pooling allocator. So instances never
//! outnumber `--max-instances`, across components, and a request admitted
//! always finds room to instantiate. An idle instance gives its slot up as
//! soon as another request needs it (`drop_oldest_idle`). When the pool is
//! full, a finished instance goes straight to the request of its component
//! that has waited longest (`checkin`), so reuse goes on at capacity; only
//! while a request of another component waits is it retired instead, to free
//! its slot for whoever has waited longest. Measured at a pool of 8 under
//! `oha -c 64` with `--instance-reuse 128` (`/ping`, two rounds): 16.1k and
//! 17.6k req/s at 59–65 µs of CPU per request, and 374 instantiations for
//! 47,021 requests in a 3-s run; retiring every finished instance while
//! requests waited gave 13.7–14.3k req/s at 78–82 µs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, oneshot};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use super::admission::{Admission, Slots, Waiting};
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

impl Idle {
    /// Back in use, by a request.
    fn lease(self, metrics: &Arc<Metrics>) -> Lease {
        Lease {
            instance: self.instance,
            admission: Admission::new(self.slot, metrics),
        }
    }
}

/// One component's idle instances and the requests of it waiting for one.
pub(super) struct Instances {
    reuse: InstanceReuse,
    slots: Arc<Slots>,
    pool: Mutex<Pool>,
    /// Requests of this component waiting for a slot: raised under the lock
    /// as one joins `Pool::waiters`, before it counts in `Slots::waiting`,
    /// and lowered after it no longer does.
    waiting: AtomicUsize,
}

/// What [`Instances`] keeps under its lock.
#[derive(Default)]
struct Pool {
    /// Most recently used last (so the one idle longest comes first).
    idle: Vec<Idle>,
    /// Requests that found the pool full, longest waiting first; a closed
    /// sender is one that got a slot meanwhile (or gave up).
    waiters: VecDeque<oneshot::Sender<Lease>>,
}

impl Pool {
    /// Takes the most recently used idle instance `home` left (else another
    /// thread's) among those idle for less than `timeout`; the others are
    /// given back for the caller to drop outside the lock.
    fn take(&mut self, home: usize, timeout: Duration) -> (Option<Idle>, Vec<Idle>) {
        let mut expired = Vec::new();
        // Oldest first: when the first has not timed out, none has.
        if self
            .idle
            .first()
            .is_some_and(|i| i.instance.idle_since.elapsed() >= timeout)
        {
            expired = self
                .idle
                .extract_if(.., |i| i.instance.idle_since.elapsed() >= timeout)
                .collect();
        }
        let mine = self.idle.iter().rposition(|i| i.instance.home == home);
        let at = mine.or(self.idle.len().checked_sub(1));
        (at.map(|at| self.idle.remove(at)), expired)
    }
}

impl Instances {
    /// No idle instances yet; `slots` is the pool they take their slots from.
    pub fn new(reuse: InstanceReuse, slots: Arc<Slots>) -> Self {
        Instances {
            reuse,
            slots,
            pool: Mutex::new(Pool::default()),
            waiting: AtomicUsize::new(0),
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
        let (taken, expired) = self
            .lock()
            .take(threads::current(), self.reuse.idle_timeout);
        drop(expired);
        taken.map(|idle| idle.lease(metrics))
    }

    /// For a request that found the pool full: an idle instance if one has
    /// come back meanwhile, else a place in this component's queue, which
    /// [`Self::checkin`] hands a finished instance to (with its slot). The
    /// caller races the receiver against waiting for a slot and keeps the
    /// count (second) until it has its instance either way.
    #[allow(clippy::type_complexity)]
    pub fn take_idle_or_wait(
        &self,
        metrics: &Arc<Metrics>,
    ) -> Result<Lease, (oneshot::Receiver<Lease>, Waiting<'_>)> {
        let mut pool = self.lock();
        let (taken, expired) = pool.take(threads::current(), self.reuse.idle_timeout);
        let waiting = match taken {
            Some(idle) => Ok(idle),
            None => {
                let (sender, receiver) = oneshot::channel();
                // Waiters that got a slot (or gave up) leave closed senders:
                // drop those in front, and sweep the rest only once they
                // outnumber the live ones.
                while pool.waiters.front().is_some_and(|w| w.is_closed()) {
                    pool.waiters.pop_front();
                }
                if pool.waiters.len() > 2 * self.waiting.load(Ordering::SeqCst) + 8 {
                    pool.waiters.retain(|w| !w.is_closed());
                }
                pool.waiters.push_back(sender);
                Err((receiver, Waiting::count(&self.waiting)))
            }
        };
        drop(pool);
        drop(expired);
        waiting.map(|idle| idle.lease(metrics))
    }

    /// Called after a request's guest call succeeded: unless the instance
    /// has served its N, hands it (with its slot) to the request of this
    /// component waiting longest, or keeps it idle for the next request. A
    /// retired one is given back for the caller to drop: also when requests
    /// of other components wait for a slot, which it then frees.
    pub fn checkin(&self, lease: Lease) -> Option<Lease> {
        let mut lease = lease;
        lease.instance.served += 1;
        if lease.instance.served >= self.reuse.max_requests || lease.instance.proxy.is_none() {
            return Some(lease);
        }
        let mut pool = self.lock();
        // Requests of this component that are waiting, against all waiting
        // (read under the lock: see `admission`). `ours` may count one not
        // yet in `all`, never the other way round.
        let ours = self.waiting.load(Ordering::SeqCst);
        let all = self.slots.waiting();
        if ours > 0 && all <= ours {
            while let Some(waiter) = pool.waiters.pop_front() {
                match waiter.send(lease) {
                    Ok(()) => return None,
                    // It got a slot meanwhile: the next one.
                    Err(back) => lease = back,
                }
            }
        }
        if all > 0 {
            return Some(lease);
        }
        let Lease {
            mut instance,
            admission,
        } = lease;
        instance.idle_since = Instant::now();
        instance.home = threads::current();
        pool.idle.push(Idle {
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
        self.lock().idle.first().map(|i| i.instance.idle_since)
    }

    /// Drops the instance idle longest, freeing its slot for a request that
    /// found the pool full; `false` when none is idle.
    pub fn drop_oldest_idle(&self) -> bool {
        if !self.reuse.enabled() {
            return false;
        }
        let mut pool = self.lock();
        let oldest = (!pool.idle.is_empty()).then(|| pool.idle.remove(0));
        drop(pool);
        oldest.is_some()
    }

    /// Drops the instances idle for longer than the timeout; returns how many
    /// are left.
    pub fn reap(&self) -> usize {
        let timeout = self.reuse.idle_timeout;
        let mut pool = self.lock();
        let expired: Vec<Idle> = pool
            .idle
            .extract_if(.., |i| i.instance.idle_since.elapsed() >= timeout)
            .collect();
        let left = pool.idle.len();
        drop(pool);
        drop(expired);
        left
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }
}
