//! Sinks: deliver a pipeline's outputs, or one window's results, to a
//! destination outside Sluice, each from its own durable position.
//!
//! - [`spec`]: the `sinks` part of a pipeline spec, checked.
//! - [`Sink`]: the one trait a kind implements (deliver a batch; say
//!   delivered, retry later, or refused for good). One folder per kind:
//!   [`postgres`] (exactly once: rows and position in one transaction),
//!   [`http`] (NDJSON POSTs), [`nats`] (JetStream, de-duplicated by id).
//!   Adding a kind is one folder with one `Sink` impl and a line in
//!   [`connect`].
//! - [`runner`]: one runner per (pipeline, sink) across processes (a lease
//!   in the store): reads the source after the sink's position, delivers in
//!   batches with retries (several in flight where the kind allows, see
//!   [`Sink::in_flight`]), and only then advances the position, in order
//!   (or sends what it gave up on to the DLQ, `error_kind: "sink"`).
//! - [`batch`]: what a batch carries and how it is written (NDJSON, the
//!   idempotency key).
//!
//! May use: `domain`, `internal_events`, `store`, and the plain spec types
//! of `engine::spec` (`RetryPolicy`, `valid_name`); the engine starts and
//! stops runners.

pub mod batch;
pub mod http;
pub mod nats;
pub mod postgres;
pub mod runner;
pub mod spec;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;

pub use batch::{Batch, Item, Progress};
use spec::{SinkKind, SinkSpec};

/// How a delivery attempt went.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// The destination has the whole batch.
    Delivered,
    /// Try the same batch again later (a 429/5xx, a lost connection, a
    /// timeout), no sooner than `after` when the destination said so.
    Retry {
        /// What went wrong (no secrets: never the URL's credentials).
        error: String,
        /// The destination's `Retry-After`, if any.
        after: Option<Duration>,
    },
    /// The destination refused the batch for good (e.g. an HTTP 4xx, a
    /// Postgres constraint): its events go to the DLQ.
    Refused {
        /// Why.
        error: String,
    },
    /// An exactly-once destination's own position is not where this batch
    /// starts: someone else delivered meanwhile. The runner reloads it.
    Moved,
}

/// Where an exactly-once destination says the sink is: its position in the
/// source and the last redelivery-list id it took (both committed with
/// the rows, so they win over the store's copy after a crash).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeptPosition {
    /// The source position.
    pub position: crate::domain::SinkPosition,
    /// The newest redelivery-list id delivered ("" for none).
    pub replay: String,
}

/// What settles a batch handed over with [`Sink::send`]: its delivery's outcome.
pub type Confirmation = Pin<Box<dyn Future<Output = Delivery> + Send>>;

/// A destination. One value per runner; `&mut self` so a kind can keep its
/// connection and reconnect on its own.
#[async_trait]
pub trait Sink: Send {
    /// The position the destination keeps itself, if it keeps one
    /// (exactly-once kinds): written there first as `start` when it has
    /// none for this `epoch` of the sink's record (a record made anew
    /// starts over). `Err` when the destination cannot be reached (retried).
    async fn kept_position(&mut self, epoch: &str, start: &KeptPosition) -> Result<Option<KeptPosition>, String> {
        let _ = (epoch, start);
        Ok(None)
    }

    /// Delivers one batch (the same batch, same key, on every retry).
    async fn deliver(&mut self, batch: &Batch) -> Delivery;

    /// How many batches the runner may have handed over with [`Sink::send`]
    /// before the first is settled: 1 (the default) delivers one batch at a
    /// time. A kind whose destination answers asynchronously (NATS) takes
    /// more, so the destination works on the next batches while the runner
    /// waits for the first; positions still move in order, each only once
    /// its batch is settled.
    fn in_flight(&self) -> usize {
        1
    }

    /// Hands a batch over and answers what settles it, without waiting for
    /// the destination's answer where the kind can (see
    /// [`Sink::in_flight`]). The default delivers, then answers the outcome.
    async fn send(&mut self, batch: &Batch) -> Confirmation {
        let outcome = self.deliver(batch).await;
        Box::pin(std::future::ready(outcome))
    }

    /// The runner gave up on `batch` (its events are in the DLQ now): an
    /// exactly-once destination moves its own position past it. Called
    /// after the store recorded the DLQ entries, so a crash in between
    /// delivers the batch again (and at worst dead-letters it twice),
    /// never loses it.
    async fn skipped(&mut self, batch: &Batch) -> Result<(), String> {
        let _ = batch;
        Ok(())
    }
}

/// Makes the sink a spec describes (no connection yet: kinds connect on
/// first use, so a destination that is down is retried like any failure).
pub fn connect(pipeline: &str, spec: &SinkSpec) -> Result<Box<dyn Sink>, String> {
    Ok(match spec.kind {
        SinkKind::Postgres => Box::new(postgres::PostgresSink::new(pipeline, spec)?),
        SinkKind::Http => Box::new(http::HttpSink::new(spec)?),
        SinkKind::Nats => Box::new(nats::NatsSink::new(spec)?),
    })
}
