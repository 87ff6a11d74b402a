//! Test harness: starts real `redis-server` and `ping-host` processes on free
//! loopback ports and stops them when dropped.
//!
//! The binaries under test are built beforehand by `make test` (the component
//! with `--profile wasm`, the host with `--release`); `PING_HOST_BIN` and
//! `PING_COMPONENT_WASM` override where they are looked for.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

fn artifact(var: &str, default: &str, hint: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(default));
    assert!(
        path.is_file(),
        "{} not found: {hint} (or set {var})",
        path.display()
    );
    path
}

/// The `ping-host` binary under test.
pub fn host_bin() -> PathBuf {
    artifact(
        "PING_HOST_BIN",
        "target/release/ping-host",
        "build it with `make build`",
    )
}

/// The built ping component.
pub fn component_wasm() -> PathBuf {
    artifact(
        "PING_COMPONENT_WASM",
        "target/wasm32-wasip2/wasm/ping_component.wasm",
        "build it with `make component`",
    )
}

/// The fault tests' deliberately misbehaving component (tests/misbehave).
pub fn misbehave_wasm() -> PathBuf {
    artifact(
        "PING_MISBEHAVE_WASM",
        "target/wasm32-wasip2/wasm/misbehave_component.wasm",
        "build it with `make component`",
    )
}

/// The spin-sdk 7 (WASIp3) test component (tests/p3-ping).
pub fn p3_wasm() -> PathBuf {
    artifact(
        "PING_P3_WASM",
        "target/wasm32-wasip2/wasm/p3_ping_component.wasm",
        "build it with `make component`",
    )
}

/// The value of the sample `series` (name and labels exactly as exposed) in
/// Prometheus text, if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A loopback port nobody is listening on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// Polls `check` until it succeeds or `limit` passes.
pub fn wait_until<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        sleep(Duration::from_millis(25));
    }
}

/// A `redis-server` with AOF (`appendfsync always`) in its own directory.
pub struct Redis {
    pub port: u16,
    pub password: Option<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Result<Self> {
        Self::start_with_password(None)
    }

    pub fn start_with_password(password: Option<&str>) -> Result<Self> {
        let mut redis = Redis {
            port: free_port(),
            password: password.map(str::to_owned),
            dir: tempfile::tempdir()?,
            child: None,
        };
        redis.restart()?;
        Ok(redis)
    }

    /// Starts the server (again) on the same port and data directory.
    pub fn restart(&mut self) -> Result<()> {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        self.child = Some(
            cmd.spawn()
                .context("cannot start redis-server: is it installed? (`make deps`)")?,
        );
        wait_until(
            Duration::from_secs(10),
            "redis-server to accept connections",
            || self.connection().ok(),
        )?;
        Ok(())
    }

