//! Durable state: the catalog (plugins, pipeline specs, lookup tables), each
//! pipeline's queue, retries, dead letter queue, outputs, counters and
//! window state.
//!
//! One small trait per capability ([`PluginCatalog`], [`PipelineCatalog`],
//! [`TableCatalog`], [`Queue`], [`DeadLetters`], [`Outputs`],
//! [`WindowState`], [`Alerts`], [`SinkState`], [`Health`]); [`Store`] is all of them, so
//! `Arc<dyn Store>` is the handle the rest of the host passes around. Bring
//! the methods into scope with `use crate::store::prelude::*;`.
//!
//! Two backends: [`redis::RedisStore`] (production, scale-out: several
//! `sluice serve` processes share one Redis) and [`embedded::EmbeddedStore`]
//! (a redb file, the default: nothing else to install, nothing accepted lost
//! on restart). Each is a folder with one file per capability; the rules
//! both share (DLQ id de-duplication, the replay chunk, the JSON arrays a
//! queue entry and an output batch are stored as, what a bad cursor is) live
//! once in [`shared`]. The same conformance suite
//! (`host/tests/store_conformance.rs`, `host/tests/store_windows.rs`) runs
//! against both.
//!
//! The queue holds *chunks*: one entry per ingest request (or retry/replay
//! group), carrying many events. Workers read, process and complete whole
//! entries; completion is atomic per entry and idempotent, so an entry
//! redelivered after a crash never duplicates an output.
//!
//! May use: `crate::domain` and external crates, nothing else of the crate.

#![warn(missing_docs)]

pub mod catalog;
pub mod dlq;
pub mod embedded;
pub mod outputs;
pub mod queue;
pub mod redis;
pub mod shared;
pub mod sinks;
pub mod windows;

use async_trait::async_trait;

use crate::domain::StoreHealth;

pub use catalog::{PipelineCatalog, PluginCatalog, TableCatalog};
pub use dlq::DeadLetters;
pub use outputs::Outputs;
pub use queue::Queue;
pub use sinks::SinkState;
pub use windows::{Alerts, WindowState};

/// Every store trait, for `use crate::store::prelude::*;` where store
/// methods are called (trait methods need their trait in scope).
pub mod prelude {
    pub use super::{Alerts, DeadLetters, Health, Outputs, PipelineCatalog, PluginCatalog, Queue, SinkState, Store, TableCatalog, WindowState};
}

/// Errors from a store. `Unavailable` maps to HTTP 503 with `Retry-After`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached (connection refused, timeout, I/O).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A paging cursor the store did not hand out (the text given): the
    /// caller's mistake, not the store's.
    #[error("invalid cursor {0:?}")]
    InvalidCursor(String),
    /// Anything else (corrupt data, a bug): 500.
    #[error("store error: {0}")]
    Internal(String),
}

/// What every store method answers.
pub type StoreResult<T> = Result<T, StoreError>;

/// Whether the backend answers, what it keeps, and whether the catalog is
/// still the one this process knows.
#[async_trait]
pub trait Health: Send + Sync {
    /// Whether the backend answers.
    async fn ping(&self) -> StoreResult<()>;
    /// The store's persistence, eviction policy and catalog marker
    /// (`/readyz` and the start-up check). Errors only when the store does
    /// not answer.
    async fn health(&self) -> StoreResult<StoreHealth>;
    /// Makes the catalog marker this process checks: writes one when the
    /// store has none (first use, or after the store lost everything) and
    /// adopts whichever is there. Called at connect, and by the engine once
    /// the catalog it knew is back after a reset.
    async fn adopt_catalog(&self) -> StoreResult<()>;
}

/// The whole store interface: every capability. Implemented for any type
/// that has them all. Every method is one atomic step.
pub trait Store:
    Health + PluginCatalog + PipelineCatalog + TableCatalog + Queue + DeadLetters + Outputs + WindowState + Alerts + SinkState + Send + Sync + 'static
{
}

impl<T> Store for T where
    T: Health + PluginCatalog + PipelineCatalog + TableCatalog + Queue + DeadLetters + Outputs + WindowState + Alerts + SinkState + Send + Sync + 'static
{
}
