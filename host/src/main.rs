//! `ping-host`: run a Spin HTTP app locally, the way `spin up` would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use ping_host::engine::{EngineOptions, default_cache_dir};
use ping_host::redis::Timeouts;
use ping_host::server::{Runtime, Settings};
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
    /// Serve the app described by a Spin manifest.
    Up(UpArgs),
}

#[derive(Args)]
struct UpArgs {
    /// The Spin manifest (spin.toml) to run.
    #[arg(short = 'f', long = "manifest", default_value = "spin.toml")]
    manifest: PathBuf,
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
    #[arg(long, default_value_t = 1000)]
    max_instances: u32,
    /// Linear-memory limit of one instance, in MiB.
    #[arg(long, default_value_t = 128)]
    max_instance_memory_mib: usize,
    /// Redis connect timeout, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    redis_connect_timeout_ms: u64,
    /// Redis command timeout, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    redis_response_timeout_ms: u64,
    /// How long shutdown waits for in-flight requests, in seconds.
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
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
    }
}

fn up(args: UpArgs) -> Result<()> {
    let app = manifest::load(&args.manifest)?;
    let vars =
        variables::Resolved::resolve(&app.variables, &args.variables, |k| std::env::var(k).ok())?;
    let settings = Settings {
        engine: EngineOptions {
            max_instances: args.max_instances,
            max_memory: args.max_instance_memory_mib.saturating_mul(1024 * 1024),
        },
        cache_dir: if args.no_cache {
            None
        } else {
            args.cache_dir.or_else(default_cache_dir)
        },
        redis: Timeouts {
            connect: Duration::from_millis(args.redis_connect_timeout_ms),
            response: Duration::from_millis(args.redis_response_timeout_ms),
        },
        drain: Duration::from_secs(args.drain_secs),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let started = std::time::Instant::now();
        let app_runtime = Arc::new(Runtime::new(&app, &vars, &settings)?);
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let local = listener.local_addr()?;
        for (route, component) in app_runtime.routes() {
            tracing::info!(route, component, "route");
        }
        tracing::info!(app = %app.name, ready_in = ?started.elapsed(), "serving on http://{local}");
        app_runtime
            .serve(listener, shutdown_signal(), settings.drain)
            .await
    })
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
