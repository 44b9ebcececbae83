//! TRANSITIONAL: the runtime's calls, forwarded to `internal_events` until
//! the runtime emits them itself (removed at the merge).

use crate::internal_events::{emit, PluginCacheProblem, PluginLogDropped, PluginLogged, PluginPrinted, PluginRef, StageTrapped};
use crate::runtime::{Attribution, ErrorKind};

fn plugin_ref(who: &Attribution) -> PluginRef<'_> {
    PluginRef { pipeline: &who.pipeline, stage: &who.stage, plugin: &who.plugin, version: who.plugin_version }
}

pub fn plugin_log(who: &Attribution, level: u8, message: &str, fields: &str) {
    emit(PluginLogged { who: plugin_ref(who), level, message, fields });
}

pub fn plugin_output(who: &Attribution, stream: &str, text: &str, dropped_bytes: usize) {
    emit(PluginPrinted { who: plugin_ref(who), stream, text, dropped_bytes });
}

pub fn plugin_log_dropped(who: &Attribution, dropped: u32) {
    emit(PluginLogDropped { who: plugin_ref(who), dropped });
}

pub fn stage_trap(who: &Attribution, event_id: &str, kind: ErrorKind, message: &str) {
    emit(StageTrapped { who: plugin_ref(who), event_id, kind: kind.as_str(), message });
}

pub fn plugin_cache_problem(path: &std::path::Path, what: &str, error: &str) {
    emit(PluginCacheProblem { path, what, error });
}
