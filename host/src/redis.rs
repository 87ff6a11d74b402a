//! `fermyon:spin/redis@2.0.0` for guests: Spin's Redis outbound.
//!
//! Guests open a connection per request (that is how Spin components are
//! written), so the host keeps one multiplexed, self-reconnecting connection per
//! distinct address for the whole process and hands guests cheap clones of it.
//! Every address is checked against the component's `allowed_outbound_hosts`
//! before anything is dialled. Timeouts on connect and on each command bound how
//! long a request can wait for a sick Redis. Passwords stay in memory only: they
//! are redacted from every log line and error string.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Value};
use wasmtime::component::{HasData, Resource, ResourceTable};

use crate::bindings::redis::{Error, Host, HostConnection, RedisParameter, RedisResult};
use crate::metrics::Metrics;
use crate::outbound::{AllowedHosts, Destination, canonical_host};

/// Connections one instance may hold open at once, like Spin's per-instance cap.
pub const MAX_CONNECTIONS_PER_INSTANCE: usize = 10;
/// Distinct addresses the process keeps connections for; beyond this, a
/// connection lives only as long as the request that opened it.
const MAX_CACHED_ADDRESSES: usize = 64;

/// How patient the host is with Redis.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(2),
            response: Duration::from_secs(3),
        }
    }
}

/// Parsed `redis://[user][:password@]host[:port][/db]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Address {
    pub destination: Destination,
    db: i64,
    username: Option<String>,
    password: Option<String>,
}

impl Hash for Address {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.destination.scheme.hash(state);
        self.destination.host.hash(state);
        self.destination.port.hash(state);
        self.db.hash(state);
        self.username.hash(state);
        self.password.hash(state);
    }
}

/// Never prints credentials.
impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.destination, self.db)
    }
}

/// Why a guest's address string is refused (the guest sees `invalid-address`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddressError {
    #[error("not a URL")]
    NotAUrl,
    #[error("scheme `{0}` is not supported (use redis://)")]
    Scheme(String),
    #[error("no host")]
    NoHost,
    #[error("the path must be a database number, like /0")]
    Database,
    #[error("query parameters are not supported")]
    Query,
}

impl Address {
    pub fn parse(address: &str) -> Result<Self, AddressError> {
        let url = url::Url::parse(address).map_err(|_| AddressError::NotAUrl)?;
        if url.scheme() != "redis" {
            return Err(AddressError::Scheme(url.scheme().to_owned()));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(AddressError::NoHost)?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(AddressError::Query);
        }
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            n => n
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or(AddressError::Database)?,
        };
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .filter(|v| !v.is_empty())
        };
        Ok(Address {
            destination: Destination {
                scheme: "redis".into(),
                host: canonical_host(host),
                port: url.port().unwrap_or(6379),
            },
            db,
            username: decode(url.username()),
            password: url.password().and_then(decode),
        })
    }

    /// Removes this address's password from `text` (for error messages).
    fn redact(&self, text: String) -> String {
        match &self.password {
            Some(p) => text.replace(p.as_str(), "***"),
            None => text,
        }
    }
}

/// Process-wide connections, shared by every instance.
pub struct RedisPool {
    timeouts: Timeouts,
    metrics: Arc<Metrics>,
    connections: Mutex<HashMap<Address, ConnectionManager>>,
}

impl RedisPool {
    pub fn new(timeouts: Timeouts, metrics: Arc<Metrics>) -> Self {
        RedisPool {
            timeouts,
            metrics,
            connections: Mutex::new(HashMap::new()),
        }
    }

