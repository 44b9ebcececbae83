//! The runner of one (pipeline, sink): holds the sink's lease, reads the
//! source after the sink's position, delivers in batches with retries, and
//! advances the position only after a batch is delivered (or, given up on,
//! sent to the DLQ). DLQ replays for the sink (its redelivery list) go
//! first. A kind that takes several batches in flight is driven by
//! [`pipeline`]. Every loop and every wait is bounded and ends when stopped.

mod pipeline;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::spec::SinkSpec;
use super::{Batch, Delivery, Item, KeptPosition, Progress, Sink};
use crate::domain::{now_ms, DlqEntry, ErrorKind, FailedAt, SinkCommit, SinkPosition, SinkRecord, SinkSource};
use crate::internal_events::{emit, SinkDeadLettered, SinkDelivered, SinkRetrying, StoreFailed};
use crate::store::Store;

/// How long a runner's lease lasts without renewal.
pub const LEASE_MS: i64 = 10_000;
/// The longest `Retry-After` honoured (a destination asking for more is
/// retried after this).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// How long to wait before trying again after the store failed.
const STORE_BACKOFF: Duration = Duration::from_millis(500);
/// How long to wait before opening a sink again (its position could not be
/// read from the store or the destination): one warning per try.
const OPEN_BACKOFF: Duration = Duration::from_secs(2);

/// What a runner needs.
pub struct RunnerContext {
    /// The store the pipeline lives in.
    pub store: Arc<dyn Store>,
    /// The pipeline's id.
    pub pipeline: String,
    /// The sink, as the spec says now (a changed spec restarts the runner).
    pub spec: Arc<SinkSpec>,
    /// Who this runner is in the lease (process and sink).
    pub holder: String,
}

/// Why a delivery loop ended early.
enum Stop {
    /// Asked to stop.
    Stopped,
    /// The lease is gone (another runner took it): start over.
    LostLease,
    /// An exactly-once destination moved on: reload its position.
    Moved,
}

/// The runner's state between batches.
struct Runner {
    ctx: RunnerContext,
    sink: Box<dyn Sink>,
    record: SinkRecord,
    /// The newest redelivery id the destination already has (exactly-once kinds).
    replay_done: String,
    /// When the lease was last renewed.
    renewed: Instant,
    /// A full batch read while the previous one was delivered.
    read_ahead: Option<Batch>,
}

/// Runs the sink until `stop` turns true: takes the lease (or waits for
/// it), opens the sink's position and delivers until stopped; a lost lease
/// or a destination that moved on starts over, keeping the connection.
pub async fn run(mut ctx: RunnerContext, mut stop: watch::Receiver<bool>) {
    let mut sink: Option<Box<dyn Sink>> = None;
    while !*stop.borrow() {
        let held = match ctx.store.sink_lease(&ctx.pipeline, &ctx.spec.name, &ctx.holder, now_ms(), LEASE_MS).await {
            Ok(held) => held,
            Err(e) => {
                emit(StoreFailed { operation: "sink_lease", pipeline: &ctx.pipeline, error: &e });
                false
            }
        };
        if !held {
            // Someone else runs it (or the store is down): look again later.
            if wait(&mut stop, Duration::from_millis(LEASE_MS as u64 / 4)).await {
                return;
            }
            continue;
        }
        if sink.is_none() {
            // A new sink's position is fixed before anything slow (an HTTPS client reads the system's
            // roots), so outputs emitted meanwhile are delivered. Best effort: `Runner::open` reads it again.
            let _ = ctx.store.sink_open(&ctx.pipeline, &ctx.spec.name, &ctx.spec.source()).await;
        }
        let made = match sink.take().map(Ok).unwrap_or_else(|| super::connect(&ctx.pipeline, &ctx.spec)) {
            Ok(made) => made,
            Err(error) => {
                emit(SinkRetrying { pipeline: &ctx.pipeline, sink: &ctx.spec.name, attempt: 0, error: &error });
                if wait(&mut stop, Duration::from_secs(5)).await {
                    return;
                }
                continue;
            }
        };
        match Runner::open(ctx, made).await {
            Ok(mut runner) => {
                let why = runner.deliver_loop(&mut stop).await;
                let Runner { ctx: back, sink: made, .. } = runner;
                ctx = back;
                sink = Some(made);
                if matches!(why, Stop::Stopped) {
                    return;
                }
            }
            Err((back, made, error)) => {
                emit(SinkRetrying { pipeline: &back.pipeline, sink: &back.spec.name, attempt: 0, error: &error });
                ctx = back;
                sink = Some(made);
                if wait(&mut stop, OPEN_BACKOFF).await {
                    return;
                }
            }
        }
    }
}

