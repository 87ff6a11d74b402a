//! `ping-host`: run a Spin HTTP app locally, the way `spin up` would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use ping_host::engine::{self, EngineOptions, default_cache_dir};
use ping_host::oci::{self, Access};
use ping_host::redis::Timeouts;
use ping_host::server::{RequestLimits, Runtime, Settings};
use ping_host::{manifest, variables};

#[derive(Parser)]
#[command(
    name = "ping-host",
    version,
    about = "A Spin-compatible local runtime for the ping component"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the app described by a Spin manifest, or pulled from a registry.
    Up(UpArgs),
    /// Push the app as a Spin OCI artifact, as `spin registry push` does.
    Push(PushArgs),
}

#[derive(Args)]
struct RegistryArgs {
    /// Allow plain HTTP to the registry (implied for localhost and 127.0.0.1).
    #[arg(long)]
    insecure: bool,
    /// Registry user name; the password is read from standard input (--password-stdin).
    #[arg(long, requires = "password_stdin")]
    username: Option<String>,
    /// Read the registry password from standard input.
    #[arg(long, requires = "username")]
    password_stdin: bool,
}

impl RegistryArgs {
    /// Credentials from the flags; `None` falls back to the Docker config file.
    fn access(&self) -> Result<Access> {
        let credentials = match &self.username {
            Some(user) => {
                let mut password = String::new();
                std::io::stdin()
                    .read_line(&mut password)
                    .context("cannot read the password from standard input")?;
                let password = password.trim_end_matches(['\n', '\r']).to_owned();
                anyhow::ensure!(
                    !password.is_empty(),
                    "--password-stdin: standard input held no password"
                );
                Some(oci_client::secrets::RegistryAuth::Basic(
                    user.clone(),
                    password,
                ))
            }
            None => None,
        };
        Ok(Access {
            insecure: self.insecure,
            credentials,
        })
    }
}

#[derive(Args)]
struct PushArgs {
    /// Where to push: REGISTRY/REPOSITORY:TAG, e.g. ghcr.io/you/ping:0.1.0.
    reference: String,
    /// The Spin manifest of the app to push.
    #[arg(short = 'f', long = "manifest", default_value = "spin.toml")]
    manifest: PathBuf,
    /// Run each component's [component.*.build] command before pushing.
    #[arg(long)]
    build: bool,
    /// Add or override a manifest annotation: KEY=VALUE.
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    annotations: Vec<String>,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
struct UpArgs {
    /// The Spin manifest (spin.toml) to run.
    #[arg(
        short = 'f',
        long = "manifest",
        default_value = "spin.toml",
        conflicts_with = "from_registry"
    )]
    manifest: PathBuf,
    /// Pull the app from a registry instead: REGISTRY/REPOSITORY:TAG or ...@sha256:DIGEST.
    #[arg(long, value_name = "REFERENCE")]
    from_registry: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Address to serve HTTP on.
    #[arg(long, default_value = "127.0.0.1:3000", env = "SPIN_HTTP_LISTEN_ADDR")]
    listen: SocketAddr,
    /// Set an application variable: NAME=VALUE, or NAME=@FILE to read the value from a file.
    /// Takes precedence over SPIN_VARIABLE_<NAME> and the manifest default.
    #[arg(long = "variable", value_name = "NAME=VALUE")]
    variables: Vec<String>,
    /// Where compiled components are cached [default: $XDG_CACHE_HOME/ping-host or ~/.cache/ping-host].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Compile every start instead of using the compilation cache.
    #[arg(long)]
    no_cache: bool,
    /// Instances that may run at once (the size of the instance pool).
    #[arg(long, default_value_t = engine::DEFAULT_MAX_INSTANCES)]
    max_instances: u32,
    /// Linear-memory limit of one instance, in MiB.
    #[arg(long, default_value_t = engine::DEFAULT_MAX_MEMORY_MIB)]
    max_instance_memory_mib: usize,
    /// KiB of each pooled instance's memory and tables kept mapped between requests.
    #[arg(long, default_value_t = engine::DEFAULT_KEEP_RESIDENT_KIB)]
    instance_keep_resident_kib: usize,
    /// Redis connect timeout, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    redis_connect_timeout_ms: u64,
    /// Redis command timeout, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    redis_response_timeout_ms: u64,
    /// How long shutdown waits for in-flight requests, in seconds.
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
    /// Wall-clock budget of one request, in seconds; a component still running
    /// after it is stopped and the client gets 504.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout_secs: u64,
    /// How long a request waits for a free instance when all --max-instances
    /// are busy, in milliseconds, before it gets 503 with Retry-After.
    #[arg(long, default_value_t = 1000)]
    queue_wait_ms: u64,
    /// Largest request body accepted, in KiB (413 beyond).
    #[arg(long, default_value_t = 1024)]
    max_body_kib: u64,
    /// Largest request head (request line and headers), in KiB (431 beyond).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(8..=1024))]
    max_header_kib: u64,
    /// Time a client has to send a complete request head, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout_secs: u64,
    /// Serve Prometheus metrics on this address (GET /metrics), apart from the app's port.
    #[arg(long, value_name = "ADDR", env = "PING_HOST_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Up(args) => up(args),
        Command::Push(args) => push(args),
    }
}

