//! Admission: one permit per pooled instance caps concurrency; a request that
//! finds none waits up to `--queue-wait`, then is refused (503, `Retry-After`).
//! A `tower::ConcurrencyLimit` cannot be used: the permit must live as long as
//! the instance's store, which may outlive the response head while the body
//! streams.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::{InstanceInUse, Metrics};

/// A slot in the instance pool (a semaphore permit) plus the in-use gauge;
/// both are released on drop.
pub(super) struct Admission {
    _permit: OwnedSemaphorePermit,
    _gauge: InstanceInUse,
}

/// The instance pool's slots.
pub(super) struct Slots {
    permits: Arc<Semaphore>,
    queue_wait: Duration,
}

impl Slots {
    /// `n` slots; a request waits at most `queue_wait` for one.
    pub(super) fn new(n: usize, queue_wait: Duration) -> Self {
        Slots {
            permits: Arc::new(Semaphore::new(n)),
            queue_wait,
        }
    }

    /// A slot, or `None` when none freed up within the queue wait.
    pub(super) async fn admit(&self, metrics: &Arc<Metrics>) -> Option<Admission> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => tokio::time::timeout(self.queue_wait, self.permits.clone().acquire_owned())
                .await
                .ok()?
                .ok()?,
        };
        Some(Admission {
            _permit: permit,
            _gauge: metrics.instance(),
        })
    }
}
