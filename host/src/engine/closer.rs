//! The closer task of a pipeline: every `window_tick` it runs a closer pass
//! (the store's gate lets one process at a time do one) and checks the
//! spike rules.

use std::sync::atomic::Ordering;

use tokio::sync::watch;

use super::lifecycle::Shared;
use crate::domain::now_ms;
use crate::internal_events::{emit, CloseFenced, SpikeAlerted, StoreFailed, WindowsClosed};
use crate::window::closer::{close_pass, CloserConfig};
use crate::window::spike::SpikeWatch;

/// How long a closer may hold the close gate before another may take it.
const CLOSE_LEASE_MS: i64 = 10_000;

/// Closes windows and checks spike rules until stopped.
pub(super) async fn run(shared: Shared, mut stop: watch::Receiver<bool>) {
    let (engine, id) = (&shared.engine, shared.id.as_str());
    let mut spikes = SpikeWatch::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(engine.config.window_tick) => {}
            _ = stop.changed() => break,
        }
        let pipeline = shared.pipeline();
        if pipeline.windows.is_empty() {
            continue;
        }
        let defs = &pipeline.windows.defs;
        let spec = &pipeline.spec;
        let config = CloserConfig { idle_ms: spec.watermark_idle_ms as i64, lease_ms: CLOSE_LEASE_MS, max_future_ms: spec.max_future_ms as i64 };
        match close_pass(engine.store.as_ref(), id, defs, now_ms(), config).await {
            Ok(report) => {
                if report.fenced {
                    emit(CloseFenced { pipeline: id });
                }
                if let Some(wm) = report.watermark {
                    shared.watermark.store(wm, Ordering::Relaxed);
                }
                emit(WindowsClosed { pipeline: id, emitted: report.emitted.len(), finalized: report.finalized });
            }
            Err(e) => emit(StoreFailed { operation: "close_windows", pipeline: id, error: &e }),
        }
        match spikes.check(engine.store.as_ref(), id, defs, now_ms()).await {
            Ok(alerts) => {
                for alert in alerts {
                    emit(SpikeAlerted { pipeline: id, window: &alert.window, group: &alert.group, start: alert.start });
                }
            }
            Err(e) => emit(StoreFailed { operation: "spike_check", pipeline: id, error: &e }),
        }
    }
}
