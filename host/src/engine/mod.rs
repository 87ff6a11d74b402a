//! The wasmtime lifecycle, owned in one place as spin-core's engine and store
//! builders own it: the engine's configuration (pooling allocator,
//! copy-on-write memory images, the compilation cache), the epoch ticker that
//! lives as long as the engine, the linker holding exactly the interfaces
//! ping-host implements, component loading ([`ComponentPre`]), and
//! [`Engine::new_store`], the only way to get a store, which installs the
//! limiter and the epoch deadline so no caller can forget either.
//!
//! Each generation of HTTP component gets its own wasmtime engine: WASIp2
//! ones (`wasi:http/incoming-handler@0.2.x`) an engine with wasmtime's
//! concurrency support off, exactly as before WASIp3 existed; WASIp3 ones
//! (`wasi:http/handler@0.3.0`, whose instances serve requests concurrently)
//! one with the async component model on, created only when an app has such
//! a component. With one engine for both (concurrency support
//! on), the WASIp2 path measured ~20 % fewer requests/s and ~30 % more CPU
//! per request at 64 connections (`bench/ab.py`, interleaved, on a busy
//! 2-core machine); with its own engine the difference is within the noise. [`ComponentPre::world`] tells which a
//! component is; the Wasm's exports decide, before anything is compiled.
//!
//! Compiling the ~200 KB component with Cranelift takes far longer than serving
//! thousands of requests, so it happens once per (Wasm, engine settings) and
//! later starts load the cached machine code. Each request then instantiates
//! from a pre-linked `InstancePre` into a pooled slot whose linear memory is
//! initialised copy-on-write, which costs microseconds.

mod component;
mod limits;
mod precompile;
mod state;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::component::Linker;
use wasmtime::{
    Cache, CacheConfig, Config, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
};
use wasmtime_wasi_http::WasiHttpView;

pub use self::component::{ComponentEnv, ComponentPre, World};
pub(crate) use self::limits::MemoryLimitExceeded;
pub use self::precompile::precompile;
pub use self::state::HostState;
use crate::spin;

/// How often the engine's epoch advances. A running guest yields to the async
/// runtime at every tick, so a guest that never returns cannot pin a worker
/// thread, and the request deadline (a timer) can stop it. The tick is short
/// because tokio polls for new I/O only every few dozen task polls: with
/// guests spinning in 10 ms slices, new connections waited up to ~0.6 s.
/// A ping request runs for tens of microseconds, so few ever reach a tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Engine sizing and caching.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Instances that may exist at once (the pool's size).
    pub max_instances: u32,
    /// Linear-memory limit of one instance, in bytes.
    pub max_memory: usize,
    /// Bytes of each pooled memory and table kept mapped between instances
    /// and reset by copying, instead of being unmapped and faulted in again.
    pub keep_resident: usize,
    /// Where compiled components are cached; `None` compiles at every start.
    pub cache_dir: Option<PathBuf>,
    /// A directory written by `ping-host precompile`: components load their
    /// machine code from it and are never compiled (see [`precompile()`]).
    pub precompiled: Option<PathBuf>,
}

impl EngineOptions {
    /// Default pool size (`--max-instances`).
    pub const DEFAULT_MAX_INSTANCES: u32 = 1000;
    /// Default linear-memory limit, MiB (`--max-instance-memory-mib`).
    pub const DEFAULT_MAX_MEMORY_MIB: usize = 256;
    /// Default keep-resident size, KiB (`--instance-keep-resident-kib`).
    pub const DEFAULT_KEEP_RESIDENT_KIB: usize = 256;
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_instances: Self::DEFAULT_MAX_INSTANCES,
            max_memory: Self::DEFAULT_MAX_MEMORY_MIB * 1024 * 1024,
            keep_resident: Self::DEFAULT_KEEP_RESIDENT_KIB * 1024,
            cache_dir: None,
            precompiled: None,
        }
    }
}

