//! Every log line and metric the host emits, from one typed place.

use crate::runtime::{Attribution, ErrorKind};

/// A `host.log` line from a plugin.
pub fn plugin_log(who: &Attribution, level: u8, message: &str, fields: &str) {
    let (pipeline, stage, plugin, version) = (&who.pipeline, &who.stage, &who.plugin, who.plugin_version);
    match level {
        0 => tracing::trace!(target: "sluice::plugin", pipeline, stage, plugin, version, fields, "{message}"),
        1 => tracing::debug!(target: "sluice::plugin", pipeline, stage, plugin, version, fields, "{message}"),
        2 => tracing::info!(target: "sluice::plugin", pipeline, stage, plugin, version, fields, "{message}"),
        3 => tracing::warn!(target: "sluice::plugin", pipeline, stage, plugin, version, fields, "{message}"),
        _ => tracing::error!(target: "sluice::plugin", pipeline, stage, plugin, version, fields, "{message}"),
    }
}

/// What a plugin printed to stdout/stderr during one call (capped).
pub fn plugin_output(who: &Attribution, stream: &str, text: &str, dropped_bytes: usize) {
    tracing::info!(target: "sluice::plugin", pipeline = %who.pipeline, stage = %who.stage, plugin = %who.plugin,
        version = who.plugin_version, stream, dropped_bytes, "{}", text.trim_end());
}

/// A plugin wrote more log lines in one call than allowed.
pub fn plugin_log_dropped(who: &Attribution, dropped: u32) {
    tracing::warn!(target: "sluice::plugin", pipeline = %who.pipeline, stage = %who.stage, plugin = %who.plugin,
        dropped, "plugin log lines dropped (over the per-call cap)");
}

/// A stage call trapped on an event; the instance was replaced.
pub fn stage_trap(who: &Attribution, event_id: &str, kind: ErrorKind, message: &str) {
    tracing::warn!(target: "sluice::runtime", pipeline = %who.pipeline, stage = %who.stage, plugin = %who.plugin,
        version = who.plugin_version, event_id, kind = kind.as_str(), "stage trapped: {message}");
}
