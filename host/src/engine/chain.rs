//! Running queued events through a pipeline's stages: what leaves the last
//! stage, what is filtered, what is retried later and what is dead-lettered.
//! Pure and synchronous (it runs on a blocking thread); the worker turns the
//! result into one atomic store update.

use std::sync::Arc;

use crate::event::Event;
use crate::runtime::{ErrorKind, Outcome, StageRunner};
use crate::domain::{DlqEntry, EntryResult, FailedAt, QueuedEvent, ReplayStart, Retry};

use super::spec::RetryPolicy;

/// One stage as the engine runs it.
pub struct ChainStage {
    pub name: String,
    pub plugin: String,
    pub plugin_version: u32,
    pub retry: RetryPolicy,
    pub runner: Arc<StageRunner>,
}

/// Per-stage figures from one chain run, for metrics.
#[derive(Debug, Default, Clone)]
pub struct StageTally {
    pub calls: u64,
    pub events: u64,
    pub errors: u64,
    pub retries: u64,
    pub fuel: u64,
    /// µs of each call (one entry per `process` batch).
    pub call_us: Vec<u64>,
}

struct Item {
    entry: usize,
    event: Event,
    stage: usize,
    attempt: u32,
    first_failed_at: Option<i64>,
}

/// An item without its event (while the event is in a stage's batch).
struct Meta {
    entry: usize,
    stage: usize,
    attempt: u32,
    first_failed_at: Option<i64>,
}

impl Item {
    fn split(self) -> (Meta, Event) {
        (Meta { entry: self.entry, stage: self.stage, attempt: self.attempt, first_failed_at: self.first_failed_at }, self.event)
    }
}

impl Meta {
    fn join(self, event: Event) -> Item {
        Item { entry: self.entry, event, stage: self.stage, attempt: self.attempt, first_failed_at: self.first_failed_at }
    }
}

/// What a chain run made of some queue entries.
pub struct ChainRun {
    /// One per entry, same order.
    pub results: Vec<EntryResult>,
    pub tallies: Vec<StageTally>,
    /// Per entry: replayed late events, each for the one window it missed.
    pub window_replays: Vec<Vec<(String, Event)>>,
}

/// Runs the events of several queue entries through `stages` and answers one
/// [`EntryResult`] per entry (same order), plus per-stage tallies.
pub fn run_chain(stages: &[ChainStage], entries: Vec<(String, Vec<QueuedEvent>)>, now_ms: i64, mut jitter: impl FnMut() -> f64) -> ChainRun {
    let mut results: Vec<EntryResult> =
        entries.iter().map(|(id, _)| EntryResult { delivery_id: id.clone(), ..Default::default() }).collect();
    let mut window_replays: Vec<Vec<(String, Event)>> = vec![Vec::new(); entries.len()];
    let mut tallies = vec![StageTally::default(); stages.len()];
    let mut inputs = vec![0u64; entries.len()];
    let mut items: Vec<Item> = Vec::new();
    for (entry, (_, queued)) in entries.into_iter().enumerate() {
        inputs[entry] = queued.len() as u64;
        for q in queued {
            let (stage, attempt) = match q.start_stage {
                // A replayed late event re-applies to that window only (it
                // already went through the stages and to the output).
                Some(ReplayStart::Window(window)) => {
                    window_replays[entry].push((window, q.event));
                    continue;
                }
                // A stage that is gone from the current spec restarts the event at the first stage.
                Some(ReplayStart::Stage(name)) => match stages.iter().position(|s| s.name == name) {
                    Some(i) => (i, q.attempt.max(1)),
                    None => (0, 1),
                },
                None => (0, q.attempt.max(1)),
            };
            items.push(Item { entry, event: q.event, stage, attempt, first_failed_at: q.first_failed_at });
        }
    }

    for (s, stage) in stages.iter().enumerate() {
        // Events at this stage, grouped by attempt (one call per attempt number).
        let (here, rest): (Vec<Item>, Vec<Item>) = items.into_iter().partition(|item| item.stage == s);
        items = rest;
        let mut attempts: Vec<u32> = here.iter().map(|i| i.attempt).collect();
        attempts.sort_unstable();
        attempts.dedup();
        let mut by_attempt: Vec<Vec<Item>> = attempts.iter().map(|_| Vec::new()).collect();
        for item in here {
            let k = attempts.binary_search(&item.attempt).expect("attempt listed");
            by_attempt[k].push(item);
        }
        for (attempt, group) in attempts.into_iter().zip(by_attempt) {
            if group.is_empty() {
                continue;
            }
            // Move the events into the call's batch; kept ones are moved back out.
            let (metas, mut events): (Vec<Meta>, Vec<Event>) = group.into_iter().map(Item::split).unzip();
            // Lent: an input that became outputs is not needed any more.
            let report = stage.runner.process_lent(attempt, &mut events);
            let tally = &mut tallies[s];
            tally.calls += report.calls as u64;
            tally.events += events.len() as u64;
            tally.call_us.push(report.elapsed_us);
            for ((meta, event), result) in metas.into_iter().zip(events).zip(report.results) {
                let item = meta.join(event);
                tally.fuel += result.fuel;
                match result.outcome {
                    Outcome::Keep => items.push(Item { stage: s + 1, attempt: 1, first_failed_at: None, ..item }),
                    Outcome::Drop => {}
                    Outcome::Emitted(outputs) => {
                        for event in outputs {
                            items.push(Item { entry: item.entry, event, stage: s + 1, attempt: 1, first_failed_at: None });
                        }
                    }
                    Outcome::Failed { kind, message } => {
                        tally.errors += 1;
                        let first = item.first_failed_at.unwrap_or(now_ms);
                        let result = &mut results[item.entry];
                        if kind == ErrorKind::Retryable && item.attempt < stage.retry.max_attempts {
                            tally.retries += 1;
                            let due = now_ms + stage.retry.backoff_ms(item.attempt, jitter()) as i64;
                            result.retries.push(Retry {
                                event: QueuedEvent {
                                    event: item.event,
                                    start_stage: Some(ReplayStart::Stage(stage.name.clone())),
                                    attempt: item.attempt + 1,
                                    first_failed_at: Some(first),
                                },
                                due_at_ms: due,
                            });
                        } else {
                            result.dead.push(DlqEntry {
                                dlq_id: String::new(),
                                event: item.event,
                                error: message,
                                error_kind: kind.into(),
                                failed_at: FailedAt::Stage {
                                    stage: stage.name.clone(),
                                    plugin: stage.plugin.clone(),
                                    plugin_version: stage.plugin_version,
                                },
                                attempts: item.attempt,
                                first_failed_at: first,
                                last_failed_at: now_ms,
                            });
                        }
                    }
                }
            }
        }
    }
    for item in items {
        results[item.entry].outputs.push(item.event);
    }
    for (entry, result) in results.iter_mut().enumerate() {
        // Retried events stay in the queue depth; everything else finished.
        result.finished = inputs[entry].saturating_sub(result.retries.len() as u64);
    }
    ChainRun { results, tallies, window_replays }
}