/// `ping-host up`'s engine flags.
#[derive(Debug, clap::Args)]
pub struct EngineArgs {
    /// The size of the instance pool: WASIp2 instances that may exist at
    /// once (running, and with --instance-reuse also idle ones, which are
    /// dropped when a request needs their place); for WASIp3 components,
    /// requests until their response starts.
    #[arg(long, default_value_t = EngineOptions::DEFAULT_MAX_INSTANCES)]
    pub max_instances: u32,
    /// Linear-memory limit of one instance, in MiB.
    #[arg(long, default_value_t = EngineOptions::DEFAULT_MAX_MEMORY_MIB)]
    pub max_instance_memory_mib: usize,
    /// KiB of each pooled instance's memory and tables kept mapped between requests.
    #[arg(long, default_value_t = EngineOptions::DEFAULT_KEEP_RESIDENT_KIB)]
    pub instance_keep_resident_kib: usize,
    /// Where compiled components (and pulled blobs) are cached [default: $XDG_CACHE_HOME/ping-host or ~/.cache/ping-host].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Compile every start instead of using the compilation cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Load components from this directory, written by `ping-host precompile`, instead of
    /// compiling them (for read-only file systems such as the container image).
    #[arg(long, value_name = "DIR")]
    pub precompiled: Option<PathBuf>,
}

impl EngineArgs {
    /// The cache directory: `--cache-dir`, else the default one.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.cache_dir.clone().or_else(default_cache_dir)
    }

    /// The options these flags choose.
    pub fn options(&self) -> EngineOptions {
        EngineOptions {
            max_instances: self.max_instances,
            max_memory: self.max_instance_memory_mib.saturating_mul(1024 * 1024),
            keep_resident: self.instance_keep_resident_kib.saturating_mul(1024),
            cache_dir: if self.no_cache {
                None
            } else {
                self.cache_dir()
            },
            precompiled: self.precompiled.clone(),
        }
    }
}

/// The default cache directory: `$XDG_CACHE_HOME/ping-host` or `~/.cache/ping-host`.
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("ping-host"))
}

/// The process's wasmtime engines (one per component generation), each with
/// its linker and epoch ticker.
pub struct Engine {
    p2: Flavor,
    /// Created with the first WASIp3 component.
    p3: OnceLock<Flavor>,
    opts: EngineOptions,
    precompiled: Option<PathBuf>,
}

/// Which generation of HTTP component, and so which engine runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Generation {
    /// `wasi:http/incoming-handler@0.2.x` (spin-sdk <= 5).
    P2,
    /// `wasi:http/handler@0.3.0` (spin-sdk 7).
    P3,
}

/// One wasmtime engine with its linker.
struct Flavor {
    stores: Stores,
    linker: Linker<HostState>,
}

impl Flavor {
    /// An engine for `generation`, with the pooling allocator where possible,
    /// and its epoch ticker.
    fn new(opts: &EngineOptions, generation: Generation) -> Result<Self> {
        let mut config = base_config(opts.cache_dir.as_deref(), generation);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool(opts)));
        let engine = match wasmtime::Engine::new(&config) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::warn!("pooling allocator unavailable ({e:#}); using on-demand allocation");
                wasmtime::Engine::new(&base_config(opts.cache_dir.as_deref(), generation))
                    .map_err(anyhow::Error::from)
                    .context("cannot create the wasmtime engine")?
            }
        };
        tick_epochs(&engine);
        Ok(Flavor {
            linker: linker(&engine, generation)?,
            stores: Stores {
                engine,
                max_memory: opts.max_memory,
            },
        })
    }
}

/// Makes stores: the engine and the per-instance memory cap. Cheap to clone,
/// for what creates instances on its own tasks (the WASIp3 instance workers).
#[derive(Clone)]
pub struct Stores {
    engine: wasmtime::Engine,
    max_memory: usize,
}

impl Stores {
    /// A store for one instance of `component`: fresh state, the memory limiter
    /// installed, and a yield to the async runtime at every epoch tick.
    pub fn new_store(&self, component: &ComponentPre) -> Store<HostState> {
        let mut store = Store::new(&self.engine, component.instance_state(self.max_memory));
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        store
    }
}

impl Engine {
    /// Builds the engine and starts its epoch ticker; falls back to on-demand
    /// allocation where the pool's virtual-memory reservation is not possible
    /// (for example under a low `ulimit -v`).
    pub fn new(opts: &EngineOptions) -> Result<Self> {
        Ok(Engine {
            p2: Flavor::new(opts, Generation::P2)?,
            p3: OnceLock::new(),
            opts: opts.clone(),
            precompiled: opts.precompiled.clone(),
        })
    }

