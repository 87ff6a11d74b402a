//! `fermyon:spin/redis@2.0.0` (spin-sdk <= 5) and, in `v3`,
//! `spin:redis/redis@3.0.0` (spin-sdk 7) for guests: Spin's Redis outbound.
//!
//! Laid out like Spin's `factor-outbound-redis`: the wiring (`add_to_linker`),
//! per-instance state (`RedisCtx`) with the host trait impls on a view of it,
//! and the allow-list check before anything is dialled (in `open`). Commands go
//! over the process-wide [`SharedConnections`]. Timeouts on connect and on each
//! command bound how long a request can wait for a sick Redis. Passwords stay in
//! memory only: they are redacted from every log line and error string.

mod address;
mod connections;
mod v3;

use std::sync::Arc;
use std::time::Instant;

use redis::Value;
use redis::aio::ConnectionManager;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use self::address::Address;
pub use self::connections::{RedisArgs, SharedConnections, Timeouts};
use super::bindings::RedisError;
use super::bindings::redis::{self as wit, Connection, Error, RedisParameter, RedisResult};
use crate::allowed_hosts::AllowedHosts;

pub(crate) use self::v3::add_to_linker as add_v3_to_linker;

/// Connections one request may hold open at once, like Spin's per-instance
/// cap; an instance serving requests concurrently (WASIp3) gets this many per
/// concurrent request.
pub(crate) const MAX_CONNECTIONS_PER_INSTANCE: usize = 10;

/// Links `fermyon:spin/redis@2.0.0`; `view` finds the instance's Redis state.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> RedisView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, RedisHost>(linker, view)
}

/// Per-instance Redis state.
pub(crate) struct RedisCtx {
    connections: Arc<SharedConnections>,
    allowed: Arc<AllowedHosts>,
    component: Arc<str>,
    open: usize,
    max_open: usize,
}

impl RedisCtx {
    /// State for one instance of `component`, reaching only `allowed`, with
    /// at most `max_open` connections open at once.
    pub(crate) fn new(
        connections: Arc<SharedConnections>,
        allowed: Arc<AllowedHosts>,
        component: Arc<str>,
        max_open: usize,
    ) -> Self {
        RedisCtx {
            connections,
            allowed,
            component,
            open: 0,
            max_open,
        }
    }

    /// `open` for both interface versions: the address (parsed once per
    /// string and serving thread), the allow-list check, the per-instance
    /// cap, then a handle on this thread's shared connection (which does not
    /// dial), pushed to the instance's `table`.
    fn open(&mut self, table: &mut ResourceTable, raw: String) -> Result<u32, RedisError> {
        let cached = self.connections.cached(&raw);
        let address = match &cached {
            Some(opened) => opened.address.clone(),
            None => Arc::new(self.parse(&raw)?),
        };
        self.check(&address)?;
        if self.open >= self.max_open {
            return Err(Error::TooManyConnections.into());
        }
        let conn = match cached {
            Some(opened) => opened.conn,
            None => self
                .connections
                .connection(&raw, &address)
                .map_err(|e| guest_error(&address, &self.component, "open", e).0)?,
        };
        self.open += 1;
        let entry = table
            .push(RedisConnection {
                conn,
                address,
                raw,
                thread: std::thread::current().id(),
            })
            .map_err(RedisError::trap)?;
        Ok(entry.rep())
    }

    /// The guest's connection with table index `rep`, to send a command on:
    /// first moved to this thread's shared connection when the instance now
    /// runs on another serving thread than the one it opened the connection
    /// on or last sent from. Should no connection be had here (it cannot
    /// fail in practice: the address built one before), the old one serves.
    /// Past `MAX_CACHED_ADDRESSES` address strings on this thread, the one
    /// it gets is its own, as every `open` there gets.
    ///
    /// Why: a reused instance (`--instance-reuse`) keeps the connection a
    /// request opened (ping's component does) and can be taken by the other
    /// serving thread, whose commands then woke the first thread's runtime
    /// (where the connection's driver runs) and each reply woke theirs: two
    /// `eventfd` writes per command. At 5,000 `/ping` req/s with
    /// `--instance-reuse 128`: 0.71 → 0.001 such writes per request (`perf
    /// stat` on the `write` syscall; their call stacks ran through redis-rs's
    /// `PipelineSink::send_result` and `mpsc::Sender::send`); `bench/ab.py
    /// BENCH_AB_TOGETHER=4000`, reuse on both sides: CPU 149.1 → 143.6 µs per
    /// request, p50 2.30 → 1.85 ms, lower in 6 of 6 rounds.
    fn connection(
        &self,
        table: &mut ResourceTable,
        rep: u32,
    ) -> Result<(ConnectionManager, Arc<Address>), RedisError> {
        let opened = table
            .get_mut(&Resource::<RedisConnection>::new_borrow(rep))
            .map_err(RedisError::trap)?;
        let here = std::thread::current().id();
        if opened.thread != here {
            let this_threads = match self.connections.cached(&opened.raw) {
                Some(cached) => Ok(cached.conn),
                None => self.connections.connection(&opened.raw, &opened.address),
            };
            if let Ok(conn) = this_threads {
                (opened.conn, opened.thread) = (conn, here);
            }
        }
        Ok((opened.conn.clone(), opened.address.clone()))
    }

