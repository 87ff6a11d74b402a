//! The per-request bounds and the flags that set them.

use std::net::SocketAddr;
use std::time::Duration;

use super::InstanceReuse;
use crate::cli;

/// Per-request bounds.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Wall-clock budget of one request, from admission to the response head.
    /// A guest past it is interrupted and the client gets 504.
    pub deadline: Duration,
    /// How long a request waits for a free instance before getting 503.
    pub queue_wait: Duration,
    /// Largest request body accepted, bytes (413 beyond).
    pub max_body: u64,
    /// Largest request head (request line plus headers), bytes: 431 beyond,
    /// exactly (see `head_size`).
    pub max_head: usize,
    /// Time allowed for a client to send a complete request head (slow clients
    /// are cut off after it).
    pub head_timeout: Duration,
}

impl RequestLimits {
    /// The defaults, used by `Default` and by `ping-host up`'s flags.
    pub const DEFAULT: RequestLimits = RequestLimits {
        deadline: Duration::from_secs(30),
        queue_wait: Duration::from_secs(1),
        max_body: 1024 * 1024,
        max_head: 64 * 1024,
        head_timeout: Duration::from_secs(10),
    };
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The size of `req`'s head as the client sent it: request line, header
/// lines and the blank line, each with its CRLF (whitespace around header
/// values, which the parser drops, is not counted). Compared with
/// `--max-header-kib` after parsing, so the limit holds exactly whatever the
/// read chunking, where hyper's buffer bound alone lets heads of up to about
/// twice the limit through.
pub(super) fn head_size<B>(req: &http::Request<B>) -> usize {
    let uri = req.uri();
    // Origin form (`/ping?x=1`) unless the client sent an absolute URI.
    let target = match (uri.authority(), uri.path_and_query()) {
        (None, Some(p)) => p.as_str().len(),
        _ => uri.to_string().len(),
    };
    let request_line = req.method().as_str().len() + 1 + target + 1 + "HTTP/1.1".len() + 2;
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    request_line + headers + 2
}

#[cfg(test)]
mod tests {
    #[test]
    fn head_size_counts_the_bytes_on_the_wire() {
        let raw = "GET /ping?x=1 HTTP/1.1\r\nhost: a:1\r\nx-big: abc\r\n\r\n";
        let req = http::Request::get("/ping?x=1")
            .header("host", "a:1")
            .header("x-big", "abc")
            .body(())
            .expect("request");
        assert_eq!(super::head_size(&req), raw.len());
    }
}

/// Default shutdown drain (`--drain`).
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(30);

/// `ping-host up`'s HTTP flags: where to listen and the per-request bounds.
/// Durations take units (`30s`, `500ms`); the old integer spellings
/// (`--request-timeout-secs 30`) still work, hidden.
#[derive(Debug, clap::Args)]
pub struct HttpArgs {
    /// Address to serve HTTP on.
    #[arg(long, default_value = "127.0.0.1:3000", env = "SPIN_HTTP_LISTEN_ADDR")]
    pub listen: SocketAddr,
    /// Threads serving HTTP, each with its own runtime and its own listener on
    /// --listen [default: one per CPU available to the process].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,
    /// Serve Prometheus metrics on this address (GET /metrics), apart from the app's port.
    #[arg(long, value_name = "ADDR", env = "PING_HOST_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Wall-clock budget of one request; a component still running after it
    /// is stopped and the client gets 504.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration,
          default_value_t = RequestLimits::DEFAULT.deadline.into())]
    request_timeout: humantime::Duration,
    /// How long a request waits for a free instance when all --max-instances
    /// are busy, before it gets 503 with Retry-After.
    #[arg(long, value_name = "DURATION", default_value_t = RequestLimits::DEFAULT.queue_wait.into())]
    queue_wait: humantime::Duration,
    /// Largest request body accepted, in KiB (413 beyond).
    #[arg(long, default_value_t = RequestLimits::DEFAULT.max_body / 1024)]
    max_body_kib: u64,
    /// Largest request head (request line and headers), in KiB (431 beyond).
    #[arg(long, default_value_t = (RequestLimits::DEFAULT.max_head / 1024) as u64,
          value_parser = clap::value_parser!(u64).range(8..=1024))]
    max_header_kib: u64,
    /// Time a client has to send a complete request head.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration,
          default_value_t = RequestLimits::DEFAULT.head_timeout.into())]
    header_read_timeout: humantime::Duration,
    /// How long shutdown waits for in-flight requests.
    #[arg(long, value_name = "DURATION", default_value_t = DEFAULT_DRAIN.into())]
    drain: humantime::Duration,
    /// Requests one instance of a component serves in turn before it is
    /// dropped; 1 (the default) is a fresh instance per request, as Spin 3
    /// and containerd-shim-spin do. Raise it only for components that keep no
    /// state between requests: the next request sees the previous one's
    /// globals. An instance that fails is never reused. Idle instances keep
    /// their place in the pool (--max-instances) and give it up to a request
    /// that finds the pool full; with the pool full, a finished instance goes
    /// to the next waiting request of its component.
    #[arg(long, value_name = "N", default_value_t = InstanceReuse::DEFAULT.max_requests,
          value_parser = clap::value_parser!(u32).range(1..))]
    instance_reuse: u32,
    /// Requests one WASIp3 (spin-sdk 7) component instance serves before it
    /// is dropped (Spin 4.1's flag and default).
    #[arg(long, value_name = "N", default_value_t = InstanceReuse::DEFAULT.p3_max_requests,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_instance_reuse_count: u32,
    /// Requests one WASIp3 (spin-sdk 7) component instance serves at once
    /// (Spin 4.1's flag and default).
    #[arg(long, value_name = "N", default_value_t = InstanceReuse::DEFAULT.p3_max_concurrent,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_instance_concurrent_reuse_count: u32,
    /// How long an instance kept for reuse (by --instance-reuse, or any
    /// WASIp3 one) waits idle for its next request before it is dropped.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration,
          default_value_t = InstanceReuse::DEFAULT.idle_timeout.into())]
    idle_instance_timeout: humantime::Duration,
    /// Old spelling of --request-timeout, in seconds.
    #[arg(long, hide = true, conflicts_with = "request_timeout",
          value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout_secs: Option<u64>,
    /// Old spelling of --queue-wait, in milliseconds.
    #[arg(long, hide = true, conflicts_with = "queue_wait")]
    queue_wait_ms: Option<u64>,
    /// Old spelling of --header-read-timeout, in seconds.
    #[arg(long, hide = true, conflicts_with = "header_read_timeout",
          value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout_secs: Option<u64>,
    /// Old spelling of --drain, in seconds.
    #[arg(long, hide = true, conflicts_with = "drain")]
    drain_secs: Option<u64>,
}