    /// A store for one instance of `component`: fresh state, the memory limiter
    /// installed, and a yield to the async runtime at every epoch tick.
    pub fn new_store(&self, component: &ComponentPre) -> Store<HostState> {
        component.stores().new_store(component)
    }

    /// The engine for `generation`, the WASIp3 one created on first use.
    fn flavor(&self, generation: Generation) -> Result<&Flavor> {
        match generation {
            Generation::P2 => Ok(&self.p2),
            Generation::P3 => {
                if let Some(flavor) = self.p3.get() {
                    return Ok(flavor);
                }
                let flavor = Flavor::new(&self.opts, Generation::P3)?;
                Ok(self.p3.get_or_init(|| flavor))
            }
        }
    }
}

/// The pooling allocator sized for `max_instances` components.
fn pool(opts: &EngineOptions) -> PoolingAllocationConfig {
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
    pool
}

fn base_config(cache_dir: Option<&std::path::Path>, generation: Generation) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.memory_init_cow(true);
    match generation {
        // WASIp3 components (`wasi:http/handler@0.3.0`, spin-sdk 7) need the
        // async component model.
        Generation::P3 => config.wasm_component_model_async(true),
        // Off, the store keeps no state for concurrent calls: the WASIp2
        // path costs what it did before WASIp3 support.
        Generation::P2 => config.concurrency_support(false),
    };
    // Lets a running guest be interrupted: see `EPOCH_TICK`.
    config.epoch_interruption(true);
    if let Some(dir) = cache_dir {
        match compilation_cache(dir) {
            Ok(cache) => {
                config.cache(Some(cache));
            }
            Err(e) => tracing::warn!(
                dir = %dir.display(),
                "compilation cache unavailable ({e:#}); compiling at every start"
            ),
        }
    }
    config
}

/// wasmtime's own compilation cache (keyed by the Wasm and every engine
/// setting, with its own eviction) in `dir/compiled`, readable by this user only.
///
/// It replaced a hand-written cache that mmapped uncompressed `.cwasm` files.
/// Measured on 2 cores, start to first `/.well-known/spin/health` answer with
/// the ping component, 15 warm starts each: 9.3 ms median with the hand-written
/// cache, 13 ms with wasmtime's (it stores zstd-compressed entries: 236 KiB
/// instead of 607 KiB); compiling without a cache takes 165 ms. Both are far
/// inside the 100 ms cold-start goal, so the maintained library wins.
fn compilation_cache(dir: &std::path::Path) -> Result<Cache> {
    let dir = std::path::absolute(dir.join("compiled"))?;
    std::fs::create_dir_all(&dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let mut config = CacheConfig::new();
    config.with_directory(dir);
    Ok(Cache::new(config)?)
}

/// A linker for `generation`: WASI 0.2, `wasi:http` 0.2 and the 2.0.0 Spin
/// interfaces; for WASIp3 also WASI 0.3, `wasi:http` 0.3 and the 3.0.0 Spin
/// interfaces (a WASIp3 component built for `wasm32-wasip2` imports WASI 0.2
/// too, from Rust's standard library).
fn linker(engine: &wasmtime::Engine, generation: Generation) -> Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    spin::redis::add_to_linker(&mut linker, HostState::redis_view)?;
    spin::variables::add_to_linker(&mut linker, HostState::variables_view)?;
    if generation == Generation::P3 {
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
        spin::redis::add_v3_to_linker(&mut linker, HostState::redis_view)?;
        spin::variables::add_v3_to_linker(&mut linker, HostState::variables_view)?;
    }
    Ok(linker)
}

/// `HostState`'s `wasi:http` view as a plain function, for the WASIp3 workers.
pub fn http_view(state: &mut HostState) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
    state.http()
}

/// Advances `engine`'s epoch every [`EPOCH_TICK`] for as long as the engine
/// lives: the thread holds only a weak handle, so it stops when the engine goes.
fn tick_epochs(engine: &wasmtime::Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the epoch ticker ({e}); guests cannot be interrupted");
    }
}
