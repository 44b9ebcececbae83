//! Sluice: a streaming event pipeline whose stages are sandboxed
//! WebAssembly components.
//!
//! - [`runtime`]: the sandbox that runs stage plugins.
//! - [`event`]: the event type shared by every layer.
//! - [`metrics`]: every log line and metric, from one place.
//! - [`window`]: windowed aggregations over event time.
//! - [`cli`]: the `sluice` command.

pub mod api;
pub mod cli;
pub mod engine;
pub mod event;
pub mod metrics;
pub mod runtime;
pub mod store;
pub mod window;
