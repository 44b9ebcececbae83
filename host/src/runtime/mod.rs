//! The sandbox: wasmtime with the component model, running stage plugins
//! under per-stage fuel, memory, time and output limits.
//!
//! - [`Runtime`] owns the engine, the linker and the compiled-plugin cache.
//! - [`Plugin`] is a validated, compiled component, pre-instantiated.
//! - [`StageRunner`] runs batches of events through one plugin with one
//!   config, pooling instances and isolating poison events.

mod cache;
mod guest_log;
mod imports;
mod instance;
mod limits;
mod outcome;
mod plugin;
mod report;
mod sandbox;
mod stage;
mod tables;
mod waits;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use parking_lot::Mutex;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use imports::{HOST_INTERFACE, HOST_INTERFACES, MAX_BATCH_OUTPUT_BYTES};
pub use limits::StageLimits;
pub use outcome::{EventResult, FailureKind, Outcome};
pub use plugin::{sha256_hex, Plugin, PluginError};
pub use sandbox::Attribution;
pub use stage::{BatchReport, StageRunner, StageSetupError, StageSpec};
pub use tables::{LookupTables, MemoryTables, NoTables};

use sandbox::StoreState;

/// Engine-wide settings (per-stage limits are in [`StageLimits`]).
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled plugins are cached by content hash, each artifact
    /// verified before it is loaded (`None`: memory only).
    pub cache_dir: Option<PathBuf>,
    /// The wasm stack limit for every call, bytes. Engine-wide in wasmtime.
    pub max_wasm_stack: usize,
    /// Live stage instances the pooling allocator has room for.
    pub max_instances: u32,
    /// Hand batches to `process-packed` where a component exports it (true,
    /// the fast way); false calls `process` where a component exports that
    /// too (only components built against `sluice:stage@0.1.0` do; tests use
    /// it to check that path). A component exporting only `process-packed`
    /// (every `sluice:stage@0.2.0` one) is always called packed.
    pub packed_batches: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig { cache_dir: None, max_wasm_stack: 512 * 1024, max_instances: 256, packed_batches: true }
    }
}

/// The wasmtime engine, linker and plugin cache, shared by every stage.
pub struct Runtime {
    engine: Engine,
    linker: Linker<StoreState>,
    config: RuntimeConfig,
    plugins: Mutex<HashMap<String, Arc<Plugin>>>,
    /// The verified on-disk cache (`None`: memory only, or the directory
    /// or its key could not be used).
    disk_cache: Option<cache::VerifiedCache>,
    ticker: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .concurrency_support(false)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_wasm_stack)
            .parallel_compilation(true);
        let mut pool = PoolingAllocationConfig::default();
        let n = config.max_instances;
        pool.total_component_instances(n)
            .total_core_instances(n * 16)
            .total_memories(n * 2)
            .total_tables(n * 16)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_memory_size(limits::MAX_MEMORY_MB as usize * 1024 * 1024);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(anyhow::Error::from).context("creating the wasmtime engine")?;
        let linker = imports::build_linker(&engine).map_err(anyhow::Error::from).context("linking the host interface")?;

        let disk_cache = config.cache_dir.as_deref().and_then(|dir| match cache::VerifiedCache::open(dir, &engine) {
            Ok(cache) => Some(cache),
            Err(e) => {
                report::cache_problem(dir, "compiled plugins are not cached on disk", &format!("{e:#}"));
                None
            }
        });
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("sluice-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(imports::EPOCH_TICK_MS));
                        engine.increment_epoch();
                        sandbox::tick_coarse_clock();
                    }
                })
                .context("starting the epoch ticker")?
        };
        Ok(Runtime { engine, linker, config, plugins: Mutex::new(HashMap::new()), disk_cache, ticker: Some((stop, ticker)) })
    }

    /// Validates and compiles component bytes (or answers the cached plugin
    /// with the same content hash).
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<Plugin>, PluginError> {
        let sha256 = sha256_hex(bytes);
        if let Some(plugin) = self.plugins.lock().get(&sha256) {
            return Ok(plugin.clone());
        }
        let component = plugin::compile(&self.engine, self.disk_cache.as_ref(), bytes, &sha256)?;
        let plugin = Arc::new(plugin::prepare(&self.engine, &self.linker, &component, sha256.clone(), bytes.len(), self.config.packed_batches)?);
        self.plugins.lock().insert(sha256, plugin.clone());
        Ok(plugin)
    }

    /// Forgets a compiled plugin (its cache file stays for a quick reload).
    pub fn unload(&self, sha256: &str) {
        self.plugins.lock().remove(sha256);
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.ticker.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = handle.join();
        }
    }
}
