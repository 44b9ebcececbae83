//! Workers and the per-batch path: read queue entries, **run** them through
//! the stages (and assign the outputs to windows) on a blocking thread,
//! **complete** them in one atomic store step (bounded retries, never a
//! spin), and **record** what happened.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use super::chain::{run_chain, ChainRun};
use super::lifecycle::Shared;
use super::Pipeline;
use crate::domain::{DlqEntry, EntryResult, ErrorKind, FailedAt};
use crate::domain::{now_ms, Event};
use crate::internal_events::{emit, BatchProcessed, ChainFailed, CompletionGaveUp, StageBatch, StoreFailed, WindowApplyWaiting};
use crate::domain::Delivery;
use crate::window::WindowSet;

/// Store errors a batch's completion survives before it gives up (the
/// entries then stay pending and are reclaimed and run again later).
const COMPLETE_TRIES: u32 = 20;
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
            Ok(deliveries) => process(&shared, deliveries).await,
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

/// Runs delivered entries through the current stages and completes them.
pub(super) async fn process(shared: &Shared, deliveries: Vec<Delivery>) {
    let pipeline = shared.pipeline();
    let entries = deliveries.len();
    let Some(mut ran) = run_stages(shared, &pipeline, deliveries).await else { return };
    match complete(shared, &pipeline, &mut ran).await {
        Ok(()) => record(shared, &pipeline, &ran),
        Err(error) => emit(CompletionGaveUp { pipeline: &shared.id, entries, tries: COMPLETE_TRIES, error: &error }),
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
async fn complete(shared: &Shared, pipeline: &Pipeline, ran: &mut Ran) -> Result<(), String> {
    let (store, id) = (shared.engine.store.as_ref(), shared.id.as_str());
    let mut wait = Duration::from_millis(100);
    let (mut stale_rounds, mut errors) = (0u32, 0u32);
    loop {
        match store.complete_windowed(id, &ran.chain.results, ran.valid_below, now_ms()).await {
            Ok(report) if report.stale => {
                stale_rounds += 1;
                if stale_rounds >= STALE_ROUNDS {
                    return Err(format!("the window watermark or close gate kept the batch from applying for {stale_rounds} rounds"));
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
                errors += 1;
                if errors >= COMPLETE_TRIES {
                    return Err(e.to_string());
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
    shared.engine.stats.record(&shared.id, &pipeline.spec.stage_names(), tallies, processed);
    let stages: Vec<StageBatch> = tallies
        .iter()
        .map(|t| StageBatch { calls: t.calls, events: t.events, errors: t.errors, retries: t.retries, fuel: t.fuel, call_us: &t.call_us })
        .collect();
    emit(BatchProcessed { metrics: &pipeline.metrics, stages: &stages, processed, emitted, dead });
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
