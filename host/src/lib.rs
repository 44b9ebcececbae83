//! Sluice: a streaming event pipeline whose stages are sandboxed
//! WebAssembly components.
//!
//! The layers, bottom up (a module uses only those below it):
//! - [`domain`]: the types every layer passes around (events, queued
//!   events, DLQ entries, entry results, window state); imports nothing.
//! - [`internal_events`]: every log line and metric, as typed events.
//! - [`runtime`]: the sandbox that runs stage plugins.
//! - [`store`]: durable state, by capability, on Redis or embedded (redb).
//! - [`window`]: windowed aggregations over event time.
//! - [`sinks`]: delivering outputs and window results to Postgres, HTTP,
//!   NATS (uses `store`, and the plain spec types of `engine::spec`).
//! - [`engine`]: pipelines, workers, the closer, sink runners; the API's one door.
//! - [`api`]: the HTTP API of API.md.
//! - [`cli`]: the `sluice` command.

pub mod api;
pub mod cli;
pub mod domain;
pub mod engine;
pub mod internal_events;
pub mod runtime;
pub mod sinks;
pub mod store;
pub mod window;