impl HttpArgs {
    /// The limits these flags choose.
    pub fn limits(&self) -> RequestLimits {
        RequestLimits {
            deadline: cli::duration(
                self.request_timeout,
                self.request_timeout_secs,
                Duration::from_secs,
            ),
            queue_wait: cli::duration(self.queue_wait, self.queue_wait_ms, Duration::from_millis),
            max_body: self.max_body_kib.saturating_mul(1024),
            max_head: (self.max_header_kib * 1024) as usize,
            head_timeout: cli::duration(
                self.header_read_timeout,
                self.header_read_timeout_secs,
                Duration::from_secs,
            ),
        }
    }

    /// How many threads serve HTTP: `--threads`, else one per available CPU
    /// (cgroup CPU quotas included, as `std::thread::available_parallelism`
    /// counts them).
    pub fn threads(&self) -> usize {
        self.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |n| n as usize,
        )
    }

    /// The instance reuse these flags choose.
    pub fn reuse(&self) -> InstanceReuse {
        InstanceReuse {
            max_requests: self.instance_reuse,
            idle_timeout: self.idle_instance_timeout.into(),
            p3_max_requests: self.max_instance_reuse_count,
            p3_max_concurrent: self.max_instance_concurrent_reuse_count,
        }
    }

    /// How long shutdown waits for in-flight requests.
    pub fn drain(&self) -> Duration {
        cli::duration(self.drain, self.drain_secs, Duration::from_secs)
    }
}

/// A duration above zero (`0s` would refuse every request).
fn positive_duration(text: &str) -> Result<humantime::Duration, String> {
    let d: humantime::Duration = text
        .parse()
        .map_err(|e| format!("{e} (write it with a unit, like 30s or 500ms)"))?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}