    /// `[resource-drop]connection` for both interface versions.
    fn close(&mut self, table: &mut ResourceTable, rep: u32) -> wasmtime::Result<()> {
        table.delete(Resource::<RedisConnection>::new_own(rep))?;
        self.open = self.open.saturating_sub(1);
        Ok(())
    }

    /// Counts a finished command and maps its failure for the guest.
    fn finish<T>(
        &self,
        address: &Address,
        name: &'static str,
        started: Instant,
        result: redis::RedisResult<T>,
    ) -> Result<T, RedisError> {
        let metrics = &self.connections.metrics;
        metrics.redis_command(name, started.elapsed());
        result.map_err(|e| {
            let (error, reason) = guest_error(address, &self.component, name, e);
            metrics.redis_error(name, reason);
            error.into()
        })
    }

    /// The guest's address string, parsed (refused as `invalid-address`).
    fn parse(&self, raw: &str) -> Result<Address, Error> {
        Address::parse(raw).map_err(|e| {
            tracing::warn!(component = &*self.component, "redis address refused: {e}");
            Error::InvalidAddress
        })
    }

    /// The allow-list check: the parsed destination must be in the
    /// component's `allowed_outbound_hosts` (never re-parsed, never resolved).
    fn check(&self, address: &Address) -> Result<(), Error> {
        let component = &*self.component;
        if !self.allowed.allows(&address.destination) {
            tracing::warn!(
                component,
                destination = %address.destination,
                "redis address refused: not in allowed_outbound_hosts; add it to [component.{component}] allowed_outbound_hosts"
            );
            return Err(Error::InvalidAddress);
        }
        Ok(())
    }
}

/// A guest's open connection, kept in the instance's resource table under the
/// index of the guest's `connection` handle.
struct RedisConnection {
    /// A handle on `thread`'s shared connection to `address`.
    conn: ConnectionManager,
    address: Arc<Address>,
    /// The address string as the guest wrote it (the key of [`SharedConnections`]).
    raw: String,
    /// The serving thread whose shared connection `conn` is.
    thread: std::thread::ThreadId,
}

/// What the generated host traits are implemented on.
pub(crate) struct RedisView<'a> {
    /// The instance's resource table (shared with WASI).
    pub(crate) table: &'a mut ResourceTable,
    /// The instance's Redis state.
    pub(crate) ctx: &'a mut RedisCtx,
}

/// Marker tying [`RedisView`] to the linker.
struct RedisHost;

impl HasData for RedisHost {
    type Data<'a> = RedisView<'a>;
}

/// `name` as a command with `args`, and whether sending it twice is harmless.
fn command(
    name: &'static str,
    args: impl FnOnce(&mut redis::Cmd) -> &mut redis::Cmd,
) -> (redis::Cmd, bool) {
    let mut cmd = redis::cmd(name);
    args(&mut cmd);
    // Same state and same answer when sent twice (DEL, SADD, SREM would
    // answer a different count the second time).
    (cmd, matches!(name, "GET" | "SET" | "SMEMBERS"))
}

/// `execute`'s command, and whether it is read-only (so safe to retry).
fn arbitrary(command: &str, arguments: Vec<RedisParameter>) -> (redis::Cmd, bool) {
    let mut cmd = redis::cmd(command);
    for arg in arguments {
        match arg {
            RedisParameter::Int64(n) => cmd.arg(n),
            RedisParameter::Binary(b) => cmd.arg(b),
        };
    }
    // Read-only commands (PING, as /test and probes send) are safe to retry.
    let read_only = ["PING", "GET", "EXISTS", "TTL", "MGET", "SMEMBERS", "ECHO"]
        .iter()
        .any(|c| command.eq_ignore_ascii_case(c));
    (cmd, read_only)
}

