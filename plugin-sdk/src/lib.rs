//! # The Sluice stage SDK
//!
//! A Sluice stage is a WebAssembly component that transforms events. With
//! this crate an author writes one trait impl and one macro call; the batch
//! loop, the WIT bindings and the JSON handling of `data` are the SDK's.
//!
//! ```
//! use sluice_sdk::{Context, Emit, Event, Stage, StageError};
//! use serde::Deserialize;
//!
//! /// Drops events whose `data.status` is in a configured list.
//! pub struct DropStatus { codes: Vec<i64> }
//!
//! #[derive(Deserialize, Default)]
//! #[serde(default)]
//! pub struct Config { codes: Vec<i64> }
//!
//! impl Stage for DropStatus {
//!     type Config = Config;
//!     fn init(config: Config) -> Result<Self, String> {
//!         if config.codes.is_empty() {
//!             return Err("config.codes must list at least one status".into());
//!         }
//!         Ok(DropStatus { codes: config.codes })
//!     }
//!     fn process(&self, event: &mut Event, _ctx: &Context) -> Result<Emit, StageError> {
//!         match event.get::<i64>("data.status") {
//!             Some(code) if self.codes.contains(&code) => Ok(Emit::Drop),
//!             Some(_) => Ok(Emit::Pass),
//!             None => Err(StageError::rejected("data.status is missing or not a number")),
//!         }
//!     }
//! }
//!
//! // In the plugin crate (built for wasm32-wasip2) this line exports it:
//! sluice_sdk::export_stage!(DropStatus);
//!
//! // The same stage runs natively too, which is how you unit-test it:
//! let stage = sluice_sdk::native::init::<DropStatus>(r#"{"codes": [404]}"#).unwrap();
//! let events = vec![
//!     Event::from_parts("a".into(), "hit".into(), "".into(), 0, r#"{"status":404}"#.into()),
//!     Event::from_parts("b".into(), "hit".into(), "".into(), 0, r#"{"status":200}"#.into()),
//! ];
//! let results = sluice_sdk::native::run(&stage, &Context::default(), events);
//! assert!(matches!(results[0], sluice_sdk::native::Result::Dropped));
//! assert!(matches!(results[1], sluice_sdk::native::Result::Kept));
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` and upload
//! `target/wasm32-wasip2/release/<crate>.wasm` to Sluice.

#[cfg(any(test, all(feature = "caching-allocator", target_arch = "wasm32", not(target_feature = "atomics"))))]
mod alloc;
mod event;
pub mod host;
mod json;
pub mod native;
pub mod scan;

// Allocation is a large share of a stage's work in WebAssembly (see
// `alloc.rs`); the `caching-allocator` feature (on by default) installs the
// SDK's allocator in the guest. Turn default features off to bring your own.
#[cfg(all(feature = "caching-allocator", target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: alloc::CachingAllocator = alloc::CachingAllocator::new();

/// Tells the SDK's allocator whether the host is lowering a call's arguments
/// (true between export calls), so it serves them from its arena.
#[cfg(target_arch = "wasm32")]
fn lowering(active: bool) {
    #[cfg(all(feature = "caching-allocator", not(target_feature = "atomics")))]
    ALLOCATOR.lowering(active);
    #[cfg(not(all(feature = "caching-allocator", not(target_feature = "atomics"))))]
    let _ = active;
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __export;

pub use event::Event;
pub use json::{FieldValue, RawJson};
pub use serde_json::{json, Map, Value};

use serde::de::DeserializeOwned;

/// What the host tells the stage about the current call.
#[derive(Debug, Clone)]
pub struct Context {
    /// Pipeline id.
    pub pipeline: String,
    /// This stage's name in the pipeline spec.
    pub stage: String,
    /// 1 on the first try, 2 on the first retry, ...
    pub attempt: u32,
}

impl Default for Context {
    fn default() -> Self {
        Context { pipeline: String::new(), stage: String::new(), attempt: 1 }
    }
}

/// A stage's verdict that one event failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageError {
    /// Transient (the host retries with backoff) or permanent (to the DLQ).
    pub retryable: bool,
    pub message: String,
}

impl StageError {
    /// A transient failure: the host retries the event with backoff.
    pub fn retryable(message: impl Into<String>) -> Self {
        StageError { retryable: true, message: message.into() }
    }
    /// A permanent failure: the event goes to the dead letter queue.
    pub fn rejected(message: impl Into<String>) -> Self {
        StageError { retryable: false, message: message.into() }
    }
}

/// What a stage does with one input event.
pub enum Emit {
    /// Pass the event on (changed or not: an unchanged one is not copied back).
    Pass,
    /// Filter it out.
    Drop,
    /// Replace it with these events (fan-out; empty is the same as `Drop`).
    Many(Vec<Event>),
    /// Replace it with the events this iterator yields, handed to the host
    /// one by one as they are made (a large fan-out never sits in memory
    /// whole). Build it with [`Emit::each`].
    Each(Box<dyn Iterator<Item = Event>>),
}

impl std::fmt::Debug for Emit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Emit::Pass => f.write_str("Pass"),
            Emit::Drop => f.write_str("Drop"),
            Emit::Many(events) => f.debug_tuple("Many").field(events).finish(),
            Emit::Each(_) => f.write_str("Each(..)"),
        }
    }
}

impl Emit {
    /// A streaming fan-out: `Emit::each((0..n).map(|i| make(i)))`.
    pub fn each(events: impl Iterator<Item = Event> + 'static) -> Emit {
        Emit::Each(Box::new(events))
    }
}

/// A pipeline stage. Implement this and call [`export_stage!`].
pub trait Stage: Sized + 'static {
    /// The stage's configuration, parsed from the spec's `config` JSON.
    /// A spec without `config` passes `{}`.
    type Config: DeserializeOwned;

    /// Builds the stage from its configuration. An `Err` rejects the
    /// pipeline spec, and its message is shown to whoever submitted it.
    fn init(config: Self::Config) -> Result<Self, String>;

    /// Processes one event.
    fn process(&self, event: &mut Event, ctx: &Context) -> Result<Emit, StageError>;
}

/// Parses a stage's config JSON (`null` or empty text count as `{}`).
pub fn parse_config<C: DeserializeOwned>(config: &str) -> Result<C, String> {
    let text = config.trim();
    let text = if text.is_empty() || text == "null" { "{}" } else { text };
    serde_json::from_str(text).map_err(|e| format!("invalid config: {e}"))
}

/// Exports a [`Stage`] implementation as the component's `init` and
/// `process-packed` (`sluice:stage@0.2.0`; with the feature `stage-0-1`,
/// `sluice:stage@0.1.0`'s `process` too).
///
/// On targets other than wasm32 it expands to nothing, so plugin crates also
/// build natively (for tests and benchmarks).
#[macro_export]
macro_rules! export_stage {
    ($stage:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct SluiceStageExport;
            impl $crate::__export::bindings::Guest for SluiceStageExport {
                fn init(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__export::init::<$stage>(&config)
                }
                fn process_packed(
                    ctx: $crate::__export::bindings::CallContext,
                    text: ::std::string::String,
                    lengths: ::std::vec::Vec<u32>,
                    timestamps: ::std::vec::Vec<i64>,
                ) -> ::std::vec::Vec<$crate::__export::bindings::Outcome> {
                    $crate::__export::process_packed::<$stage>(ctx, text, lengths, timestamps)
                }
                $crate::__export_list_process!($stage);
            }
            $crate::__export::bindings::export!(SluiceStageExport with_types_in $crate::__export::bindings);
        };
    };
}

/// `sluice:stage@0.1.0`'s `process(ctx, list<event>)`, exported by
/// [`export_stage!`] with the feature `stage-0-1` only.
#[cfg(feature = "stage-0-1")]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_list_process {
    ($stage:ty) => {
        fn process(
            ctx: $crate::__export::bindings::CallContext,
            events: ::std::vec::Vec<$crate::__export::bindings::Event>,
        ) -> ::std::vec::Vec<$crate::__export::bindings::Outcome> {
            $crate::__export::process::<$stage>(ctx, events)
        }
    };
}

/// Nothing: `sluice:stage@0.2.0` has no `process`.
#[cfg(not(feature = "stage-0-1"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_list_process {
    ($stage:ty) => {};
}
