//! Everything the runtime reports about what happens inside it (guest logs
//! and output, traps, cache trouble), as typed internal events, attributed
//! to the pipeline, stage and plugin. Nothing else in `runtime/` logs or
//! counts.

use std::path::Path;

use super::outcome::FailureKind;
use super::sandbox::Attribution;
use crate::internal_events::{emit, CompiledPluginRejected, PluginCacheProblem, PluginLogDropped, PluginLogged, PluginPrinted, PluginRef, StageTrapped};

fn plugin_ref(who: &Attribution) -> PluginRef<'_> {
    PluginRef { pipeline: &who.pipeline, stage: &who.stage, plugin: &who.plugin, version: who.plugin_version }
}

/// A `host.log` line from a plugin (level 0 = trace … 4 = error), with its
/// fields already joined as `k=v` pairs.
pub(crate) fn guest_log(who: &Attribution, level: u8, message: &str, fields: &str) {
    emit(PluginLogged { who: plugin_ref(who), level, message, fields });
}

/// What a guest printed to `stream` (stdout or stderr) during one call,
/// capped; `dropped_bytes` is what went over the cap.
pub(crate) fn guest_output(who: &Attribution, stream: &str, text: &str, dropped_bytes: usize) {
    emit(PluginPrinted { who: plugin_ref(who), stream, text, dropped_bytes });
}

/// `host.log` lines of one call dropped for going over the per-call caps.
pub(crate) fn guest_log_dropped(who: &Attribution, dropped: u32) {
    emit(PluginLogDropped { who: plugin_ref(who), dropped });
}

/// A call trapped on event `event_id`; its instance was thrown away.
pub(crate) fn stage_trap(who: &Attribution, event_id: &str, kind: FailureKind, message: &str) {
    emit(StageTrapped { who: plugin_ref(who), event_id, kind: kind.as_str(), message });
}

/// The compiled-plugin cache file at `path` could not be used (`what`
/// says how); the plugin is compiled from its bytes instead.
pub(crate) fn cache_problem(path: &Path, what: &str, error: &str) {
    emit(PluginCacheProblem { path, what, error });
}

/// The cached artifact at `path` did not verify (`why`); it is not loaded,
/// the plugin is compiled again and the entry rewritten.
pub(crate) fn cache_rejected(path: &Path, why: &str) {
    emit(CompiledPluginRejected { path, why });
}
