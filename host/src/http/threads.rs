//! Serving on one current-thread Tokio runtime per core, each accepting on its
//! own `SO_REUSEPORT` listener bound to the same address (the kernel spreads
//! new connections across them), instead of one multi-threaded runtime.
//!
//! Why: a connection, its requests and its guest calls then stay on one thread
//! from accept to answer; the multi-threaded scheduler moved them between
//! workers (work stealing, cross-thread wake-ups). Measured with `bench/ab.py`
//! on 2 cores, `oha -c 64`, same binary, one runtime vs one per core (CPU
//! per 1,000 requests is ping-host's own): `/ping` 6,963 → 11,168 req/s
//! (123 → 94 ms CPU/1k), `GET /` 9,120 → 12,199 req/s, and with
//! `--instance-reuse 128` `/ping` 11,605 → 16,593 and `GET /` 14,857 →
//! 20,113 req/s. (Noisy machine, two interleaved rounds; the direction held
//! in every round.)
//!
//! What is shared: the `HttpServer` (routes, components, idle instances, the
//! admission semaphore, metrics). Each thread opens its own Redis connections
//! (see `SharedConnections`), and a reused instance taken over from another
//! thread moves to this thread's at its next command; until then it holds a
//! handle on the other thread's, whose driver runs on the runtime that opened
//! it, so no runtime stops until every thread has drained.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{Barrier, oneshot, watch};

use super::HttpServer;

std::thread_local! {
    /// This thread's index among the serving threads; `usize::MAX` elsewhere.
    static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The index of the serving thread running the caller (0..`--threads`), or
/// `usize::MAX` on any other thread. Idle instances remember it, so that a
/// thread takes back its own (warm in its core's cache, holding Redis
/// connections driven by its runtime).
pub(crate) fn current() -> usize {
    INDEX.get()
}

/// `n` listeners on `addr` with `SO_REUSEPORT`, as standard listeners for the
/// threads to adopt; port 0 picks one free port for all of them. Call it
/// inside a Tokio runtime. Errors name `--listen`.
pub fn bind(addr: SocketAddr, n: usize) -> Result<Vec<std::net::TcpListener>> {
    let mut listeners = Vec::with_capacity(n);
    let mut at = addr;
    for _ in 0..n.max(1) {
        let socket = match at {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }?;
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        let listener = socket
            .bind(at)
            .and_then(|()| socket.listen(1024))
            .with_context(|| format!("--listen: cannot listen on {addr}"))?;
        // Port 0: the first bind chose the port; the others join it.
        at = listener.local_addr()?;
        listeners.push(listener.into_std()?);
    }
    Ok(listeners)
}

/// How far ahead [`keep_a_timer_armed`] keeps its timer: shorter than the
/// per-request timers it covers (the Redis command timeout, 3 s by default;
/// the head timeout, 10 s; the request deadline, 30 s). A timer set shorter
/// than this still works; its registration just wakes the driver, as before.
const ARMED_AHEAD: Duration = Duration::from_millis(500);

/// Keeps a timer pending on this thread's runtime, at most [`ARMED_AHEAD`]
/// away, so that the timers every request sets (hyper's head timeout, the
/// request deadline, the Redis command timeout) almost never fall before the
/// time the runtime's driver last planned to wake at.
///
/// Why: Tokio 1.54 wakes a runtime's I/O driver (an `eventfd` write, and one
/// more trip through `epoll_wait`) whenever a new timer is due before the
/// wake-up it computed when it last parked, and a driver that parked with no
/// timer pending counts as never waking; on a current-thread runtime that
/// wake-up is useless, since the thread registering the timer is the one
/// that will park next (tokio-rs/tokio#5207; the fix, tokio-rs/tokio#8383,
/// is not released). Every request that found its thread parked paid one
/// such write per timer it set. Measured at 5,000 `/ping` req/s, a fresh
/// instance per request (`perf stat` on the syscalls): 0.49 → 0.001 `eventfd`
/// writes and 0.76 → 0.50 `epoll_wait` calls per request; `bench/ab.py
/// BENCH_AB_TOGETHER=3000`: CPU 214.7 → 213.4 µs per request (on a slow day),
/// lower in 6 of 6 rounds. Small, so it stays one task; an idle serving
/// thread pays for it with two to four wake-ups and two `eventfd` writes a
/// second (the engine's epoch ticker thread already wakes every
/// millisecond). Remove it once Tokio has the fix.
async fn keep_a_timer_armed() {
    let mut every = tokio::time::interval(ARMED_AHEAD);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
    }
}

/// The serving threads, until they have all drained.
pub struct Threads {
    finished: Vec<oneshot::Receiver<Result<()>>>,
}

impl Threads {
    /// Starts one thread per listener, each serving `server` on its own
    /// current-thread runtime until `stop` turns true, then draining for up
    /// to `drain`.
    pub fn start(
        server: Arc<HttpServer>,
        listeners: Vec<std::net::TcpListener>,
        stop: watch::Receiver<bool>,
        drain: Duration,
    ) -> Result<Self> {
        let all_drained = Arc::new(Barrier::new(listeners.len()));
        let mut finished = Vec::with_capacity(listeners.len());
        for (i, listener) in listeners.into_iter().enumerate() {
            let (done, receiver) = oneshot::channel();
            let (server, mut stop, all_drained) =
                (server.clone(), stop.clone(), all_drained.clone());
            let serve = move || -> Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    // Ends with the runtime.
                    tokio::spawn(keep_a_timer_armed());
                    listener.set_nonblocking(true)?;
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let stopped = async move {
                        let _ = stop.wait_for(|s| *s).await;
                    };
                    let served = server.serve(listener, stopped, drain).await;
                    all_drained.wait().await;
                    served
                })
            };
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || {
                    INDEX.set(i);
                    let _ = done.send(serve());
                })
                .context("cannot start a serving thread")?;
            finished.push(receiver);
        }
        Ok(Threads { finished })
    }

    /// Waits until every thread has drained; the first error, if any.
    pub async fn finished(self) -> Result<()> {
        let mut result = Ok(());
        for thread in self.finished {
            let ended = thread
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a serving thread panicked")));
            if let (Ok(()), Err(e)) = (&result, ended) {
                result = Err(e);
            }
        }
        result
    }
}