/// Sends `cmd` on the shared connection `manager`. The shared connection
/// learns that Redis went away (or came back) only from a failed command, and
/// hands that failure to the command that met it before dialling again. Spin
/// opens a fresh connection per `open`, so there the first request after an
/// outage succeeds: do the same by trying once more on the new connection,
/// when that cannot apply the command twice.
async fn send<T: redis::FromRedisValue>(
    mut manager: ConnectionManager,
    cmd: &redis::Cmd,
    idempotent: bool,
) -> redis::RedisResult<T> {
    let result = cmd.query_async::<T>(&mut manager).await;
    if result.as_ref().is_err_and(|e| retry_is_safe(idempotent, e)) {
        return cmd.query_async::<T>(&mut manager).await;
    }
    result
}

impl RedisView<'_> {
    /// Runs one typed command on the guest's connection: `name` is both the
    /// Redis command and its metric label.
    async fn call<T: redis::FromRedisValue>(
        &mut self,
        conn: &Resource<Connection>,
        name: &'static str,
        args: impl FnOnce(&mut redis::Cmd) -> &mut redis::Cmd,
    ) -> Result<T, RedisError> {
        let (cmd, idempotent) = command(name, args);
        self.run(conn, name, idempotent, &cmd).await
    }

    /// `name` labels the latency and error metrics; it is the command for the
    /// typed calls and `execute` for arbitrary ones, so series stay bounded.
    async fn run<T: redis::FromRedisValue>(
        &mut self,
        conn: &Resource<Connection>,
        name: &'static str,
        idempotent: bool,
        cmd: &redis::Cmd,
    ) -> Result<T, RedisError> {
        let (manager, address) = self.ctx.connection(self.table, conn.rep())?;
        let started = Instant::now();
        let result = send(manager, cmd, idempotent).await;
        self.ctx.finish(&address, name, started, result)
    }
}

/// Whether a command may be sent again after `e` on the shared connection:
/// always when it was never sent (refused connect, broken pipe), and after
/// any dropped connection when it is `idempotent`. Never for `INCR` or
/// writes through `execute` once they may have reached Redis.
fn retry_is_safe(idempotent: bool, e: &redis::RedisError) -> bool {
    let never_sent = e.is_connection_refusal() || {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut broken = false;
        while let Some(err) = source {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                broken |= matches!(
                    io.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::NotConnected
                );
            }
            source = err.source();
        }
        broken || e.to_string().to_ascii_lowercase().contains("broken pipe")
    };
    never_sent || (idempotent && e.is_connection_dropped())
}

/// Maps a Redis failure to the interface's error as Spin 3.6's
/// factor-outbound-redis does: `other` with the error's text for every
/// command (a non-integer `INCR` included), `type-error` only for a
/// `WRONGTYPE` answer to `SADD`; logs the full story. The second value is
/// the `reason` label for `ping_host_redis_errors_total`.
fn guest_error(
    address: &Address,
    component: &str,
    command: &str,
    e: redis::RedisError,
) -> (Error, &'static str) {
    let wrong_type =
        e.code() == Some("WRONGTYPE") || e.kind() == redis::ErrorKind::UnexpectedReturnType;
    let label = if wrong_type || e.detail().is_some_and(|d| d.contains("not an integer")) {
        "type"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_connection_refusal() {
        "refused"
    } else {
        "other"
    };
    if wrong_type && command == "SADD" {
        return (Error::TypeError, label);
    }
    let mut reason = address.redact(e.to_string());
    if e.is_timeout() && !reason.contains("timed out") {
        reason = format!("timed out ({reason})");
    }
    tracing::warn!(component, redis = ?address, %reason, "redis command failed");
    (Error::Other(reason), label)
}

impl wit::Host for RedisView<'_> {
    fn convert_error(&mut self, err: RedisError) -> wasmtime::Result<Error> {
        err.downcast()
    }
}

