//! The process-wide cache of Redis connections, and how patient it is.
//!
//! Guests open a connection per request (that is how Spin components are
//! written; a reused instance may keep one), so the host keeps one
//! multiplexed, self-reconnecting `ConnectionManager` per address string
//! and serving thread for the whole process and hands guests cheap clones
//! of it. Spin instead opens a `MultiplexedConnection` per
//! instance; with a fresh instance per request that would be a TCP handshake
//! (and an AUTH) per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use super::address::Address;
use crate::metrics::Metrics;

/// Address strings each thread keeps connections for; beyond this, a
/// connection lives only as long as the guest's handle on it.
const MAX_CACHED_ADDRESSES: usize = 64;

/// How patient the host is with Redis.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Connect timeout of one dial.
    pub connect: Duration,
    /// Timeout of one command's reply.
    pub response: Duration,
}

impl Timeouts {
    /// The defaults, used by `Default` and by the `--redis-*-timeout` flags.
    pub const DEFAULT: Timeouts = Timeouts {
        connect: Duration::from_secs(2),
        response: Duration::from_secs(3),
    };
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `ping-host up`'s Redis flags.
#[derive(Debug, clap::Args)]
pub struct RedisArgs {
    /// Redis connect timeout (for example `2s`, `500ms`).
    #[arg(long, value_name = "DURATION", default_value_t = Timeouts::DEFAULT.connect.into())]
    redis_connect_timeout: humantime::Duration,
    /// Redis command timeout (for example `3s`).
    #[arg(long, value_name = "DURATION", default_value_t = Timeouts::DEFAULT.response.into())]
    redis_response_timeout: humantime::Duration,
    /// Old spelling of --redis-connect-timeout, in milliseconds.
    #[arg(long, hide = true, conflicts_with = "redis_connect_timeout")]
    redis_connect_timeout_ms: Option<u64>,
    /// Old spelling of --redis-response-timeout, in milliseconds.
    #[arg(long, hide = true, conflicts_with = "redis_response_timeout")]
    redis_response_timeout_ms: Option<u64>,
}

impl From<&RedisArgs> for Timeouts {
    fn from(args: &RedisArgs) -> Self {
        Timeouts {
            connect: crate::cli::duration(
                args.redis_connect_timeout,
                args.redis_connect_timeout_ms,
                Duration::from_millis,
            ),
            response: crate::cli::duration(
                args.redis_response_timeout,
                args.redis_response_timeout_ms,
                Duration::from_millis,
            ),
        }
    }
}

/// One connection per address string (as guests write it) and thread,
/// shared by every instance on that thread (not a pool: each entry is a
/// single multiplexed connection), with the address parsed once.
///
/// Why per thread: a multiplexed connection's driver task runs on the runtime
/// that first used it, so with one connection per address every command from
/// the other serving threads woke that runtime and the reply woke the
/// caller's (two cross-thread wake-ups, each an eventfd write and often a
/// context switch, per command, as `strace` showed). Measured together with
/// idle-instance affinity (`oha -c 64` on `/ping`, three interleaved rounds):
/// 17.0–17.3k → 17.7–19.8k req/s and 83–86 → 72–81 ms of CPU per 1,000
/// requests with a fresh instance per request; no change beyond noise with
/// `--instance-reuse 128` (BENCHMARKS.md), because a reused instance taken
/// over by the other thread kept the first thread's connection: it now
/// moves to its new thread's at its next command (`RedisCtx::connection`).
pub struct SharedConnections {
    timeouts: Timeouts,
    pub(crate) metrics: Arc<Metrics>,
    connections: Mutex<HashMap<ThreadId, HashMap<String, Opened>>>,
}

/// A guest's address string as parsed, and this thread's connection to it.
#[derive(Clone)]
pub(crate) struct Opened {
    pub(crate) address: Arc<Address>,
    pub(crate) conn: ConnectionManager,
}

impl SharedConnections {
    /// An empty cache; nothing is dialled until a guest opens an address.
    pub fn new(timeouts: Timeouts, metrics: Arc<Metrics>) -> Self {
        SharedConnections {
            timeouts,
            metrics,
            connections: Mutex::new(HashMap::new()),
        }
    }

    /// This thread's connection for the address string `raw`, if a guest
    /// opened it before: keyed by the string as the guest wrote it, so a
    /// fresh instance per request does not parse its address again (the URL
    /// parse was ~2 % of ping-host's CPU at 9,900 `/ping` req/s). The caller
    /// still runs its own component's allow-list check on `address`.
    pub(crate) fn cached(&self, raw: &str) -> Option<Opened> {
        let threads = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        threads.get(&std::thread::current().id())?.get(raw).cloned()
    }

    /// A handle for `address` (parsed from `raw`, already allowed), this
    /// thread's. Creating one does not dial: the manager connects on first
    /// use and reconnects by itself after Redis comes back.
    pub(crate) fn connection(
        &self,
        raw: &str,
        address: &Arc<Address>,
    ) -> redis::RedisResult<ConnectionManager> {
        let conn = self.manager(address)?;
        let opened = Opened {
            conn: conn.clone(),
            address: address.clone(),
        };
        let mut threads = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let map = threads.entry(std::thread::current().id()).or_default();
        if map.len() < MAX_CACHED_ADDRESSES {
            map.insert(raw.to_owned(), opened);
        }
        Ok(conn)
    }

    fn manager(&self, address: &Address) -> redis::RedisResult<ConnectionManager> {
        let mut settings = RedisConnectionInfo::default().set_db(address.db);
        if let Some(user) = &address.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &address.password {
            settings = settings.set_password(password);
        }
        let dest = &address.destination;
        let info = ConnectionAddr::Tcp(dest.host.clone(), dest.port)
            .into_connection_info()?
            .set_redis_settings(settings);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeouts.connect))
            .set_response_timeout(Some(self.timeouts.response))
            // One quick retry, then fail: requests answer 503 fast while Redis
            // is away, and the next command triggers a fresh reconnect.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        ConnectionManager::new_lazy_with_config(redis::Client::open(info)?, config)
    }
}
