//! Running queued events through a pipeline's stages: what leaves the last
//! stage, what is filtered, what is retried later and what is dead-lettered.
//! Pure and synchronous (it runs on a blocking thread); the worker turns the
//! result into one atomic store update.

use std::sync::Arc;

use crate::domain::Event;
use crate::domain::{DlqEntry, EntryResult, FailedAt, QueuedEvent, ReplayStart, Retry};
use crate::runtime::{BatchReport, FailureKind, Outcome, StageRunner};

use super::spec::RetryPolicy;

/// What the chain needs of a stage: run a batch of events (all on the same
/// attempt) and say what became of each. [`StageRunner`] is the real one
/// (WASM in the sandbox); tests and the chain benchmark give native ones.
pub trait StageProcess: Send + Sync {
    /// See [`StageRunner::process_lent`]: an input whose outcome is
    /// `Emitted` may be left with empty strings.
    fn process_lent(&self, attempt: u32, events: &mut [Event]) -> BatchReport;
}

impl StageProcess for StageRunner {
    fn process_lent(&self, attempt: u32, events: &mut [Event]) -> BatchReport {
        StageRunner::process_lent(self, attempt, events)
    }
}

/// One stage as the engine runs it.
pub struct ChainStage {
    pub name: String,
    pub plugin: String,
    pub plugin_version: u32,
    pub retry: RetryPolicy,
    pub runner: Arc<dyn StageProcess>,
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
                // A sink replay belongs on that sink's redelivery list (the
                // store puts it there); one found on the queue anyway has
                // been through the stages: it goes to the output.
                Some(ReplayStart::Sink(_)) => (stages.len(), 1),
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
                        if kind == FailureKind::Retryable && item.attempt < stage.retry.max_attempts {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ErrorKind as DlqKind, FailedAt, ReplayStart};
    use crate::runtime::EventResult;

    /// A native stage deciding each event's outcome from (attempt, event).
    struct Fake<F>(F);

    impl<F: Fn(u32, &Event) -> Outcome + Send + Sync> StageProcess for Fake<F> {
        fn process_lent(&self, attempt: u32, events: &mut [Event]) -> BatchReport {
            let results = events.iter().map(|e| EventResult { outcome: (self.0)(attempt, e), fuel: 10 }).collect();
            BatchReport { results, calls: 1, traps: 0, elapsed_us: 5 }
        }
    }

    fn stage(name: &str, max_attempts: u32, decide: impl Fn(u32, &Event) -> Outcome + Send + Sync + 'static) -> ChainStage {
        ChainStage {
            name: name.into(),
            plugin: format!("{name}-plugin"),
            plugin_version: 3,
            retry: RetryPolicy { max_attempts, initial_backoff_ms: 100, max_backoff_ms: 1000 },
            runner: Arc::new(Fake(decide)),
        }
    }

    fn event(id: &str) -> Event {
        Event { id: id.into(), kind: "v".into(), source: "t".into(), timestamp: 1, data: "{}".into() }
    }

    fn entry(id: &str, ids: &[&str]) -> (String, Vec<QueuedEvent>) {
        (id.into(), ids.iter().map(|i| QueuedEvent::new(event(i))).collect())
    }

