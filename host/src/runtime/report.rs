//! Everything the runtime reports about what happens inside it (guest logs
//! and output, traps, cache trouble), as typed calls in one place. Nothing
//! else in `runtime/` logs or counts: the host's log and metrics layer is
//! reached only through here, so retargeting it is a change to this file.

use std::path::Path;

use super::outcome::FailureKind;
use super::sandbox::Attribution;

/// A `host.log` line from a plugin (level 0 = trace … 4 = error), with its
/// fields already joined as `k=v` pairs.
pub(crate) fn guest_log(who: &Attribution, level: u8, message: &str, fields: &str) {
    crate::metrics::plugin_log(who, level, message, fields);
}

/// What a guest printed to `stream` (stdout or stderr) during one call,
/// capped; `dropped_bytes` is what went over the cap.
pub(crate) fn guest_output(who: &Attribution, stream: &str, text: &str, dropped_bytes: usize) {
    crate::metrics::plugin_output(who, stream, text, dropped_bytes);
}

/// `host.log` lines of one call dropped for going over the per-call caps.
pub(crate) fn guest_log_dropped(who: &Attribution, dropped: u32) {
    crate::metrics::plugin_log_dropped(who, dropped);
}

/// A call trapped on event `event_id`; its instance was thrown away.
pub(crate) fn stage_trap(who: &Attribution, event_id: &str, kind: FailureKind, message: &str) {
    crate::metrics::stage_trap(who, event_id, kind.into(), message);
}

/// The compiled-plugin cache file at `path` could not be used (`what`
/// says how); the plugin is compiled from its bytes instead.
pub(crate) fn cache_problem(path: &Path, what: &str, error: &str) {
    crate::metrics::plugin_cache_problem(path, what, error);
}
