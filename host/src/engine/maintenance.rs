//! A pipeline's housekeeping, every 100 ms in a process with workers:
//! promote retries that are due, apply the output retention (every 5 s) and
//! take over entries a silent worker (in any process) left pending. A
//! reclaimed batch runs in a task of its own (at most one at a time per
//! pipeline), never inside this loop, so retries and trimming go on while
//! it runs.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::lifecycle::Shared;
use super::worker;
use crate::domain::now_ms;
use crate::internal_events::{emit, EntriesReclaimed, StoreFailed};

/// Most retries moved back into the queue per pass.
const PROMOTE_PER_PASS: usize = 10_000;

/// The maintenance task of one pipeline, until stopped.
pub(super) async fn run(shared: Shared, mut stop: watch::Receiver<bool>) {
    let (engine, id) = (&shared.engine, shared.id.as_str());
    let consumer = format!("{}-reclaim", engine.config.consumer_prefix);
    let mut tick: u64 = 0;
    // The reclaimed batch being run, if any.
    let mut reclaimed: Option<JoinHandle<()>> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => break,
        }
        tick += 1;
        if let Err(e) = engine.store.promote_retries(id, now_ms(), PROMOTE_PER_PASS).await {
            emit(StoreFailed { operation: "promote_retries", pipeline: id, error: &e });
        }
        // Output retention, every 5 s (one `XTRIM` or one transaction).
        if tick % 50 == 0 {
            let retention = shared.pipeline().spec.output_retention_ms;
            if retention > 0 {
                let before = now_ms().saturating_sub(retention as i64);
                if let Err(e) = engine.store.trim_output(id, before).await {
                    emit(StoreFailed { operation: "trim_output", pipeline: id, error: &e });
                }
            }
        }
        let every = (engine.config.reclaim_idle_ms / 400).clamp(1, 50);
        let idle = reclaimed.as_ref().is_none_or(|task| task.is_finished());
        if tick % every == 0 && idle {
            match engine.store.reclaim(id, &consumer, engine.config.reclaim_idle_ms, engine.config.read_entries).await {
                Ok(deliveries) if !deliveries.is_empty() => {
                    emit(EntriesReclaimed { pipeline: id, entries: deliveries.len() });
                    let (shared, consumer) = (shared.clone(), consumer.clone());
                    reclaimed = Some(tokio::spawn(async move { worker::process(&shared, &consumer, deliveries).await }));
                }
                Ok(_) => {}
                Err(e) => emit(StoreFailed { operation: "reclaim", pipeline: id, error: &e }),
            }
        }
    }
    // Stopping waits for the batch in hand, as a worker does.
    if let Some(task) = reclaimed {
        let _ = task.await;
    }
}
