//! The engine: turns stored pipeline specs into running stages and workers,
//! and is the one door the API goes through ([`Engine`]'s methods; its
//! fields are private).
//!
//! - [`lifecycle`]: start, picking up specs and tables changed elsewhere,
//!   building and installing pipelines, stopping them.
//! - [`catalog`]: plugins, pipeline specs and lookup tables, as the API asks.
//! - [`health`]: readiness, and keeping the last known catalog while the
//!   store lost it.
//! - [`data`]: ingest, the DLQ, outputs and metrics, as the API asks;
//!   [`window_data`]: window results, alerts and the live feed.
//! - [`worker`]: reading queue entries and the per-batch path: run the
//!   stages ([`chain`]), complete in the store (bounded retries), record.
//! - [`maintenance`]: promoting due retries, output retention, reclaiming a
//!   silent worker's entries.
//! - [`closer`]: closing windows and checking spike rules.
//! - [`sinks`]: one runner per sink of the spec (`crate::sinks`), each
//!   sink's lag (ingest's `max_sink_lag` check), `GET …/sinks`.
//! - [`spec`]: the pipeline spec, parsed and checked once.
//! - [`stats`]: process-local latency and throughput figures.
//!
//! May use: `domain`, `internal_events`, `runtime`, `sinks`, `store`, `window`.

mod catalog;
pub mod chain;
mod closer;
mod data;
mod health;
pub mod idempotency;
mod window_data;
mod lifecycle;
mod maintenance;
mod sinks;
pub mod spec;
pub mod stats;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use crate::internal_events::PipelineMetrics;
use crate::runtime::{MemoryTables, Runtime};
use crate::store::{Store, StoreError};
use crate::window::WindowSet;
use chain::ChainStage;
use spec::PipelineSpec;
use stats::Stats;

pub use data::{IngestTarget, PipelineReport};
pub use health::Readiness;
pub use sinks::{SinkGate, SinkStatus};
pub use window_data::{watermark_value, LiveCursor, LiveNews, WindowAnswer};

/// How the engine runs (per process).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Worker tasks per pipeline (each runs stages on its own blocking
    /// thread); 0: this process only serves the API.
    pub workers: usize,
    /// Queue entries one worker takes at a time.
    pub read_entries: usize,
    /// An entry pending this long with a silent worker is taken over.
    pub reclaim_idle_ms: u64,
    /// Identifies this process's consumers in the store.
    pub consumer_prefix: String,
    /// How often specs and tables changed elsewhere are picked up.
    pub sync_interval: Duration,
    /// How often the closer moves watermarks and emits closed windows (and
    /// spike rules are checked).
    pub window_tick: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let host = hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "host".into());
        EngineConfig {
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            read_entries: 8,
            reclaim_idle_ms: 30_000,
            consumer_prefix: format!("{host}-{}", std::process::id()),
            sync_interval: Duration::from_millis(500),
            window_tick: Duration::from_millis(200),
        }
    }
}

/// Why the engine refused or could not answer a request. The API maps each
/// to its status code.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No such pipeline, plugin, version, table or window (404).
    #[error("{0}")]
    NotFound(String),
    /// A window query that would read too much (400 `invalid_query`).
    #[error("{0}")]
    InvalidQuery(String),
    /// A pipeline spec that cannot be stored (400 `invalid_spec`).
    #[error("{0}")]
    InvalidSpec(String),
    /// Bytes that are not an acceptable stage component (400 `invalid_plugin`).
    #[error("{0}")]
    InvalidPlugin(String),
    /// The thing is in use (409), e.g. a plugin version a pipeline runs.
    #[error("{0}")]
    InUse(String),
    /// Stored data this process cannot read (500).
    #[error("{0}")]
    Unreadable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A pipeline as this process runs it: the spec and what was built from it.
pub(crate) struct Pipeline {
    pub(crate) id: String,
    /// The stored spec, versions resolved.
    pub(crate) spec: Arc<PipelineSpec>,
    pub(crate) stages: Arc<Vec<ChainStage>>,
    pub(crate) windows: Arc<WindowSet>,
    /// Metric handles, registered when the pipeline was built.
    pub(crate) metrics: Arc<PipelineMetrics>,
    /// The stages' names, in order (what per-batch stats are keyed by).
    pub(crate) stage_names: Vec<String>,
}

/// A stored spec as this process knows it: parsed once per change.
#[derive(Clone)]
struct KnownSpec {
    /// The stored text (to notice a change made elsewhere).
    json: String,
    /// The parsed spec, or why the stored text is unreadable.
    spec: Result<Arc<PipelineSpec>, String>,
}

/// The engine of one `sluice serve` process.
pub struct Engine {
    store: Arc<dyn Store>,
    runtime: Arc<Runtime>,
    tables: Arc<MemoryTables>,
    stats: Stats,
    config: EngineConfig,
    /// Pipelines running here (workers, or at least built stages).
    pipelines: RwLock<HashMap<String, lifecycle::Running>>,
    /// Every stored spec seen, parsed once per change.
    specs: RwLock<HashMap<String, KnownSpec>>,
    /// The store lost the catalog under this process and it was not
    /// restored yet ([`health`]): keep the last known pipelines.
    catalog_reset: AtomicBool,
}
