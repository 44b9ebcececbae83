//! Sluice: a streaming event pipeline whose stages are sandboxed
//! WebAssembly components.
//!
//! - [`domain`]: the types every layer passes around (at the bottom).
//! - [`runtime`]: the sandbox that runs stage plugins.
//! - [`event`]: the event type shared by every layer.
//! - [`metrics`]: every log line and metric, from one place.
//! - [`window`]: windowed aggregations over event time.
//! - [`cli`]: the `sluice` command.

pub mod api;
pub mod cli;
pub mod domain;
pub mod engine;
pub mod event;
pub mod metrics;
pub mod runtime;
pub mod store;
pub mod window;