    fn ids(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.id.as_str()).collect()
    }

    const NOW: i64 = 1_000_000;

    #[test]
    fn keeps_drops_and_fans_out_per_entry() {
        let stages = [
            stage("filter", 3, |_, e| if e.id.starts_with("bot") { Outcome::Drop } else { Outcome::Keep }),
            stage("split", 3, |_, e| {
                if e.id == "a" {
                    Outcome::Emitted(vec![event("a1"), event("a2")])
                } else {
                    Outcome::Keep
                }
            }),
        ];
        let run = run_chain(&stages, vec![entry("e1", &["a", "bot1"]), entry("e2", &["b"])], NOW, || 0.5);
        assert_eq!(run.results.len(), 2);
        assert_eq!((run.results[0].delivery_id.as_str(), ids(&run.results[0].outputs)), ("e1", vec!["a1", "a2"]));
        assert_eq!(ids(&run.results[1].outputs), vec!["b"]);
        assert_eq!((run.results[0].finished, run.results[1].finished), (2, 1), "emitted, filtered and kept all finish");
        assert!(run.results.iter().all(|r| r.dead.is_empty() && r.retries.is_empty()));
        assert_eq!((run.tallies[0].calls, run.tallies[0].events, run.tallies[0].fuel), (1, 3, 30));
        assert_eq!((run.tallies[1].events, run.tallies[1].call_us.clone()), (2, vec![5]));
    }

    #[test]
    fn retries_with_backoff_then_dead_letters() {
        let flaky = [stage("ok", 3, |_, _| Outcome::Keep), stage("flaky", 3, |_, _| Outcome::Failed { kind: FailureKind::Retryable, message: "busy".into() })];
        let run = run_chain(&flaky, vec![entry("e", &["x"])], NOW, || 0.5);
        let result = &run.results[0];
        assert_eq!(result.finished, 0, "a retried event is still in the queue depth");
        assert_eq!(result.retries.len(), 1);
        let retry = &result.retries[0];
        assert_eq!(retry.due_at_ms, NOW + 100);
        assert_eq!(retry.event.start_stage, Some(ReplayStart::Stage("flaky".into())));
        assert_eq!((retry.event.attempt, retry.event.first_failed_at), (2, Some(NOW)));
        assert_eq!((run.tallies[1].errors, run.tallies[1].retries), (1, 1));

        // The last allowed attempt, resumed at its stage: to the DLQ with full context.
        let last = QueuedEvent { attempt: 3, first_failed_at: Some(7), ..retry.event.clone() };
        let run = run_chain(&flaky, vec![("e".into(), vec![last])], NOW, || 0.5);
        assert_eq!(run.tallies[0].events, 0, "resumed at the failing stage, not before it");
        let dead = &run.results[0].dead[0];
        assert_eq!((dead.error_kind, dead.error.as_str(), dead.attempts), (DlqKind::Retryable, "busy", 3));
        assert_eq!((dead.first_failed_at, dead.last_failed_at), (7, NOW));
        assert_eq!(dead.failed_at, FailedAt::Stage { stage: "flaky".into(), plugin: "flaky-plugin".into(), plugin_version: 3 });
        assert_eq!(run.results[0].finished, 1);
    }

    #[test]
    fn rejections_and_traps_are_not_retried() {
        let stages = [stage("check", 5, |_, e| match e.id.as_str() {
            "r" => Outcome::Failed { kind: FailureKind::Rejected, message: "bad".into() },
            "f" => Outcome::Failed { kind: FailureKind::Fuel, message: "out of fuel".into() },
            _ => Outcome::Keep,
        })];
        let run = run_chain(&stages, vec![entry("e", &["r", "ok", "f"])], NOW, || 0.5);
        let result = &run.results[0];
        assert_eq!(ids(&result.outputs), vec!["ok"]);
        let kinds: Vec<(DlqKind, u32)> = result.dead.iter().map(|d| (d.error_kind, d.attempts)).collect();
        assert_eq!(kinds, vec![(DlqKind::Rejected, 1), (DlqKind::Fuel, 1)]);
        assert!(result.retries.is_empty());
        assert_eq!(result.finished, 3);
    }

    #[test]
    fn replays_start_where_they_failed_or_at_their_window() {
        let seen = |name: &'static str| stage(name, 3, move |attempt, e| Outcome::Emitted(vec![Event { id: format!("{}>{name}@{attempt}", e.id), ..e.clone() }]));
        let stages = [seen("one"), seen("two")];
        let queued = vec![
            QueuedEvent { start_stage: Some(ReplayStart::Stage("two".into())), attempt: 2, ..QueuedEvent::new(event("b")) },
            QueuedEvent { start_stage: Some(ReplayStart::Stage("gone".into())), attempt: 4, ..QueuedEvent::new(event("g")) },
            QueuedEvent { start_stage: Some(ReplayStart::Window("w".into())), ..QueuedEvent::new(event("late")) },
        ];
        let run = run_chain(&stages, vec![("e".into(), queued)], NOW, || 0.5);
        let mut outputs = ids(&run.results[0].outputs);
        outputs.sort();
        assert_eq!(outputs, vec!["b>two@2", "g>one@1>two@1"], "a stage gone from the spec restarts at the first, attempt 1");
        assert_eq!(run.window_replays[0].len(), 1);
        assert_eq!((run.window_replays[0][0].0.as_str(), run.window_replays[0][0].1.id.as_str()), ("w", "late"));
        assert_eq!(run.results[0].finished, 3);
    }
}