    /// Kills the server with SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) -> Result<()> {
        self.signal("-STOP")
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, sig: &str) -> Result<()> {
        let pid = self.child.as_ref().context("redis is not running")?.id();
        let status = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill {sig} {pid} failed");
        Ok(())
    }

    /// A direct connection, for checking what the app stored.
    pub fn connection(&self) -> Result<redis::Connection> {
        let mut info = redis::RedisConnectionInfo::default();
        if let Some(p) = &self.password {
            info = info.set_password(p);
        }
        let addr = redis::ConnectionAddr::Tcp("127.0.0.1".into(), self.port);
        let info = redis::IntoConnectionInfo::into_connection_info(addr)?.set_redis_settings(info);
        let client = redis::Client::open(info)?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
        redis::cmd("PING").query::<String>(&mut conn)?;
        Ok(conn)
    }

    /// Runs one command and returns its reply.
    pub fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> Result<T> {
        let mut conn = self.connection()?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        Ok(cmd.query(&mut conn)?)
    }

    /// The counter under `key`, 0 when absent.
    pub fn counter(&self, key: &str) -> Result<i64> {
        Ok(self.cmd::<Option<i64>>(&["GET", key])?.unwrap_or(0))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How to start `ping-host up`.
#[derive(Clone, Default)]
pub struct HostConfig {
    pub manifest: Option<PathBuf>,
    /// Serve `up --from-registry <reference>` instead of a manifest.
    pub from_registry: Option<String>,
    /// The compilation and blob cache (default: a shared one under target/).
    pub cache_dir: Option<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The working directory (where a `.env` file is looked for).
    pub cwd: Option<PathBuf>,
}

impl HostConfig {
    /// The repository's spin.toml pointed at `redis`.
    pub fn for_redis(redis: &Redis) -> Self {
        let mut config = HostConfig::default();
        config.args.push("--variable".into());
        config.args.push(format!("redis_port={}", redis.port));
        if let Some(p) = &redis.password {
            config.args.push("--variable".into());
            config.args.push(format!("redis_password={p}"));
        }
        config
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs ping-host in `dir` (default: the test's own working directory).
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    pub fn manifest(mut self, path: impl Into<PathBuf>) -> Self {
        self.manifest = Some(path.into());
        self
    }

    pub fn from_registry(mut self, reference: impl Into<String>) -> Self {
        self.from_registry = Some(reference.into());
        self
    }

    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    pub fn envs(mut self, vars: &[(String, String)]) -> Self {
        self.env.extend(vars.iter().cloned());
        self
    }

    fn command(&self, port: u16, log: &Path) -> Result<Command> {
        let mut cmd = Command::new(host_bin());
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd.arg("up");
        match &self.from_registry {
            Some(reference) => cmd.args(["--from-registry", reference]),
            None => cmd.arg("--manifest").arg(
                self.manifest
                    .clone()
                    .unwrap_or_else(|| root().join("spin.toml")),
            ),
        };
        cmd.args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--cache-dir")
            .arg(
                self.cache_dir
                    .clone()
                    .unwrap_or_else(|| root().join("target/e2e-cache")),
            )
            .args(
                // A small pool keeps the tests' memory reservations modest.
                (!self.args.iter().any(|a| a == "--max-instances"))
                    .then_some(["--max-instances", "128"])
                    .into_iter()
                    .flatten(),
            )
            .args(&self.args)
            .env("RUST_LOG", "info")
            .env_remove("SPIN_HTTP_LISTEN_ADDR")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?);
        Ok(cmd)
    }

    /// Runs a start-up that is expected to fail; returns its exit status and stderr.
    pub fn run_to_exit(&self) -> Result<(ExitStatus, String)> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("stderr.log");
        let mut child = self.command(free_port(), &log)?.spawn()?;
        let status = wait_until(Duration::from_secs(60), "ping-host to exit", || {
            child.try_wait().ok().flatten()
        });
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                let _ = child.kill();
                return Err(e);
            }
        };
        Ok((status, std::fs::read_to_string(&log)?))
    }
}

