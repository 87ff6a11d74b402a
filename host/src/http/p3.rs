//! The WASIp3 guest call (`wasi:http/handler@0.3.0`, spin-sdk 7), through
//! wasmtime-wasi-http's `ProxyHandler`, the dispatcher `wasmtime serve` and
//! Spin 4.1 use: each component has a set of instance workers; a request goes
//! to a worker with room (one instance serves up to
//! `--max-instance-concurrent-reuse-count` requests at once and
//! `--max-instance-reuse-count` in all) or a new one, and a worker idle for
//! `--idle-instance-timeout` is dropped.
//!
//! The limits are the WASIp2 path's: admission and the body and head checks
//! happen before the call, exactly as there; the memory limiter and the epoch
//! yield are on every store (`engine::Stores`); the request deadline is
//! enforced twice, by `HttpServer::run`'s timer (the client's 504) and by the
//! worker, which stops taking requests once one has run past it and is
//! dropped when its last request ends or runs out of time too, so a
//! misbehaving instance never serves again. An instance that traps fails the
//! requests it holds at that moment, and is replaced.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance, Proxy, ProxyHandler, ShouldAccept, TrapOrPanicError,
    WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServicePre;

use super::admission::Admission;
use super::{Body, InstanceReuse, Refusal, RequestLimits, executor};
use crate::engine::{self, ComponentPre, HostState};
use crate::metrics::Metrics;

/// How much sooner than the client's deadline a worker gives up on a request
/// and retires its instance: the instance is gone before the client hears
/// 504, so a client that retries at once never lands on it.
const RETIRE_MARGIN: Duration = Duration::from_millis(20);

/// One WASIp3 component's instance workers.
pub(super) struct P3Handler(ProxyHandler<Instances>);

impl P3Handler {
    /// Workers for `component` (whose pre-linked instance is `pre`; its stores
    /// come from the WASIp3 engine), reused as `reuse` says, each request
    /// held to `deadline`. Raises `component`'s Redis connection cap for the
    /// requests one instance serves at once, and logs how it is served.
    pub(super) fn new(
        component: &mut ComponentPre,
        pre: ServicePre<HostState>,
        reuse: InstanceReuse,
        deadline: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        tracing::info!(
            component = &**component.id(),
            max_reuse = reuse.p3_max_requests,
            max_concurrent = reuse.p3_max_concurrent,
            idle_timeout = ?reuse.idle_timeout,
            "WASIp3 component (wasi:http/handler@0.3.0): instances are reused"
        );
        component.serve_concurrently(reuse.p3_max_concurrent as usize);
        P3Handler(ProxyHandler::new(Instances {
            component: component.clone(),
            pre,
            reuse,
            deadline: retire_after(deadline),
            metrics,
        }))
    }
}

/// When a worker retires an instance whose request has not answered.
fn retire_after(deadline: Duration) -> Duration {
    deadline.saturating_sub(RETIRE_MARGIN).max(deadline / 2)
}

/// Lets a worker of `handler` answer `req`. `admission` is held until the
/// response head exists.
pub(super) async fn execute(
    handler: &P3Handler,
    req: Request<Incoming>,
    admission: Admission,
    limits: &RequestLimits,
) -> Result<Response<Body>, Refusal> {
    let _admission = admission;
    let started = Instant::now();
    let (req, overflowed, unreadable) = executor::limit_body(req, limits.max_body);
    let answered = handler.0.handle((), req.map(BodyExt::boxed_unsync)).await;
    // The request ran out of time: its own expiry fired, or its instance was
    // dropped for running past the deadline (a guest spinning in a loop
    // keeps the per-request timer from being polled; the worker's is not).
    let expired = answered.as_ref().is_err_and(|e| {
        e.downcast_ref::<ExpirationError>().is_some()
            || (e.downcast_ref::<TrapOrPanicError>().is_some()
                && started.elapsed() >= handler.0.state().deadline)
    });
    if expired {
        return Err(Refusal::DeadlineExceeded(limits.deadline));
    }
    let answered = answered.map_err(|e| {
        let e = anyhow::Error::from(e);
        tracing::error!(
            component = &**handler.0.state().component.id(),
            "guest failed: {e:?}"
        );
        e.context("the guest failed before responding")
    });
    executor::conclude(answered, &overflowed, &unreadable, limits)
}

/// What the workers share: how to make an instance, and its limits.
struct Instances {
    component: ComponentPre,
    pre: ServicePre<HostState>,
    reuse: InstanceReuse,
    /// The request deadline less [`RETIRE_MARGIN`].
    deadline: Duration,
    metrics: Arc<Metrics>,
}

impl HandlerState for Instances {
    type StoreData = HostState;
    type WorkerExpiration = Expiry;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<HostState, Expiry, Worker>> {
        let mut store = self.component.stores().new_store(&self.component);
        let started = Instant::now();
        // A start function that never returns must not hold a worker forever.
        let service = tokio::time::timeout(self.deadline, self.pre.instantiate_async(&mut store))
            .await
            .map_err(|_| ExpirationError)??;
        self.metrics.observe_instantiation(started.elapsed());
        Ok(Instance {
            store,
            proxy: Proxy::P3(service),
            view: engine::http_view,
            expiration: Expiry {
                idle: self.reuse.idle_timeout,
                deadline: self.deadline,
                sleep: Box::pin(tokio::time::sleep(Duration::MAX / 4)),
            },
            state: Worker {
                reuse: self.reuse,
                deadline: self.deadline,
                component: self.component.id().clone(),
            },
        })
    }
}

/// When a worker's instance is dropped: idle for the idle timeout, or still
/// busy a request deadline after its latest request started (polled from
/// outside the instance's event loop, so a guest spinning in a loop cannot
/// keep it from firing).
struct Expiry {
    idle: Duration,
    deadline: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl WorkerExpiration for Expiry {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let me = self.get_mut();
        let timeout = match status {
            WorkerStatus::Idle => me.idle,
            WorkerStatus::Requests | WorkerStatus::PostReturn => me.deadline,
        };
        let Some(at) = start.checked_add(timeout) else {
            return Poll::Pending;
        };
        let at = tokio::time::Instant::from_std(at);
        if me.sleep.deadline() != at {
            me.sleep.as_mut().reset(at);
        }
        me.sleep.as_mut().poll(cx)
    }
}

/// One instance's reuse policy.
struct Worker {
    reuse: InstanceReuse,
    deadline: Duration,
    component: Arc<str>,
}

impl WorkerState for Worker {
    type StoreData = HostState;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.reuse.p3_max_requests as usize {
            ShouldAccept::Never
        } else if concurrent >= self.reuse.p3_max_concurrent as usize {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, HostState>,
        _data: (),
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        Box::pin(tokio::time::sleep(self.deadline))
    }

    fn drop(&self, store: Store<HostState>, result: wasmtime::Result<()>) {
        if let Err(e) = result {
            tracing::warn!(
                component = &*self.component,
                "instance dropped after a failure: {e:?}"
            );
        }
        drop(store);
    }
}
