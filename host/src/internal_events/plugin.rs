//! What plugins do that the host reports: their log lines and output, and
//! the traps the sandbox caught. Every line names the pipeline, stage,
//! plugin and version it came from.

use super::InternalEvent;

/// Whom a plugin's line or failure is attributed to.
#[derive(Debug, Clone, Copy)]
pub struct PluginRef<'a> {
    pub pipeline: &'a str,
    pub stage: &'a str,
    pub plugin: &'a str,
    pub version: u32,
}

/// A `host.log` line from a plugin (`level`: 0 trace … 4 error).
pub struct PluginLogged<'a> {
    pub who: PluginRef<'a>,
    pub level: u8,
    pub message: &'a str,
    pub fields: &'a str,
}

impl InternalEvent for PluginLogged<'_> {
    fn emit(self) {
        let PluginRef { pipeline, stage, plugin, version } = self.who;
        let (message, fields) = (self.message, self.fields);
        match self.level {
            0 => tracing::trace!(target: "sluice::plugin", pipeline, stage, plugin, version, fields, "{message}"),
            1 => tracing::debug!(target: "sluice::plugin", pipeline, stage, plugin, version, fields, "{message}"),
            2 => tracing::info!(target: "sluice::plugin", pipeline, stage, plugin, version, fields, "{message}"),
            3 => tracing::warn!(target: "sluice::plugin", pipeline, stage, plugin, version, fields, "{message}"),
            _ => tracing::error!(target: "sluice::plugin", pipeline, stage, plugin, version, fields, "{message}"),
        }
    }
}

/// What a plugin printed to stdout/stderr during one call (capped).
pub struct PluginPrinted<'a> {
    pub who: PluginRef<'a>,
    pub stream: &'a str,
    pub text: &'a str,
    pub dropped_bytes: usize,
}

impl InternalEvent for PluginPrinted<'_> {
    fn emit(self) {
        let PluginRef { pipeline, stage, plugin, version } = self.who;
        tracing::info!(target: "sluice::plugin", pipeline, stage, plugin, version, stream = self.stream,
            dropped_bytes = self.dropped_bytes, "{}", self.text.trim_end());
    }
}

/// A plugin wrote more log lines or bytes in one call than allowed.
pub struct PluginLogDropped<'a> {
    pub who: PluginRef<'a>,
    pub dropped: u32,
}

impl InternalEvent for PluginLogDropped<'_> {
    fn emit(self) {
        let PluginRef { pipeline, stage, plugin, .. } = self.who;
        tracing::warn!(target: "sluice::plugin", pipeline, stage, plugin, dropped = self.dropped,
            "plugin log lines dropped (over the per-call cap)");
        metrics::counter!("sluice_plugin_log_lines_dropped_total", "pipeline" => pipeline.to_string(), "stage" => stage.to_string())
            .increment(u64::from(self.dropped));
    }
}

/// A stage call trapped on an event; the instance was replaced.
pub struct StageTrapped<'a> {
    pub who: PluginRef<'a>,
    pub event_id: &'a str,
    /// The failure kind's name (`fuel`, `memory`, `timeout`, …).
    pub kind: &'a str,
    pub message: &'a str,
}

impl InternalEvent for StageTrapped<'_> {
    fn emit(self) {
        let PluginRef { pipeline, stage, plugin, version } = self.who;
        tracing::warn!(target: "sluice::runtime", pipeline, stage, plugin, version, event_id = self.event_id, kind = self.kind,
            "stage trapped: {}", self.message);
    }
}

/// A compiled-plugin cache file could not be used or written (it is only a cache).
pub struct PluginCacheProblem<'a> {
    pub path: &'a std::path::Path,
    pub what: &'a str,
    pub error: &'a str,
}

impl InternalEvent for PluginCacheProblem<'_> {
    fn emit(self) {
        tracing::warn!(target: "sluice::runtime", path = %self.path.display(), "{}: {}", self.what, self.error);
    }
}

/// A compiled-plugin cache artifact did not verify against its MAC (changed
/// on disk, another plugin's artifact, another wasmtime or engine
/// configuration): it is not loaded as native code; the plugin is compiled
/// again from its component.
pub struct CompiledPluginRejected<'a> {
    pub path: &'a std::path::Path,
    pub why: &'a str,
}

impl InternalEvent for CompiledPluginRejected<'_> {
    fn emit(self) {
        tracing::warn!(target: "sluice::runtime", path = %self.path.display(),
            "compiled-plugin cache entry rejected, compiling the plugin again: {}", self.why);
        metrics::counter!("sluice_compiled_plugin_rejected_total").increment(1);
    }
}
