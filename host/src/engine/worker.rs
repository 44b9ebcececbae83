//! Workers and the per-batch path: read queue entries, **run** them through
//! the stages (and assign the outputs to windows) on a blocking thread,
//! **complete** them in one atomic store step (bounded retries, never a
//! spin), and **record** what happened. While a batch is in hand its claim
//! is refreshed (`Queue::touch`), so an entry that runs longer than the
//! reclaim time is not taken over and run a second time.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use super::chain::{run_chain, ChainRun};
use super::lifecycle::Shared;
use super::Pipeline;
use crate::domain::{now_ms, Delivery, DlqEntry, EntryResult, ErrorKind, Event, FailedAt, QueuedEvent, ReplayStart};
use crate::internal_events::{
    emit, BatchProcessed, ChainFailed, LatencyFold, CompletionGaveUp, EntryDeadLettered, StageBatch, StoreFailed, WindowApplyWaiting,
};
use crate::store::StoreError;
use crate::window::WindowSet;

/// Store errors a batch's completion survives before it gives up (the
/// entries then stay pending and are reclaimed and run again later).
const COMPLETE_TRIES: u32 = 20;
/// Times the store may refuse a batch's results (an error that is not about
/// reaching it) before the batch stops trying: its entries become suspects.
const REFUSALS: u32 = 3;
/// Times a batch is decided again because the watermark moved or a closer
/// held the gate, before it gives up the same way (≈ 10 s of waiting).
const STALE_ROUNDS: u32 = 500;