/// Sleeps `for_` unless stopped first; answers whether stopped.
async fn wait(stop: &mut watch::Receiver<bool>, for_: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(for_) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

impl Runner {
    /// Reads the sink's record (made at the source's end if new) and the
    /// destination's own position, which wins when it keeps one.
    async fn open(ctx: RunnerContext, mut sink: Box<dyn Sink>) -> Result<Runner, (RunnerContext, Box<dyn Sink>, String)> {
        let source = ctx.spec.source();
        let mut record = match ctx.store.sink_open(&ctx.pipeline, &ctx.spec.name, &source).await {
            Ok(record) => record,
            Err(e) => return Err((ctx, sink, format!("reading the sink's position: {e}"))),
        };
        if record.from != source.as_spec() {
            // The spec now reads another source: the old position means
            // nothing there; start afresh (replays waiting for the sink stay).
            let reopened = match ctx.store.sink_reset(&ctx.pipeline, &ctx.spec.name).await {
                Ok(()) => ctx.store.sink_open(&ctx.pipeline, &ctx.spec.name, &source).await,
                Err(e) => Err(e),
            };
            record = match reopened {
                Ok(record) => record,
                Err(e) => return Err((ctx, sink, format!("starting the sink afresh on its new source: {e}"))),
            };
        }
        let start = KeptPosition { position: record.position.clone(), replay: String::new() };
        let replay_done = match sink.kept_position(&record.epoch, &start).await {
            Ok(Some(kept)) => {
                // Batches the destination committed before a crash, which the store did not hear of.
                record.delivered += kept.position.seq.saturating_sub(record.position.seq);
                record.position = kept.position;
                kept.replay
            }
            Ok(None) => String::new(),
            Err(e) => return Err((ctx, sink, e)),
        };
        Ok(Runner { ctx, sink, record, replay_done, renewed: Instant::now(), read_ahead: None })
    }

    /// Delivers batch after batch until stopped or the lease is lost.
    async fn deliver_loop(&mut self, stop: &mut watch::Receiver<bool>) -> Stop {
        if self.sink.in_flight() > 1 {
            return self.pipelined_loop(stop).await;
        }
        loop {
            if *stop.borrow() {
                return Stop::Stopped;
            }
            if !self.renew().await {
                return Stop::LostLease;
            }
            let batch = match self.next_batch_or_pause(stop).await {
                Ok(Some(batch)) => batch,
                Ok(None) => continue,
                Err(why) => return why,
            };
            // The next full batch is read while this one is delivered.
            let ahead = match &batch.progress {
                Progress::Source { to, .. } => Some(read_ahead(self.ctx.store.clone(), self.ctx.pipeline.clone(), self.ctx.spec.clone(), to.clone())),
                Progress::Replay { .. } => None,
            };
            let delivered = match ahead {
                Some(ahead) => {
                    let (delivered, ahead) = tokio::join!(self.deliver_with_retries(&batch, stop), ahead);
                    self.read_ahead = ahead;
                    delivered
                }
                None => self.deliver_with_retries(&batch, stop).await,
            };
            match delivered {
                Ok(outcome) => {
                    if let Some(why) = self.record_outcome(batch, outcome, stop).await {
                        return why;
                    }
                }
                Err(why) => return why,
            }
        }
    }

    /// The next batch ([`Runner::next_batch`]), or `None` after a pause
    /// when there is none yet or the store failed.
    async fn next_batch_or_pause(&mut self, stop: &mut watch::Receiver<bool>) -> Result<Option<Batch>, Stop> {
        let pause = match self.next_batch(stop).await {
            Ok(Some(batch)) => return Ok(Some(batch)),
            Ok(None) => Duration::from_millis(self.ctx.spec.batch_ms.clamp(20, 1_000)),
            Err(e) => {
                emit(StoreFailed { operation: "sink_read", pipeline: &self.ctx.pipeline, error: &e });
                STORE_BACKOFF
            }
        };
        if wait(stop, pause).await {
            return Err(Stop::Stopped);
        }
        Ok(None)
    }

    /// Renews the lease when a third of it has passed; false once lost.
    async fn renew(&mut self) -> bool {
        if self.renewed.elapsed() < Duration::from_millis(LEASE_MS as u64 / 3) {
            return true;
        }
        let spec = &self.ctx.spec;
        match self.ctx.store.sink_lease(&self.ctx.pipeline, &spec.name, &self.ctx.holder, now_ms(), LEASE_MS).await {
            Ok(true) => {
                self.renewed = Instant::now();
                true
            }
            Ok(false) => false,
            // The store is down: keep going until the lease would have run out.
            Err(_) => self.renewed.elapsed() < Duration::from_millis(LEASE_MS as u64 * 2 / 3),
        }
    }

    /// The next batch: waiting replays first, then the batch read ahead
    /// while the last one was delivered (if it still starts at the
    /// position), then the source after the position (a partial batch waits
    /// up to `batch_ms` for more once).
    async fn next_batch(&mut self, stop: &mut watch::Receiver<bool>) -> Result<Option<Batch>, crate::store::StoreError> {
        let (store, p, spec) = (self.ctx.store.clone(), self.ctx.pipeline.clone(), self.ctx.spec.clone());
        let replays = store.sink_replays(&p, &spec.name, spec.batch_max).await?;
        if !replays.is_empty() {
            let (ids, items): (Vec<String>, Vec<Item>) = replays.into_iter().map(|r| (r.id, Item::Event(r.event))).unzip();
            return Ok(Some(Batch::from_replays(&p, &spec.name, items, ids)));
        }
        if let Some(ahead) = self.read_ahead.take() {
            if matches!(&ahead.progress, Progress::Source { from, .. } if *from == self.record.position) {
                return Ok(Some(ahead));
            }
        }
        let mut waited = false;
        loop {
            let from = self.record.position.clone();
            let (items, to) = read_source(store.as_ref(), &p, &spec, &from).await?;
            if items.is_empty() {
                return Ok(None);
            }
            if items.len() < spec.batch_max && spec.batch_ms > 0 && !waited {
                waited = true;
                if !wait(stop, Duration::from_millis(spec.batch_ms)).await {
                    continue;
                }
            }
            return Ok(Some(Batch::from_source(&p, &spec.name, items, from, to)));
        }
    }

    /// Tries a batch up to the spec's `max_attempts`, backing off (with
    /// jitter, honouring `Retry-After`) between tries; the lease is renewed
    /// while waiting. Answers the last try's outcome.
    async fn deliver_with_retries(&mut self, batch: &Batch, stop: &mut watch::Receiver<bool>) -> Result<Delivery, Stop> {
        if let Progress::Replay { ids } = &batch.progress {
            // Replays the destination already committed (a crash before the store heard of it).
            if !self.replay_done.is_empty() && ids.iter().all(|id| !id_after(id, &self.replay_done)) {
                return Ok(Delivery::Delivered);
            }
        }
        let first = self.sink.deliver(batch).await;
        self.retry(batch, first, stop).await
    }

    /// Goes on from a batch's first try (`outcome`): tries it again while
    /// it is retryable, up to the spec's `max_attempts`.
    async fn retry(&mut self, batch: &Batch, mut outcome: Delivery, stop: &mut watch::Receiver<bool>) -> Result<Delivery, Stop> {
        let retry = self.ctx.spec.retry.clone();
        let mut attempt = 1u32;
        loop {
            let (error, after) = match &outcome {
                Delivery::Retry { error, after } if attempt < retry.max_attempts => (error.clone(), *after),
                Delivery::Moved => return Err(Stop::Moved),
                _ => return Ok(outcome),
            };
            emit(SinkRetrying { pipeline: &self.ctx.pipeline, sink: &self.ctx.spec.name, attempt, error: &error });
            self.note_error(&error).await;
            let backoff = Duration::from_millis(retry.backoff_ms(attempt, rand::random::<f64>()));
            let pause = after.map_or(backoff, |a| a.min(MAX_RETRY_AFTER).max(backoff));
            let until = Instant::now() + pause;
            // Wait in steps, keeping the lease.
            while Instant::now() < until {
                let step = (until - Instant::now()).min(Duration::from_millis(LEASE_MS as u64 / 4));
                if wait(stop, step).await {
                    return Err(Stop::Stopped);
                }
                if !self.renew().await {
                    return Err(Stop::LostLease);
                }
            }
            attempt += 1;
            outcome = self.sink.deliver(batch).await;
        }
    }

    /// Keeps the last error in the record (what `GET …/sinks` shows), best effort.
    async fn note_error(&mut self, error: &str) {
        if self.record.last_error.as_deref() == Some(error) {
            return;
        }
        self.record.last_error = Some(error.to_string());
        let commit = SinkCommit { record: self.record.clone(), ..Default::default() };
        let _ = self.ctx.store.sink_commit(&self.ctx.pipeline, &self.ctx.spec.name, &self.ctx.holder, &commit).await;
    }

    /// Records a delivered batch (position and counts) or a given-up one
    /// (its events to the DLQ, position past it) in one store step; retried
    /// while the store fails. `Some` when the runner must stop or restart.
    async fn record_outcome(&mut self, batch: Batch, outcome: Delivery, stop: &mut watch::Receiver<bool>) -> Option<Stop> {
        let n = batch.items.len() as u64;
        let mut record = self.record.clone();
        let mut dead = Vec::new();
        match &outcome {
            Delivery::Delivered => {
                record.delivered += n;
                record.last_error = None;
            }
            Delivery::Refused { error } | Delivery::Retry { error, .. } => {
                record.failed += n;
                record.last_error = Some(error.clone());
                let now = now_ms();
                let attempts = if matches!(outcome, Delivery::Refused { .. }) { 1 } else { self.ctx.spec.retry.max_attempts };
                dead = batch
                    .items
                    .iter()
                    .cloned()
                    .map(|item| DlqEntry {
                        dlq_id: String::new(),
                        event: item.into_event(),
                        error: format!("sink `{}` ({}): {error}", self.ctx.spec.name, self.ctx.spec.kind.as_str()),
                        error_kind: ErrorKind::Sink,
                        failed_at: FailedAt::Sink { sink: self.ctx.spec.name.clone() },
                        attempts,
                        first_failed_at: now,
                        last_failed_at: now,
                    })
                    .collect();
            }
            Delivery::Moved => return Some(Stop::Moved),
        }
        let replayed = match &batch.progress {
            Progress::Source { to, .. } => {
                record.position = to.clone();
                Vec::new()
            }
            Progress::Replay { ids } => ids.clone(),
        };
        let commit = SinkCommit { record: record.clone(), dead, replayed };
        // Bounded: the lease runs out long before this gives up.
        for _ in 0..40 {
            match self.ctx.store.sink_commit(&self.ctx.pipeline, &self.ctx.spec.name, &self.ctx.holder, &commit).await {
                Ok(true) => {
                    self.record = record;
                    if let Progress::Replay { ids } = &batch.progress {
                        if let Some(last) = ids.last() {
                            if id_after(last, &self.replay_done) {
                                self.replay_done = String::new();
                            }
                        }
                    }
                    match outcome {
                        Delivery::Delivered => emit(SinkDelivered { pipeline: &self.ctx.pipeline, sink: &self.ctx.spec.name, events: n }),
                        _ => {
                            emit(SinkDeadLettered { pipeline: &self.ctx.pipeline, sink: &self.ctx.spec.name, events: n });
                            if let Err(error) = self.sink.skipped(&batch).await {
                                // The destination still stands before the batch: reopen from there.
                                emit(SinkRetrying { pipeline: &self.ctx.pipeline, sink: &self.ctx.spec.name, attempt: 0, error: &error });
                                return Some(Stop::Moved);
                            }
                        }
                    }
                    return None;
                }
                Ok(false) => return Some(Stop::LostLease),
                Err(e) => {
                    emit(StoreFailed { operation: "sink_commit", pipeline: &self.ctx.pipeline, error: &e });
                    if wait(stop, STORE_BACKOFF).await {
                        return Some(Stop::Stopped);
                    }
                }
            }
        }
        Some(Stop::LostLease)
    }
}

/// Up to `batch_max` items of the sink's source after `from`, and the
/// position after them.
async fn read_source(store: &dyn Store, pipeline: &str, spec: &SinkSpec, from: &SinkPosition) -> crate::store::StoreResult<(Vec<Item>, SinkPosition)> {
    let (items, cursor) = match spec.source() {
        SinkSource::Output => {
            let page = store.read_output(pipeline, &from.cursor, spec.batch_max).await?;
            (page.items.into_iter().map(Item::Event).collect::<Vec<_>>(), page.next_cursor)
        }
        SinkSource::Window(window) => {
            let page = store.read_window_results(pipeline, &window, &from.cursor, spec.batch_max).await?;
            (page.items.into_iter().map(Item::Window).collect::<Vec<_>>(), page.next_cursor)
        }
    };
    let to = SinkPosition { cursor, seq: from.seq + items.len() as u64 };
    Ok((items, to))
}

/// The full batch after `from`, if one is there (a partial one is left for
/// [`Runner::next_batch`], which waits `batch_ms` for it to fill).
async fn read_ahead(store: Arc<dyn Store>, pipeline: String, spec: Arc<SinkSpec>, from: SinkPosition) -> Option<Batch> {
    let (items, to) = read_source(store.as_ref(), &pipeline, &spec, &from).await.ok()?;
    (items.len() == spec.batch_max).then(|| Batch::from_source(&pipeline, &spec.name, items, from, to))
}

/// Whether redelivery id `a` comes after `b` (stream ids `ms-seq` or plain
/// numbers, compared as numbers; "" is before everything).
pub fn id_after(a: &str, b: &str) -> bool {
    fn parts(id: &str) -> (u64, u64) {
        let (x, y) = id.split_once('-').unwrap_or((id, "0"));
        (x.parse().unwrap_or(0), y.parse().unwrap_or(0))
    }
    if b.is_empty() {
        return !a.is_empty();
    }
    parts(a) > parts(b)
}

#[cfg(test)]
mod tests {
    use super::id_after;

    #[test]
    fn redelivery_ids_compare_as_numbers() {
        assert!(id_after("10-0", "9-5"));
        assert!(id_after("9-10", "9-9"));
        assert!(!id_after("9-9", "9-9"));
        assert!(id_after("12", "3"));
        assert!(id_after("1", ""));
        assert!(!id_after("", ""));
    }
}
