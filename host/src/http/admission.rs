//! Admission: one permit per pooled instance caps concurrency; a request that
//! finds none waits up to `--queue-wait`, then is refused (503, `Retry-After`).
//! A `tower::ConcurrencyLimit` cannot be used: the permit must live as long as
//! the instance's store, which may outlive the response head while the body
//! streams, and with `--instance-reuse` an idle instance keeps its permit
//! (`Instances`), because it keeps its place in the pooling allocator.
//!
//! An idle instance gives its permit up as soon as a request needs one: the
//! request makes room (drops idle instances, one at a time) before it waits,
//! and while a request of another component waits, a finished instance is
//! retired instead of kept idle ([`Slots::waiting`]), so its permit goes to
//! the waiter. When every waiter is of the instance's own component, it is
//! handed to the one waiting longest instead (`Instances::checkin`), so
//! reuse goes on at capacity.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::{InstanceInUse, Metrics};

/// A slot in the instance pool (a semaphore permit) plus the in-use gauge;
/// both are released on drop.
pub(super) struct Admission {
    permit: OwnedSemaphorePermit,
    _gauge: InstanceInUse,
}

impl Admission {
    /// A request's hold on `permit` (a fresh slot, or the one an idle
    /// instance kept), counted in the in-use gauge.
    pub(super) fn new(permit: OwnedSemaphorePermit, metrics: &Arc<Metrics>) -> Self {
        Admission {
            permit,
            _gauge: metrics.instance(),
        }
    }

    /// The slot alone, for an instance that goes idle (`--instance-reuse`):
    /// it keeps its place in the pool but is no longer in use.
    pub(super) fn into_slot(self) -> OwnedSemaphorePermit {
        self.permit
    }
}

/// The instance pool's slots.
pub(super) struct Slots {
    permits: Arc<Semaphore>,
    queue_wait: Duration,
    /// Requests that found every slot taken and have not got one yet.
    waiting: AtomicUsize,
}

impl Slots {
    /// `n` slots; a request waits at most `queue_wait` for one.
    pub(super) fn new(n: usize, queue_wait: Duration) -> Self {
        Slots {
            permits: Arc::new(Semaphore::new(n)),
            queue_wait,
            waiting: AtomicUsize::new(0),
        }
    }

    /// How many requests are waiting for a slot. Read under the idle
    /// instances' lock, which a waiter takes after it has counted itself (in
    /// `make_room`), so either the waiter finds the idle instance or the
    /// instance sees the waiter.
    pub(super) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// A slot if one is free now.
    pub(super) fn try_admit(&self, metrics: &Arc<Metrics>) -> Option<Admission> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(Admission::new(permit, metrics))
    }

    /// A slot, or `None` when none freed up within the queue wait. When every
    /// slot is taken, `make_room` is called (drop one idle instance, `true`
    /// if there was one) until a slot is free or nothing is left to drop.
    pub(super) async fn admit(
        &self,
        metrics: &Arc<Metrics>,
        mut make_room: impl FnMut() -> bool,
    ) -> Option<Admission> {
        if let Some(admission) = self.try_admit(metrics) {
            return Some(admission);
        }
        let _waiting = Waiting::count(&self.waiting);
        let permit = loop {
            if let Ok(p) = self.permits.clone().try_acquire_owned() {
                break p;
            }
            if !make_room() {
                let wait = self.permits.clone().acquire_owned();
                break tokio::time::timeout(self.queue_wait, wait)
                    .await
                    .ok()?
                    .ok()?;
            }
        };
        Some(Admission::new(permit, metrics))
    }
}

/// One request counted in a count of waiting requests (`Slots::waiting`, or
/// a component's) until it is dropped (admitted, refused, or the client gone).
pub(super) struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    /// Counts one more in `waiting`.
    pub(super) fn count(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