/// A running `ping-host up`.
pub struct Host {
    pub port: u16,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Host {
    pub fn start(config: &HostConfig) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("stderr.log");
        let port = free_port();
        let child = config.command(port, &log)?.spawn()?;
        let mut host = Host {
            port,
            child,
            log,
            _dir: dir,
        };
        let ready = wait_until(Duration::from_secs(120), "ping-host to serve", || {
            if let Ok(Some(status)) = host.child.try_wait() {
                return Some(Err(status));
            }
            let health = reqwest::blocking::get(host.url("/.well-known/spin/health")).ok()?;
            health.status().is_success().then_some(Ok(()))
        })?;
        if let Err(status) = ready {
            bail!(
                "ping-host exited with {status} before serving:\n{}",
                host.logs()
            );
        }
        Ok(host)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Everything the host wrote to stderr so far.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the ping-host process, in bytes.
    pub fn rss_bytes(&self) -> Result<u64> {
        rss_bytes_of(self.child.id())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        wait_until(Duration::from_secs(40), "ping-host to exit", || {
            self.child.try_wait().ok().flatten()
        })
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Resident memory of process `pid`, in bytes (from /proc).
pub fn rss_bytes_of(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("no VmRSS")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib * 1024)
}

/// A plain HTTP response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

/// An HTTP client with a generous timeout: a hang becomes a failure, not a stuck test.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// Sends `method url` with optional headers and reads the reply.
pub fn request(
    client: &reqwest::blocking::Client,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Reply> {
    let method = reqwest::Method::from_bytes(method.as_bytes())?;
    let mut req = client.request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send()?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok(Reply {
        status,
        content_type,
        headers,
        body: resp.text()?,
    })
}

/// `GET url`.
pub fn get(url: &str) -> Result<Reply> {
    request(&client(), "GET", url, &[])
}

/// `total` GETs of a counting route (`/ping`) from `connections` threads,
/// each on its own keep-alive connection, spread as evenly as possible.
/// Fails unless every answer is 200 with a count as its body, and unless the
/// counts are exactly 1..=`total`, each once: none lost, none repeated.
pub fn pings_are_exact_and_unique(url: &str, connections: usize, total: usize) -> Result<()> {
    let threads: Vec<_> = (0..connections)
        .map(|i| {
            let url = url.to_owned();
            let n = total / connections + usize::from(i < total % connections);
            std::thread::spawn(move || -> Result<Vec<i64>> {
                let c = client();
                (0..n)
                    .map(|_| {
                        let r = request(&c, "GET", &url, &[])?;
                        anyhow::ensure!(r.status == 200, "status {} body {}", r.status, r.body);
                        Ok(r.body.trim().parse()?)
                    })
                    .collect()
            })
        })
        .collect();
    let mut counts = Vec::with_capacity(total);
    for t in threads {
        counts.extend(t.join().expect("a client thread panicked")?);
    }
    counts.sort_unstable();
    let expected: Vec<i64> = (1..=total as i64).collect();
    anyhow::ensure!(
        counts == expected,
        "{} answers, {} distinct, from {:?} to {:?}: not each of 1..={total} once",
        counts.len(),
        counts
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        counts.first(),
        counts.last()
    );
    Ok(())
}

/// The text of `tests/fixtures/<name>.toml`, the test manifests shared by the
/// end-to-end tests (placeholders not yet replaced).
pub fn fixture(name: &str) -> Result<String> {
    let path = root().join("tests/fixtures").join(format!("{name}.toml"));
    std::fs::read_to_string(&path).with_context(|| format!("fixture {}", path.display()))
}

/// Writes fixture `name` as `dir/spin.toml` (see [`write_manifest`]).
pub fn write_fixture(dir: &Path, name: &str) -> Result<PathBuf> {
    write_manifest(dir, &fixture(name)?)
}

/// Writes `text` as `dir/spin.toml`, with `@WASM@` standing for the built
/// ping component, `@MISBEHAVE_WASM@` for the fault tests' component and
/// `@P3_WASM@` for the WASIp3 test component.
pub fn write_manifest(dir: &Path, text: &str) -> Result<PathBuf> {
    let mut text = text.replace("@WASM@", &component_wasm().display().to_string());
    if text.contains("@MISBEHAVE_WASM@") {
        text = text.replace("@MISBEHAVE_WASM@", &misbehave_wasm().display().to_string());
    }
    if text.contains("@P3_WASM@") {
        text = text.replace("@P3_WASM@", &p3_wasm().display().to_string());
    }
    let path = dir.join("spin.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Runs `ping-host` with `args` to completion, feeding `stdin`.
pub fn ping_host(
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> Result<std::process::Output> {
    use std::io::Write;
    let mut child = Command::new(host_bin())
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut input = child.stdin.take().context("stdin")?;
    if let Some(text) = stdin {
        input.write_all(text.as_bytes())?;
    }
    drop(input);
    Ok(child.wait_with_output()?)
}

/// A real OCI registry (Debian's `docker-registry`), optionally behind htpasswd.
pub struct Registry {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Registry {
    pub fn start(user: Option<(&str, &str)>) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((name, password)) = user {
            let hash = bcrypt::hash(password, 5)?;
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{name}:{hash}\n"))?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: ping-tests\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start docker-registry: is it installed? (`make deps`)")?;
        let registry = Registry { port, dir, child };
        wait_until(Duration::from_secs(20), "docker-registry to listen", || {
            reqwest::blocking::get(format!("http://127.0.0.1:{port}/v2/")).ok()
        })?;
        Ok(registry)
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Fetches `/v2/<path>` with an optional Accept header and basic auth.
    pub fn get(
        &self,
        path: &str,
        accept: Option<&str>,
        user: Option<(&str, &str)>,
    ) -> Result<reqwest::blocking::Response> {
        let mut req = client().get(format!("http://{}/v2/{path}", self.host()));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        if let Some((u, p)) = user {
            req = req.basic_auth(u, Some(p));
        }
        Ok(req.send()?)
    }

    /// Where the registry stores blob `digest` on disk.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