fn up(args: UpArgs) -> Result<()> {
    let cache_dir = if args.no_cache {
        None
    } else {
        args.cache_dir.clone().or_else(default_cache_dir)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (app, image_digest) = match &args.from_registry {
        Some(reference) => {
            let access = args.registry.access()?;
            let blobs = args
                .cache_dir
                .clone()
                .or_else(default_cache_dir)
                .context("no cache directory for pulled blobs: pass --cache-dir")?;
            let pulled = runtime.block_on(oci::pull(reference, &access, &blobs))?;
            tracing::info!(reference, digest = %pulled.digest, "pulled");
            (pulled.app, Some(pulled.digest))
        }
        None => (manifest::load(&args.manifest)?, None),
    };
    let vars =
        variables::Resolved::resolve(&app.variables, &args.variables, |k| std::env::var(k).ok())?;
    let settings = Settings {
        engine: EngineOptions {
            max_instances: args.max_instances,
            max_memory: args.max_instance_memory_mib.saturating_mul(1024 * 1024),
            keep_resident: args.instance_keep_resident_kib.saturating_mul(1024),
        },
        cache_dir,
        image_digest,
        redis: Timeouts {
            connect: Duration::from_millis(args.redis_connect_timeout_ms),
            response: Duration::from_millis(args.redis_response_timeout_ms),
        },
        drain: Duration::from_secs(args.drain_secs),
        limits: RequestLimits {
            deadline: Duration::from_secs(args.request_timeout_secs),
            queue_wait: Duration::from_millis(args.queue_wait_ms),
            max_body: args.max_body_kib.saturating_mul(1024),
            max_head: (args.max_header_kib * 1024) as usize,
            head_timeout: Duration::from_secs(args.header_read_timeout_secs),
        },
    };
    runtime.block_on(async move {
        let started = std::time::Instant::now();
        let app_runtime = Arc::new(Runtime::new(&app, &vars, &settings)?);
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let local = listener.local_addr()?;
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some(addr) = args.metrics_listen {
            let metrics_listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics-listen: cannot listen on {addr}"))?;
            tracing::info!(
                "metrics on http://{}/metrics",
                metrics_listener.local_addr()?
            );
            tokio::spawn(ping_host::metrics::serve(
                app_runtime.metrics(),
                metrics_listener,
                async move {
                    let _ = metrics_stopped.await;
                },
            ));
        }
        for (route, component) in app_runtime.routes() {
            tracing::info!(route, component, "route");
        }
        tracing::info!(app = %app.name, ready_in = ?started.elapsed(), "serving on http://{local}");
        let served = app_runtime
            .serve(listener, shutdown_signal(), settings.drain)
            .await;
        // Metrics stay up while requests drain, so the drain itself is visible.
        let _ = stop_metrics.send(());
        served
    })
}

fn push(args: PushArgs) -> Result<()> {
    if args.build {
        build(&args.manifest)?;
    }
    let app = manifest::load(&args.manifest)?;
    let annotations = args
        .annotations
        .iter()
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("--annotation `{a}`: expected KEY=VALUE"))
        })
        .collect::<Result<Vec<_>>>()?;
    let access = args.registry.access()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let pushed = runtime.block_on(oci::push(
        &app,
        &args.reference,
        &access,
        &annotations,
        |line| eprintln!("{line}"),
    ))?;
    println!("{}", pushed.pinned);
    Ok(())
}

/// Runs each component's `[component.*.build] command`, as `spin build` would.
fn build(manifest_path: &std::path::Path) -> Result<()> {
    let app = manifest::load_unchecked_sources(manifest_path)?;
    let base = manifest_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    for component in app.components.values() {
        let Some(command) = component
            .build
            .as_ref()
            .and_then(|b| b.get("command"))
            .and_then(|c| c.as_str())
        else {
            continue;
        };
        let workdir = component
            .build
            .as_ref()
            .and_then(|b| b.get("workdir"))
            .and_then(|w| w.as_str())
            .map_or(base.to_owned(), |w| base.join(w));
        eprintln!("building component `{}`: {command}", component.id);
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(&workdir)
            .status()
            .with_context(|| format!("cannot run the build command of `{}`", component.id))?;
        anyhow::ensure!(
            status.success(),
            "the build command of `{}` failed ({status})",
            component.id
        );
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot listen for SIGTERM: {e}");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
