//! The WASIp2 guest call (the WASIp3 one is `p3`), as in wasmtime's wasi-http reference server
//! (`wasmtime_wasi_http::p2` module doc) and Spin's `WasiHttpExecutor`:
//! store (fresh, or an idle instance with `--instance-reuse`) → request
//! resource → out-parameter channel → call → answer → instance kept or retired.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Result, bail};
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::sync::oneshot;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};

use super::instances::{Instances, Lease};
use super::{Body, Refusal, RequestLimits};
use crate::engine::ComponentPre;
use crate::metrics::Metrics;

/// The guest's answer as the out-parameter delivers it.
type Answer = Result<Response<Body>, ErrorCode>;

/// Lets the leased instance of `component` (an idle one when reuse is on,
/// else a fresh one) answer `req`. Its pool slot is held until the guest has
/// finished, even when its body outlives this call: then a successful
/// instance goes back to `instances` with its slot, and a retired one is
/// dropped after the answer has gone out, freeing the slot after it
/// ([`retire_later`]).
pub(super) async fn execute(
    component: &ComponentPre,
    instances: &Arc<Instances>,
    req: Request<Incoming>,
    mut lease: Lease,
    limits: &RequestLimits,
    metrics: &Arc<Metrics>,
) -> Result<Response<Body>, Refusal> {
    let store = &mut lease.instance.store;
    let (req, overflowed, unreadable) = limit_body(req, limits.max_body);
    let (sender, receiver) = oneshot::channel();
    let resources = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, req)
        .and_then(|request| {
            Ok((
                request,
                store.data_mut().http().new_response_outparam(sender)?,
            ))
        });
    let (request, outparam) = resources.map_err(|e| Refusal::guest(e.into()))?;
    let pre = component.pre().clone();
    let id = component.id().clone();
    let metrics = metrics.clone();
    let instances = instances.clone();
    let guest = async move {
        let instance = &mut lease.instance;
        if instance.proxy.is_none() {
            let instantiating = Instant::now();
            instance.proxy = Some(pre.instantiate_async(&mut instance.store).await?);
            metrics.observe_instantiation(instantiating.elapsed());
        }
        let proxy = instance.proxy.as_ref().expect("instantiated above");
        let called = proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut instance.store, request, outparam)
            .await;
        match &called {
            // A failed instance (trap, memory limit) is never reused.
            Err(e) => {
                tracing::error!(component = &*id, "guest failed: {e:?}");
                retire_later(lease);
            }
            Ok(()) => {
                if let Some(retired) = instances.checkin(lease) {
                    retire_later(retired);
                }
            }
        }
        called
    };
    let answered = settle(Box::pin(guest), receiver, limits).await;
    conclude(answered, &overflowed, &unreadable, limits)
}

/// Drops a finished instance, then frees its pool slot, on a task of its own
/// on this thread, so that the answer goes out first and the requests
/// already runnable on this thread run before the teardown (a request waiting
/// for this very slot gets it once the teardown is done).
///
/// Why: dropping a store (resetting the instance's memory, freeing its
/// tables) was ~8 % of ping-host's CPU samples at 9,900 `/ping` req/s, and
/// it sat between the guest's return and the response write. Measured with a
/// fresh instance per request (`oha -c 64`, four interleaved rounds at 9,900
/// req/s): p99 2.32–2.86 → 2.12–2.55 ms and 83–88 → 78–84 ms of CPU per
/// 1,000 requests (BENCHMARKS.md).
fn retire_later(lease: Lease) {
    tokio::spawn(async move { drop(lease) });
}

/// The client's answer from the guest's (either generation's): a body cut off
/// at the limit makes most guests fail, and the client sent too much, so it
/// gets 413 rather than the guest's 5xx; likewise a body the client broke off
/// or malformed (bad chunking, fewer bytes than its Content-Length) is the
/// client's mistake, a 400, never a 5xx or a guest error.
pub(super) fn conclude(
    answered: Result<Response<Body>>,
    overflowed: &AtomicBool,
    unreadable: &AtomicBool,
    limits: &RequestLimits,
) -> Result<Response<Body>, Refusal> {
    let failed = answered
        .as_ref()
        .map_or(true, |r| r.status().is_server_error());
    if failed && overflowed.load(Ordering::Relaxed) {
        return Err(Refusal::BodyTooLarge {
            declared: None,
            limit: limits.max_body,
        });
    }
    if failed && unreadable.load(Ordering::Relaxed) {
        return Err(Refusal::BadRequest("the request body could not be read"));
    }
    answered.map_err(Refusal::guest)
}

/// Cuts the body off at `max_body` bytes; the flags tell whether it was, and
/// whether reading the client's body failed.
#[allow(clippy::type_complexity)]
pub(super) fn limit_body(
    req: Request<Incoming>,
    max_body: u64,
) -> (
    Request<
        impl hyper::body::Body<Data = bytes::Bytes, Error = wasmtime_wasi_http::Error> + Send + 'static,
    >,
    Arc<AtomicBool>,
    Arc<AtomicBool>,
) {
    let overflowed = Arc::new(AtomicBool::new(false));
    let unreadable = Arc::new(AtomicBool::new(false));
    let flag = overflowed.clone();
    let broken = unreadable.clone();
    let req = req.map(|body| {
        http_body_util::BodyExt::map_err(
            http_body_util::Limited::new(body, max_body as usize),
            move |e| match e.downcast::<hyper::Error>() {
                Ok(e) => {
                    broken.store(true, Ordering::Relaxed);
                    wasmtime_wasi_http::Error::Hyper(*e)
                }
                // Limited's only other error: the body outgrew the limit.
                Err(_) => {
                    flag.store(true, Ordering::Relaxed);
                    wasmtime_wasi_http::Error::HttpRequestBodySize(Some(max_body))
                }
            },
        )
    });
    (req, overflowed, unreadable)
}

/// Runs the guest until it has answered. The guest runs on this connection's
/// task; only when it is still running once the response head exists (it keeps
/// streaming its body) does the rest of it move to a task of its own, bounded
/// by the same deadline: a spawn per request costs cross-thread wake-ups that
/// profiles showed.
async fn settle(
    mut guest: std::pin::Pin<Box<impl Future<Output = wasmtime::Result<()>> + Send + 'static>>,
    mut receiver: oneshot::Receiver<Answer>,
    limits: &RequestLimits,
) -> Result<Response<Body>> {
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
            let deadline = limits.deadline;
            tokio::spawn(async move {
                if tokio::time::timeout(deadline, guest).await.is_err() {
                    tracing::error!("response body still streaming after {deadline:?}; stopped");
                }
            });
            match head {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(code)) => bail!("the guest answered with an error: {code:?}"),
                Err(_) => bail!("the guest dropped its response"),
            }
        }
    }
}
