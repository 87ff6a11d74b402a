//! `ping-host`: run a Spin HTTP app locally, the way `spin up` would.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ping_host::engine::EngineArgs;
use ping_host::http::threads::{self, Threads};
use ping_host::http::{HttpArgs, HttpServer, Settings, metrics_endpoint};
use ping_host::oci::{self, Access};
use ping_host::spin::redis::{RedisArgs, Timeouts};
use ping_host::{manifest, variables};

/// The process's allocator: mimalloc (microsoft/mimalloc v3, through the
/// `mimalloc` crate) instead of the C library's `malloc`.
///
/// Why: a request allocates and frees hundreds of small objects (the store
/// and its WASI contexts, header maps, hyper's and redis-rs's buffers), and
/// the container image's ping-host is a static musl binary, whose allocator
/// is slow at exactly that. Measured on 2 cores, the two builds serving
/// `/ping` at the same time, each loaded by its own `oha -c 32 -q 5500`, six
/// 5-s rounds (CPU is ping-host's own per request): the musl build 148 → 108
/// µs per request, p50 2.42 → 1.26 ms, p99 13.1 → 6.6 ms, lower in every
/// round; at full rate (alternating, `-c 64`) 15.1k → 21.7k req/s. The glibc
/// build: 105 → 101 µs, lower in all six rounds.
///
/// Built with `no_thp`: mimalloc otherwise asks for transparent huge pages
/// on its arenas (`MADV_HUGEPAGE`), which put 24 MB more in RSS at idle (49
/// against 25 MB) and 23 MB more after 256 connections (102 against 79 MB;
/// glibc's malloc: 22 and 75 MB), for no measurable CPU gain (four paired
/// rounds: within 0.2 µs per request). A build-time choice on purpose:
/// mimalloc's run-time `allow_thp` off would disable huge pages for the
/// whole process (`PR_SET_THP_DISABLE`), wasmtime's memories included.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ping-host",
    version,
    about = "A Spin-compatible local runtime for the ping component"
)]
struct Cli {
    /// Log format: `text` (plain unless standard error is a terminal) or `json`.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the app described by a Spin manifest, or pulled from a registry.
    Up(Box<UpArgs>),
    /// Push the app as a Spin OCI artifact, as `spin registry push` does.
    Push(PushArgs),
    /// Compile the app's components ahead of time, for `up --precompiled DIR`.
    Precompile(PrecompileArgs),
}

#[derive(Args)]
struct PrecompileArgs {
    /// The Spin manifest of the app to compile.
    #[arg(short = 'f', long = "manifest", default_value = "spin.toml")]
    manifest: PathBuf,
    /// Where to write `<sha256 of the Wasm>.cwasm` for each component.
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
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
    /// Set application variables: NAME=VALUE, NAME=@FILE (the file's bytes), or @FILE.toml / @FILE.json (many).
    /// Takes precedence over SPIN_VARIABLE_<NAME> and the manifest default.
    #[arg(long = "variable", value_name = "NAME=VALUE")]
    variables: Vec<String>,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    redis: RedisArgs,
}

/// How log lines are written.
#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines; coloured only when standard error is a terminal.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Up(args) => up(*args),
        Command::Push(args) => push(args),
        Command::Precompile(args) => precompile(args),
    }
}

/// Logs go to standard error, filtered by `RUST_LOG` (default `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn up(args: UpArgs) -> Result<()> {
    // This runtime loads the app, serves metrics and waits for the shutdown
    // signal; requests are served by `http::threads`, one runtime per thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (app, image_digest) = runtime.block_on(load_app(&args))?;
    // Spin 3.6: SPIN_VARIABLE_* from the environment, else from ./.env.
    let dotenv = variables::DotEnv::load(std::path::Path::new(".env"))?;
    let env = |k: &str| std::env::var(k).ok().or_else(|| dotenv.get(k));
    let vars = variables::Resolved::resolve(&app.variables, &args.variables, env)?;
    let settings = Settings {
        engine: args.engine.options(),
        redis: Timeouts::from(&args.redis),
        limits: args.http.limits(),
        reuse: args.http.reuse(),
        image_digest,
    };
    runtime.block_on(async move {
        let started = std::time::Instant::now();
        let server = Arc::new(HttpServer::new(&app, &vars, &settings)?);
        let listeners = threads::bind(args.http.listen, args.http.threads())?;
        let local = listeners[0].local_addr()?;
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some(addr) = args.http.metrics_listen {
            let metrics_listener = bind(addr, "--metrics-listen").await?;
            tracing::info!(
                "metrics on http://{}/metrics",
                metrics_listener.local_addr()?
            );
            let stopped = async move {
                let _ = metrics_stopped.await;
            };
            tokio::spawn(metrics_endpoint::serve(
                server.metrics(),
                metrics_listener,
                stopped,
            ));
        }
        for (route, component) in server.routes() {
            tracing::info!(route, component, "route");
        }
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let serving = Threads::start(server, listeners, stopping, args.http.drain())?;
        tracing::info!(app = %app.name, ready_in = ?started.elapsed(), threads = args.http.threads(), "serving on http://{local}");
        shutdown_signal().await;
        let _ = stop.send(true);
        let served = serving.finished().await;
        // Metrics stay up while requests drain, so the drain itself is visible.
        let _ = stop_metrics.send(());
        served
    })
}

/// The app from `--manifest`, or pulled from `--from-registry` (with its digest).
async fn load_app(args: &UpArgs) -> Result<(ping_host::app::App, Option<String>)> {
    let Some(reference) = &args.from_registry else {
        return Ok((manifest::load(&args.manifest)?, None));
    };
    let access = args.registry.access()?;
    let blobs = args
        .engine
        .cache_dir()
        .context("no cache directory for pulled blobs: pass --cache-dir")?;
    let pulled = oci::pull(reference, &access, &blobs).await?;
    tracing::info!(reference, digest = %pulled.digest, "pulled");
    Ok((pulled.app, Some(pulled.digest)))
}

async fn bind(addr: SocketAddr, flag: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("{flag}: cannot listen on {addr}"))
}

fn precompile(args: PrecompileArgs) -> Result<()> {
    let app = manifest::load(&args.manifest)?;
    let opts = ping_host::engine::EngineOptions::default();
    for (id, path) in ping_host::engine::precompile(&app, &opts, &args.out_dir)? {
        println!("{id}\t{}", path.display());
    }
    Ok(())
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