    /// A handle for `address`. Creating one does not dial: the manager connects
    /// on first use and reconnects by itself after Redis comes back.
    fn connection(&self, address: &Address) -> redis::RedisResult<ConnectionManager> {
        let mut map = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(conn) = map.get(address) {
            return Ok(conn.clone());
        }
        let conn = self.manager(address)?;
        if map.len() < MAX_CACHED_ADDRESSES {
            map.insert(address.clone(), conn.clone());
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

/// A guest's open connection (the `connection` resource).
pub struct RedisConnection {
    conn: ConnectionManager,
    address: Address,
}

/// Per-instance Redis state.
pub struct RedisCtx {
    pub pool: Arc<RedisPool>,
    pub allowed: Arc<AllowedHosts>,
    pub component: Arc<str>,
    open: usize,
}

impl RedisCtx {
    pub fn new(pool: Arc<RedisPool>, allowed: Arc<AllowedHosts>, component: Arc<str>) -> Self {
        RedisCtx {
            pool,
            allowed,
            component,
            open: 0,
        }
    }
}

/// What the generated host traits are implemented on.
pub struct RedisView<'a> {
    pub table: &'a mut ResourceTable,
    pub ctx: &'a mut RedisCtx,
}

/// Marker tying [`RedisView`] to the linker.
pub struct RedisHost;

impl HasData for RedisHost {
    type Data<'a> = RedisView<'a>;
}

type Outcome<T> = wasmtime::Result<Result<T, Error>>;

impl RedisView<'_> {
    /// Runs one command on the guest's connection, mapping errors for the guest.
    /// A typed call: `name` is both the Redis command and its metric label.
    async fn call<T: redis::FromRedisValue>(
        &mut self,
        conn: &Resource<RedisConnection>,
        name: &'static str,
        args: impl FnOnce(&mut redis::Cmd) -> &mut redis::Cmd,
    ) -> Outcome<T> {
        let mut cmd = redis::cmd(name);
        args(&mut cmd);
        self.run(conn, name, &cmd).await
    }

    /// `name` labels the latency and error metrics; it is the command for the
    /// typed calls and `execute` for arbitrary ones, so series stay bounded.
    async fn run<T: redis::FromRedisValue>(
        &mut self,
        conn: &Resource<RedisConnection>,
        name: &'static str,
        cmd: &redis::Cmd,
    ) -> Outcome<T> {
        let mut manager = self.table.get(conn)?.conn.clone();
        let started = Instant::now();
        let result = cmd.query_async::<T>(&mut manager).await;
        let metrics = &self.ctx.pool.metrics;
        metrics.redis_command(name, started.elapsed());
        Ok(match result {
            Ok(v) => Ok(v),
            // The address is looked up again only on failure: cloning it (host,
            // user, password) for every command would allocate per request.
            Err(e) => {
                let (error, reason) =
                    guest_error(&self.table.get(conn)?.address, &self.ctx.component, e);
                metrics.redis_error(name, reason);
                Err(error)
            }
        })
    }
}

/// Maps a Redis failure to the interface's error, logging the full story; the
/// second value is the `reason` label for `ping_host_redis_errors_total`.
fn guest_error(address: &Address, component: &str, e: redis::RedisError) -> (Error, &'static str) {
    let code = e.code().unwrap_or_default();
    let detail = e.detail().unwrap_or_default();
    if code == "WRONGTYPE"
        || detail.contains("not an integer")
        || e.kind() == redis::ErrorKind::UnexpectedReturnType
    {
        return (Error::TypeError, "type");
    }
    let (reason, label) = if e.is_timeout() {
        ("timed out".to_owned(), "timeout")
    } else if e.is_connection_refusal() {
        ("connection refused".to_owned(), "refused")
    } else {
        (address.redact(e.to_string()), "other")
    };
    tracing::warn!(component, redis = ?address, %reason, "redis command failed");
    (Error::Other(reason), label)
}

impl Host for RedisView<'_> {}

impl HostConnection for RedisView<'_> {
    async fn open(&mut self, address: String) -> Outcome<Resource<RedisConnection>> {
        let component = &self.ctx.component;
        let address = match Address::parse(&address) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(component = &**component, "redis address refused: {e}");
                return Ok(Err(Error::InvalidAddress));
            }
        };
        if !self.ctx.allowed.allows(&address.destination) {
            tracing::warn!(
                component = &**component,
                destination = %address.destination,
                "redis address refused: not in allowed_outbound_hosts; add it to [component.{component}] allowed_outbound_hosts"
            );
            return Ok(Err(Error::InvalidAddress));
        }
        if self.ctx.open >= MAX_CONNECTIONS_PER_INSTANCE {
            return Ok(Err(Error::TooManyConnections));
        }
        let conn = match self.ctx.pool.connection(&address) {
            Ok(c) => c,
            Err(e) => return Ok(Err(guest_error(&address, component, e).0)),
        };
        self.ctx.open += 1;
        Ok(Ok(self.table.push(RedisConnection { conn, address })?))
    }

    async fn publish(
        &mut self,
        conn: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> Outcome<()> {
        self.call::<i64>(&conn, "PUBLISH", |c| c.arg(channel).arg(payload))
            .await
            .map(|r| r.map(drop))
    }

    async fn get(
        &mut self,
        conn: Resource<RedisConnection>,
        key: String,
    ) -> Outcome<Option<Vec<u8>>> {
        self.call(&conn, "GET", |c| c.arg(key)).await
    }

    async fn set(
        &mut self,
        conn: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> Outcome<()> {
        self.call::<Value>(&conn, "SET", |c| c.arg(key).arg(value))
            .await
            .map(|r| r.map(drop))
    }

    async fn incr(&mut self, conn: Resource<RedisConnection>, key: String) -> Outcome<i64> {
        self.call(&conn, "INCR", |c| c.arg(key)).await
    }

    async fn del(&mut self, conn: Resource<RedisConnection>, keys: Vec<String>) -> Outcome<u32> {
        self.call(&conn, "DEL", |c| c.arg(keys)).await
    }

    async fn sadd(
        &mut self,
        conn: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Outcome<u32> {
        self.call(&conn, "SADD", |c| c.arg(key).arg(values)).await
    }

    async fn smembers(
        &mut self,
        conn: Resource<RedisConnection>,
        key: String,
    ) -> Outcome<Vec<String>> {
        self.call(&conn, "SMEMBERS", |c| c.arg(key)).await
    }

    async fn srem(
        &mut self,
        conn: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Outcome<u32> {
        self.call(&conn, "SREM", |c| c.arg(key).arg(values)).await
    }

    async fn execute(
        &mut self,
        conn: Resource<RedisConnection>,
        command: String,
        arguments: Vec<RedisParameter>,
    ) -> Outcome<Vec<RedisResult>> {
        let mut cmd = redis::cmd(&command);
        for arg in arguments {
            match arg {
                RedisParameter::Int64(n) => cmd.arg(n),
                RedisParameter::Binary(b) => cmd.arg(b),
            };
        }
        Ok(self.run::<Value>(&conn, "execute", &cmd).await?.map(|v| {
            let mut out = Vec::new();
            flatten(v, &mut out);
            out
        }))
    }

    async fn drop(&mut self, conn: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        self.ctx.open = self.ctx.open.saturating_sub(1);
        Ok(())
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

    #[test]
    fn parses_what_the_component_builds() {
        let a = Address::parse("redis://:p%40ss%3Aw%2Bord@127.0.0.1:6380/2").expect("valid");
        assert_eq!(a.destination.to_string(), "redis://127.0.0.1:6380");
        assert_eq!(a.db, 2);
        assert_eq!(a.password.as_deref(), Some("p@ss:w+ord"));
        assert_eq!(a.username, None);
        let v6 = Address::parse("redis://[::1]").expect("valid");
        assert_eq!(
            (v6.destination.host.as_str(), v6.destination.port, v6.db),
            ("::1", 6379, 0)
        );
    }

    #[test]
    fn userinfo_cannot_smuggle_a_host() {
        let a = Address::parse("redis://127.0.0.1:6379@evil.example:6379").expect("valid URL");
        assert_eq!(a.destination.host, "evil.example");
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        assert_eq!(Address::parse("nope"), Err(AddressError::NotAUrl));
        assert_eq!(
            Address::parse("rediss://h"),
            Err(AddressError::Scheme("rediss".into()))
        );
        assert_eq!(Address::parse("redis://h/x"), Err(AddressError::Database));
        assert_eq!(
            Address::parse("redis://h/0?protocol=resp3"),
            Err(AddressError::Query)
        );
    }

    /// The guest cannot reach anything but what `allowed_outbound_hosts` names:
    /// host names are compared, never resolved, and every form of a host,
    /// port, scheme or user info that is not exactly an allowed one is refused.
    #[test]
    fn allowed_outbound_hosts_cannot_be_bypassed() {
        let allowed =
            AllowedHosts::parse(&["redis://127.0.0.1:6379", "redis://cache.internal:6380"])
                .expect("valid");
        let verdict = |address: &str| match Address::parse(address) {
            Ok(a) => allowed.allows(&a.destination),
            Err(_) => false,
        };
        for ok in [
            "redis://127.0.0.1:6379",
            "redis://127.0.0.1",               // the scheme's default port
            "redis://:pw@127.0.0.1:6379/3",    // credentials and a database
            "redis://[::ffff:127.0.0.1]:6379", // the same IPv4 host, IPv6-mapped
            "redis://CACHE.internal:6380",     // names are case-insensitive
            // The destination is 127.0.0.1; `evil.example:6379` is only user info.
            "redis://evil.example:6379@127.0.0.1:6379",
            // Likewise: a backslash is not a delimiter in redis: URLs. The host
            // dialled is always the one checked, never the URL re-parsed.
            "redis://evil.example\\@127.0.0.1:6379",
        ] {
            assert!(verdict(ok), "{ok} should be allowed");
        }
        for refused in [
            "redis://localhost:6379",          // a name that resolves to an allowed IP
            "redis://127.0.0.2:6379",          // another host
            "redis://[::1]:6379",              // IPv6 loopback is not 127.0.0.1
            "redis://[::ffff:127.0.0.2]:6379", // IPv6-mapped other host
            "redis://2130706433:6379",         // decimal IPv4
            "redis://0x7f000001:6379",         // hex IPv4
            "redis://127.1:6379",              // shorthand IPv4
            "redis://0177.0.0.1:6379",         // octal IPv4
            "redis://127.0.0.1.nip.io:6379",   // a wildcard-DNS name for the IP
            "redis://127.0.0.1:6380",          // another port
            "redis://cache.internal:6379",     // an allowed host on another port
            "redis://cache.internal.evil.example:6380", // suffix trick
            "redis://127.0.0.1:6379@evil.example:6379", // allowed host in the user info
            "redis://evil.example#@127.0.0.1:6379", // a fragment
            "rediss://127.0.0.1:6379",         // another scheme
            "http://127.0.0.1:6379",
            "redis://",
        ] {
            assert!(!verdict(refused), "{refused} must be refused");
        }
    }

    #[test]
    fn debug_and_errors_hide_the_password() {
        let a = Address::parse("redis://:hunter2@h:1/0").expect("valid");
        assert!(!format!("{a:?}").contains("hunter2"));
        assert_eq!(a.redact("auth hunter2 failed".into()), "auth *** failed");
    }
}