impl wit::HostConnection for RedisView<'_> {
    async fn open(&mut self, address: String) -> Result<Resource<Connection>, RedisError> {
        let rep = self.ctx.open(self.table, address)?;
        Ok(Resource::new_own(rep))
    }

    async fn publish(
        &mut self,
        conn: Resource<Connection>,
        channel: String,
        payload: Vec<u8>,
    ) -> Result<(), RedisError> {
        self.call::<i64>(&conn, "PUBLISH", |c| c.arg(channel).arg(payload))
            .await
            .map(drop)
    }

    async fn get(
        &mut self,
        conn: Resource<Connection>,
        key: String,
    ) -> Result<Option<Vec<u8>>, RedisError> {
        self.call(&conn, "GET", |c| c.arg(key)).await
    }

    async fn set(
        &mut self,
        conn: Resource<Connection>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), RedisError> {
        self.call::<Value>(&conn, "SET", |c| c.arg(key).arg(value))
            .await
            .map(drop)
    }

    async fn incr(&mut self, conn: Resource<Connection>, key: String) -> Result<i64, RedisError> {
        self.call(&conn, "INCR", |c| c.arg(key)).await
    }

    async fn del(
        &mut self,
        conn: Resource<Connection>,
        keys: Vec<String>,
    ) -> Result<u32, RedisError> {
        self.call(&conn, "DEL", |c| c.arg(keys)).await
    }

    async fn sadd(
        &mut self,
        conn: Resource<Connection>,
        key: String,
        values: Vec<String>,
    ) -> Result<u32, RedisError> {
        self.call(&conn, "SADD", |c| c.arg(key).arg(values)).await
    }

    async fn smembers(
        &mut self,
        conn: Resource<Connection>,
        key: String,
    ) -> Result<Vec<String>, RedisError> {
        self.call(&conn, "SMEMBERS", |c| c.arg(key)).await
    }

    async fn srem(
        &mut self,
        conn: Resource<Connection>,
        key: String,
        values: Vec<String>,
    ) -> Result<u32, RedisError> {
        self.call(&conn, "SREM", |c| c.arg(key).arg(values)).await
    }

    async fn execute(
        &mut self,
        conn: Resource<Connection>,
        command: String,
        arguments: Vec<RedisParameter>,
    ) -> Result<Vec<RedisResult>, RedisError> {
        let (cmd, read_only) = arbitrary(&command, arguments);
        let value = self.run::<Value>(&conn, "execute", read_only, &cmd).await?;
        let mut out = Vec::new();
        flatten(value, &mut out);
        Ok(out)
    }

    async fn drop(&mut self, conn: Resource<Connection>) -> wasmtime::Result<()> {
        self.ctx.close(self.table, conn.rep())
    }
}

/// Spin's `execute` returns a flat list: nested replies are flattened in order.
fn flatten(value: Value, out: &mut Vec<RedisResult>) {
    match value {
        Value::Nil => out.push(RedisResult::Nil),
        Value::Int(n) => out.push(RedisResult::Int64(n)),
        Value::BulkString(b) => out.push(RedisResult::Binary(b)),
        Value::SimpleString(s) => out.push(RedisResult::Status(s)),
        Value::Okay => out.push(RedisResult::Status("OK".into())),
        Value::Boolean(b) => out.push(RedisResult::Int64(i64::from(b))),
        Value::Double(d) => out.push(RedisResult::Binary(d.to_string().into_bytes())),
        Value::VerbatimString { text, .. } => out.push(RedisResult::Binary(text.into_bytes())),
        Value::Array(items) | Value::Set(items) | Value::Push { data: items, .. } => {
            items.into_iter().for_each(|v| flatten(v, out))
        }
        Value::Map(pairs) => pairs.into_iter().for_each(|(k, v)| {
            flatten(k, out);
            flatten(v, out);
        }),
        Value::Attribute { data, .. } => flatten(*data, out),
        other => out.push(RedisResult::Binary(format!("{other:?}").into_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    /// A connection a reused instance opened on one serving thread sends its
    /// next command, on another thread, over that thread's shared connection
    /// (which this picks and caches without dialling), so that the command's
    /// reply is driven by the runtime of the thread waiting for it.
    #[test]
    fn a_connection_used_on_another_thread_moves_to_that_threads_connection() {
        let raw = "redis://127.0.0.1:6379";
        let metrics = Arc::new(Metrics::new(4));
        let shared = Arc::new(SharedConnections::new(Timeouts::DEFAULT, metrics));
        let allowed = Arc::new(AllowedHosts::parse(&[raw]).expect("valid"));
        let mut ctx = RedisCtx::new(shared.clone(), allowed, "c".into(), 1);
        let mut table = ResourceTable::new();
        // Each "serving thread" with a runtime, as the handles need one.
        let on_a_thread = |f: &mut (dyn FnMut() + Send)| {
            std::thread::scope(|s| {
                s.spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    let _entered = runtime.enter();
                    f()
                });
            })
        };
        let mut rep = None;
        on_a_thread(&mut || rep = Some(ctx.open(&mut table, raw.into()).expect("allowed")));
        let rep = rep.expect("opened");
        on_a_thread(&mut || {
            assert!(
                shared.cached(raw).is_none(),
                "a new thread has no connection yet"
            );
            ctx.connection(&mut table, rep).expect("its connection");
            assert!(
                shared.cached(raw).is_some(),
                "the command goes over this thread's connection"
            );
            let kept = table.get(&Resource::<RedisConnection>::new_borrow(rep));
            assert_eq!(
                kept.expect("still open").thread,
                std::thread::current().id(),
                "and the guest's connection keeps it for the next command"
            );
        });
    }
}