/// One worker task: reads and processes entries until stopped.
pub(super) async fn run(shared: Shared, consumer: String, mut stop: watch::Receiver<bool>) {
    let (engine, id) = (&shared.engine, shared.id.as_str());
    loop {
        if *stop.borrow() {
            break;
        }
        let read = tokio::select! {
            read = engine.store.read(id, &consumer, engine.config.read_entries, 250) => read,
            _ = stop.changed() => break,
        };
        match read {
            Ok(deliveries) if deliveries.is_empty() => {}
            Ok(deliveries) => process(&shared, &consumer, deliveries).await,
            Err(e) => {
                emit(StoreFailed { operation: "read", pipeline: id, error: &e });
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// A batch after the stages: the chain's results, and the window decisions
/// taken against a watermark.
struct Ran {
    chain: ChainRun,
    /// Per entry: how many of its DLQ entries came from the stages (window
    /// lateness adds more, redone when the watermark moves).
    stage_dead: Vec<usize>,
    /// The watermark from which a counted window update would be late
    /// (`None`: the pipeline has no windows).
    valid_below: Option<i64>,
    now: i64,
}

/// Why a batch's completion stopped trying.
enum Stopped {
    /// The store could not be reached, or the watermark never settled:
    /// the entries stay pending and run again when reclaimed.
    Unreachable(String),
    /// The store answered but refused the results (they cannot be applied):
    /// the entries become suspects, each run alone when reclaimed.
    Refused(String),
}

/// Runs delivered entries (pending for `consumer`) through the current
/// stages and completes them, keeping their claim fresh meanwhile.
/// Entries a store refused before are run one at a time; one refused on
/// its own goes to the DLQ whole (`internal`), so no entry loops forever.
pub(super) async fn process(shared: &Shared, consumer: &str, deliveries: Vec<Delivery>) {
    let ids: Vec<String> = deliveries.iter().map(|d| d.id.clone()).collect();
    tokio::select! {
        () = process_claimed(shared, deliveries) => {}
        () = keep_claimed(shared, consumer, &ids) => {}
    }
}

async fn process_claimed(shared: &Shared, deliveries: Vec<Delivery>) {
    let suspect = {
        let suspects = shared.suspects.lock();
        deliveries.iter().any(|d| suspects.contains_key(&d.id))
    };
    if !suspect {
        return process_batch(shared, deliveries, None).await;
    }
    for delivery in deliveries {
        let alone = delivery.events.clone();
        process_batch(shared, vec![delivery], Some(alone)).await;
    }
}

/// Refreshes `consumer`'s claim on `ids` every third of the reclaim time,
/// for as long as it is polled (the batch's processing ends it). Never
/// returns by itself.
async fn keep_claimed(shared: &Shared, consumer: &str, ids: &[String]) {
    let every = Duration::from_millis((shared.engine.config.reclaim_idle_ms / 3).max(10));
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = shared.engine.store.touch(&shared.id, consumer, ids).await {
            emit(StoreFailed { operation: "touch", pipeline: &shared.id, error: &e });
        }
    }
}

/// One batch: run, complete, record. `alone` holds the input events of a
/// single suspect entry, dead-lettered if the store refuses it again.
async fn process_batch(shared: &Shared, deliveries: Vec<Delivery>, alone: Option<Vec<QueuedEvent>>) {
    let pipeline = shared.pipeline();
    let ids: Vec<String> = deliveries.iter().map(|d| d.id.clone()).collect();
    let Some(mut ran) = run_stages(shared, &pipeline, deliveries).await else { return };
    match complete(shared, &pipeline, &mut ran).await {
        Ok(()) => {
            record(shared, &pipeline, &ran);
            let mut suspects = shared.suspects.lock();
            ids.iter().for_each(|id| {
                suspects.remove(id);
            });
        }
        Err(Stopped::Refused(error)) => match (alone, ids.as_slice()) {
            (Some(events), [id]) => dead_letter_entry(shared, &pipeline, id, events, &error).await,
            _ => {
                emit(CompletionGaveUp { pipeline: &shared.id, entries: ids.len(), tries: REFUSALS, error: &error });
                let mut suspects = shared.suspects.lock();
                if suspects.len() > 10_000 {
                    suspects.clear();
                }
                ids.into_iter().for_each(|id| {
                    suspects.insert(id, error.clone());
                });
            }
        },
        Err(Stopped::Unreachable(error)) => emit(CompletionGaveUp { pipeline: &shared.id, entries: ids.len(), tries: COMPLETE_TRIES, error: &error }),
    }
}

/// Acknowledges entry `id` with every input event in the DLQ as `internal`
/// (the store refused what its stages made of it, even on its own); the
/// depth and counters move as for any finished event. Replaying the events
/// runs them again from where they started.
async fn dead_letter_entry(shared: &Shared, pipeline: &Pipeline, id: &str, events: Vec<QueuedEvent>, error: &str) {
    let now = now_ms();
    let first = pipeline.stages.first();
    let dead: Vec<DlqEntry> = events
        .into_iter()
        .map(|queued| {
            let stage = match &queued.start_stage {
                Some(ReplayStart::Stage(name)) => pipeline.stages.iter().find(|s| &s.name == name).or(first),
                _ => first,
            };
            let failed_at = match (&queued.start_stage, stage) {
                (Some(ReplayStart::Window(window)), _) => FailedAt::Window { window: window.clone() },
                (Some(ReplayStart::Sink(sink)), _) => FailedAt::Sink { sink: sink.clone() },
                (_, Some(s)) => FailedAt::Stage { stage: s.name.clone(), plugin: s.plugin.clone(), plugin_version: s.plugin_version },
                (_, None) => FailedAt::Stage { stage: String::new(), plugin: String::new(), plugin_version: 0 },
            };
            DlqEntry {
                dlq_id: String::new(),
                event: queued.event,
                error: format!("internal: the results of this event's queue entry could not be stored ({error}); the entry went to the DLQ whole"),
                error_kind: ErrorKind::Internal,
                failed_at,
                attempts: queued.attempt,
                first_failed_at: queued.first_failed_at.unwrap_or(now),
                last_failed_at: now,
            }
        })
        .collect();
    let n = dead.len();
    let result = EntryResult { delivery_id: id.to_string(), finished: n as u64, dead, ..Default::default() };
    match shared.engine.store.complete(&shared.id, &[result]).await {
        Ok(_) => {
            shared.suspects.lock().remove(id);
            emit(EntryDeadLettered { pipeline: &shared.id, entry: id, events: n, error });
        }
        Err(e) => emit(StoreFailed { operation: "dead_letter_entry", pipeline: &shared.id, error: &e }),
    }
}

/// The stages and the first window assignment, on a blocking thread.
async fn run_stages(shared: &Shared, pipeline: &Pipeline, deliveries: Vec<Delivery>) -> Option<Ran> {
    let entry_bytes: Vec<u64> = deliveries.iter().map(|d| d.bytes).collect();
    let entries: Vec<(String, Vec<crate::domain::QueuedEvent>)> = deliveries.into_iter().map(|d| (d.id, d.events)).collect();
    let stages = pipeline.stages.clone();
    let windows = pipeline.windows.clone();
    let watermark = shared.watermark.load(Ordering::Relaxed);
    let now = now_ms();
    let ran = tokio::task::spawn_blocking(move || {
        let mut chain = run_chain(&stages, entries, now, rand::random::<f64>);
        // The completion takes each entry's stored size off the queued bytes.
        chain.results.iter_mut().zip(entry_bytes).for_each(|(r, bytes)| r.entry_bytes = bytes);
        let stage_dead: Vec<usize> = chain.results.iter().map(|r| r.dead.len()).collect();
        let valid_below =
            (!windows.is_empty()).then(|| assign_windows(&windows, &mut chain.results, &stage_dead, &chain.window_replays, watermark, now));
        Ran { chain, stage_dead, valid_below, now }
    })
    .await;
    match ran {
        Ok(ran) => Some(ran),
        Err(e) => {
            // The entries stay pending and are reclaimed later: nothing lost.
            emit(ChainFailed { pipeline: &shared.id, error: &e.to_string() });
            None
        }
    }
}

/// Applies the batch's results in one atomic store step. A store error is
/// retried with backoff, a stale answer (the watermark moved past the
/// window decisions, or a closer holds the gate) is decided again; both are
/// bounded, and giving up leaves the entries pending for a reclaim.
async fn complete(shared: &Shared, pipeline: &Pipeline, ran: &mut Ran) -> Result<(), Stopped> {
    let (store, id) = (shared.engine.store.as_ref(), shared.id.as_str());
    let mut wait = Duration::from_millis(100);
    let (mut stale_rounds, mut errors, mut refusals) = (0u32, 0u32, 0u32);
    loop {
        match store.complete_windowed(id, &ran.chain.results, ran.valid_below, now_ms()).await {
            Ok(report) if report.stale => {
                stale_rounds += 1;
                if stale_rounds >= STALE_ROUNDS {
                    return Err(Stopped::Unreachable(format!(
                        "the window watermark or close gate kept the batch from applying for {stale_rounds} rounds"
                    )));
                }
                if stale_rounds % 50 == 0 {
                    emit(WindowApplyWaiting { pipeline: id, rounds: stale_rounds });
                }
                tokio::time::sleep(Duration::from_millis(2 + u64::from(stale_rounds.min(20)))).await;
                match store.window_clock(id).await {
                    Ok(clock) => shared.watermark.store(clock.watermark, Ordering::Relaxed),
                    Err(e) => emit(StoreFailed { operation: "window_clock", pipeline: id, error: &e }),
                }
                let wm = shared.watermark.load(Ordering::Relaxed);
                // Only a watermark past our decisions needs new ones (a held
                // gate alone just needs another try).
                if ran.valid_below.is_some_and(|v| wm >= v) {
                    let (results, replays) = (&mut ran.chain.results, &ran.chain.window_replays);
                    ran.valid_below = Some(assign_windows(&pipeline.windows, results, &ran.stage_dead, replays, wm, ran.now));
                }
            }
            Ok(_) => return Ok(()),
            Err(e) => {
                emit(StoreFailed { operation: "complete", pipeline: id, error: &e });
                match e {
                    StoreError::Unavailable(_) => errors += 1,
                    _ => refusals += 1,
                }
                if refusals >= REFUSALS {
                    return Err(Stopped::Refused(e.to_string()));
                }
                if errors >= COMPLETE_TRIES {
                    return Err(Stopped::Unreachable(e.to_string()));
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Counts a completed batch: process-local stats and the metrics.
fn record(shared: &Shared, pipeline: &Pipeline, ran: &Ran) {
    let results = &ran.chain.results;
    let processed: u64 = results.iter().map(|r| r.finished).sum();
    let emitted: u64 = results.iter().map(|r| r.outputs.len() as u64).sum();
    let dead: u64 = results.iter().map(|r| r.dead.len() as u64).sum();
    let tallies = &ran.chain.tallies;
    shared.engine.stats.record(&shared.id, &pipeline.stage_names, tallies, processed);
    let stages: Vec<StageBatch> = tallies
        .iter()
        .map(|t| StageBatch { calls: t.calls, events: t.events, errors: t.errors, retries: t.retries, fuel: t.fuel, call_us: &t.call_us })
        .collect();
    let now = now_ms();
    let mut latency = LatencyFold::default();
    for event in results.iter().flat_map(|r| &r.outputs) {
        latency.add(now.saturating_sub(event.timestamp) as f64 / 1000.0);
    }
    emit(BatchProcessed { metrics: &pipeline.metrics, stages: &stages, processed, emitted, dead, latency: &latency });
}

/// Fills each entry's window deltas and late DLQ entries for `watermark`
/// (replacing those of an earlier assignment: `stage_dead[i]` is how many
/// DLQ entries entry `i` had from the stages); answers the watermark from
/// which a counted update would be late.
fn assign_windows(
    windows: &WindowSet,
    results: &mut [EntryResult],
    stage_dead: &[usize],
    replays: &[Vec<(String, Event)>],
    watermark: i64,
    now_ms: i64,
) -> i64 {
    let mut valid_below = i64::MAX;
    for ((result, replayed), &keep) in results.iter_mut().zip(replays).zip(stage_dead) {
        result.dead.truncate(keep);
        let events = result.outputs.iter().map(|e| (e, None)).chain(replayed.iter().map(|(w, e)| (e, Some(w.as_str()))));
        let assignment = windows.assign(events, watermark);
        result.window_deltas = assignment.deltas;
        result.max_event_ts = assignment.max_event_ts;
        valid_below = valid_below.min(assignment.valid_below);
        for late in assignment.late {
            let lateness = windows.get(&late.window).map(|s| s.allowed_lateness_ms).unwrap_or(0);
            result.dead.push(DlqEntry {
                dlq_id: String::new(),
                error: format!(
                    "late: event time {} is past window [{}, {}) of `{}`, closed at watermark {} (allowed lateness {} ms)",
                    late.event.timestamp, late.start, late.end, late.window, watermark, lateness
                ),
                event: late.event,
                error_kind: ErrorKind::Late,
                failed_at: FailedAt::Window { window: late.window },
                attempts: 1,
                first_failed_at: now_ms,
                last_failed_at: now_ms,
            });
        }
    }
    valid_below
}
