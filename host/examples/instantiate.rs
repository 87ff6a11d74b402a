//! Micro-benchmark: how long a fresh instance of the ping component takes,
//! store creation included, the way ping-host creates one per request.
//!
//! `cargo run --release -p ping-host --example instantiate [-- N]` prints JSON
//! with the mean, p50 and p99 in microseconds.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use ping_host::engine::{self, EngineOptions};
use ping_host::metrics::Metrics;
use ping_host::outbound::AllowedHosts;
use ping_host::redis::{RedisPool, Timeouts};
use ping_host::state::HostState;
use ping_host::variables::ComponentVariables;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let n: usize = std::env::args().nth(1).map_or(Ok(20_000), |s| s.parse())?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = std::fs::read(root.join("target/wasm32-wasip2/wasm/ping_component.wasm"))?;
    let options = EngineOptions::default();
    let engine = engine::engine(&options)?;
    let linker = engine::linker(&engine)?;
    let component = engine::load_component(&engine, &wasm, engine::default_cache_dir().as_deref())?;
    let pre = ProxyPre::new(linker.instantiate_pre(&component)?)?;
    let pool = Arc::new(RedisPool::new(
        Timeouts::default(),
        Arc::new(Metrics::new(options.max_instances)),
    ));
    let allowed = Arc::new(AllowedHosts::default());
    let variables = Arc::new(ComponentVariables::default());

    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let state = HostState::new(
            "ping".into(),
            pool.clone(),
            allowed.clone(),
            variables.clone(),
            options.max_memory,
        );
        let mut store = Store::new(&engine, state);
        store.limiter(|s| &mut s.limits);
        // Epoch interruption is on (see engine.rs); nothing advances the epoch here.
        store.set_epoch_deadline(1);
        let _proxy = pre.instantiate_async(&mut store).await?;
        samples.push(started.elapsed().as_nanos() as f64 / 1000.0);
        drop(store);
    }
    samples.sort_by(f64::total_cmp);
    let mean = samples.iter().sum::<f64>() / n as f64;
    let pct = |p: f64| samples[((n as f64 * p) as usize).min(n - 1)];
    println!(
        "{{\"instances\":{n},\"mean_us\":{mean:.2},\"p50_us\":{:.2},\"p99_us\":{:.2}}}",
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}
