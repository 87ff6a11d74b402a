//! The wasmtime side: one `Engine` per process with the pooling allocator,
//! compiled components cached on disk, and a `Linker` holding exactly the
//! interfaces ping-host implements.
//!
//! Compiling the ~200 KB component with Cranelift takes far longer than serving
//! thousands of requests, so it happens once per (Wasm digest, engine settings)
//! and later starts deserialize the cached machine code. Each request then
//! instantiates from a pre-linked `InstancePre` into a pooled slot whose linear
//! memory is initialised copy-on-write, which costs microseconds.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings;
use crate::redis::RedisHost;
use crate::state::{HostState, VariablesHost};

/// Engine sizing.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Instances that may exist at once (the pool's size).
    pub max_instances: u32,
    /// Linear-memory limit of one instance, in bytes.
    pub max_memory: usize,
    /// Bytes of each pooled memory and table kept mapped between instances
    /// and reset by copying, instead of being unmapped and faulted in again.
    pub keep_resident: usize,
}

/// The defaults, shared by `EngineOptions::default` and `ping-host up`'s flags.
pub const DEFAULT_MAX_INSTANCES: u32 = 1000;
pub const DEFAULT_MAX_MEMORY_MIB: usize = 256;
pub const DEFAULT_KEEP_RESIDENT_KIB: usize = 256;

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_instances: DEFAULT_MAX_INSTANCES,
            max_memory: DEFAULT_MAX_MEMORY_MIB * 1024 * 1024,
            keep_resident: DEFAULT_KEEP_RESIDENT_KIB * 1024,
        }
    }
}

/// Builds the engine; falls back to on-demand allocation where the pool's
/// virtual-memory reservation is not possible (for example under a low `ulimit -v`).
pub fn engine(opts: &EngineOptions) -> Result<Engine> {
    let mut config = base_config();
    let mut pool = PoolingAllocationConfig::default();
    let n = opts.max_instances;
    pool.total_component_instances(n)
        // A component holds a few core instances (its module plus the
        // canonical-ABI shims) and up to two memories and several tables.
        .total_core_instances(n.saturating_mul(4))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(4))
        .total_stacks(n)
        .max_memory_size(opts.max_memory)
        // Unmapping a slot's pages on every reuse costs a page fault per touched
        // page on the next request and, on a multi-threaded host, TLB-shootdown
        // IPIs to every core: the largest cost per request in profiles (~27 % of
        // CPU). Keeping the first 256 KiB mapped and resetting it by copying
        // covers everything the ping component touches (its stack is 64 KiB, see
        // .cargo/config.toml) and took GET / from ~8k to ~18k req/s on 2 cores.
        .linear_memory_keep_resident(opts.keep_resident)
        .table_keep_resident(opts.keep_resident);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&config) {
        Ok(engine) => Ok(engine),
        Err(e) => {
            tracing::warn!("pooling allocator unavailable ({e:#}); using on-demand allocation");
            Engine::new(&base_config())
                .map_err(anyhow::Error::from)
                .context("cannot create the wasmtime engine")
        }
    }
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.memory_init_cow(true);
    // Lets a running guest be interrupted: see `server::EPOCH_TICK`.
    config.epoch_interruption(true);
    config
}

/// A linker with WASI 0.2, `wasi:http` and the Spin interfaces.
pub fn linker(engine: &Engine) -> Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    bindings::redis::add_to_linker::<_, RedisHost>(&mut linker, HostState::redis_view)?;
    bindings::variables::add_to_linker::<_, VariablesHost>(&mut linker, HostState::variables_view)?;
    Ok(linker)
}

/// Hex sha256 of `bytes`: the content address used for caching (and by OCI).
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Feeds `Hash` output into sha256, so the engine's compatibility hash gives a
/// stable cache key (std's `DefaultHasher` output may change between releases).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0 // unused: the digest is read from the inner state
    }
}

/// The file a compiled `wasm` is cached under: its digest plus the engine's
/// compatibility hash, so a changed component or a changed engine misses.
pub fn cache_path(engine: &Engine, dir: &Path, wasm: &[u8]) -> PathBuf {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let engine_hash = format!("{:x}", hasher.0.finalize());
    dir.join(format!("{}-{}.cwasm", sha256_hex(wasm), &engine_hash[..16]))
}

/// Compiles `wasm`, or loads its compiled form from `cache_dir`.
pub fn load_component(engine: &Engine, wasm: &[u8], cache_dir: Option<&Path>) -> Result<Component> {
    let Some(dir) = cache_dir else {
        return Component::new(engine, wasm)
            .map_err(anyhow::Error::from)
            .context("cannot compile the component");
    };
    let path = cache_path(engine, dir, wasm);
    if path.is_file() {
        // SAFETY: the file was written by `precompile_component` of an engine
        // with the same compatibility hash (it is in the name), into a cache
        // directory only this user can write.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => {
                tracing::debug!(path = %path.display(), "compiled component loaded from cache");
                return Ok(component);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unusable cache entry: {e:#}")
            }
        }
    }
    let compiled = engine
        .precompile_component(wasm)
        .map_err(anyhow::Error::from)
        .context("cannot compile the component")?;
    if let Err(e) = write_cache(dir, &path, &compiled) {
        tracing::warn!(dir = %dir.display(), "cannot write the compilation cache: {e:#}");
    }
    // SAFETY: `compiled` was produced just now by this very engine.
    unsafe { Component::deserialize(engine, &compiled) }
        .map_err(anyhow::Error::from)
        .context("cannot load the compiled component")
}

/// Writes atomically (temp file, then rename), so a crash never leaves a
/// half-written entry that a later start would try to load.
fn write_cache(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The default cache directory: `$XDG_CACHE_HOME/ping-host` or `~/.cache/ping-host`.
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("ping-host"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "(component)";

    #[test]
    fn cache_key_changes_with_the_wasm() {
        let engine = Engine::default();
        let dir = Path::new("/c");
        let a = cache_path(&engine, dir, b"a");
        assert_eq!(a, cache_path(&engine, dir, b"a"));
        assert_ne!(a, cache_path(&engine, dir, b"b"));
    }

    #[test]
    fn second_load_comes_from_the_cache_and_corrupt_entries_are_replaced() {
        let engine = engine(&EngineOptions {
            max_instances: 4,
            ..Default::default()
        })
        .expect("engine");
        let wasm = wat::parse_str(EMPTY).expect("wat");
        let dir = tempfile::tempdir().expect("tempdir");
        load_component(&engine, &wasm, Some(dir.path())).expect("compiles");
        let path = cache_path(&engine, dir.path(), &wasm);
        let written = std::fs::metadata(&path)
            .expect("cache entry written")
            .modified()
            .expect("mtime");
        load_component(&engine, &wasm, Some(dir.path())).expect("loads");
        assert_eq!(
            std::fs::metadata(&path)
                .expect("entry")
                .modified()
                .expect("mtime"),
            written
        );

        std::fs::write(&path, b"garbage").expect("corrupt it");
        load_component(&engine, &wasm, Some(dir.path())).expect("recompiles");
        assert_ne!(std::fs::read(&path).expect("entry"), b"garbage");
    }
}
