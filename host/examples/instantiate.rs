//! Micro-benchmark: how long a fresh instance of the ping component takes,
//! store creation included, the way ping-host creates one per request.
//!
//! `cargo run --release -p ping-host --example instantiate [-- N]` prints JSON
//! with the mean, p50 and p99 in microseconds.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use ping_host::allowed_hosts::AllowedHosts;
use ping_host::app::Source;
use ping_host::engine::{ComponentEnv, Engine, EngineOptions, default_cache_dir};
use ping_host::metrics::Metrics;
use ping_host::spin::redis::{SharedConnections, Timeouts};
use ping_host::variables::ComponentVariables;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let n: usize = std::env::args().nth(1).map_or(Ok(20_000), |s| s.parse())?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = root.join("target/wasm32-wasip2/wasm/ping_component.wasm");
    let options = EngineOptions {
        cache_dir: default_cache_dir(),
        ..EngineOptions::default()
    };
    let engine = Engine::new(&options)?;
    let env = ComponentEnv {
        variables: Arc::new(ComponentVariables::default()),
        allowed: Arc::new(AllowedHosts::default()),
        redis: Arc::new(SharedConnections::new(
            Timeouts::default(),
            Arc::new(Metrics::new(options.max_instances)),
        )),
        environment: Vec::new().into(),
    };
    let component = engine.link("ping", &Source::File(wasm), env)?;

    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        // The epoch ticker runs, as in ping-host: a store yields at each tick.
        let mut store = engine.new_store(&component);
        let _proxy = component.pre().instantiate_async(&mut store).await?;
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
