//! The pipeline spec (API.md), parsed and checked. Every problem is reported
//! with the path of the offending field.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::MAX_DEDUP_WINDOW_MS;
use crate::runtime::StageLimits;
use crate::sinks::spec::{SinkSpec, MAX_SINKS};
use crate::window::WindowSpec;

/// Default bound on a pipeline's queue depth.
pub const DEFAULT_MAX_QUEUE_DEPTH: u64 = 100_000;

/// A pipeline spec as stored: stages with resolved plugin versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    #[schema(min_items = 1, max_items = 32)]
    pub stages: Vec<StageDecl>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowSpec>,
    #[serde(default = "default_depth")]
    pub max_queue_depth: u64,
    /// Bytes of queued events (accepted, not finished) the queue may hold;
    /// a request that would pass it is refused whole with 429.
    #[serde(default = "default_queue_bytes", skip_serializing_if = "is_default_queue_bytes")]
    pub max_queue_bytes: u64,
    /// How far ahead of the server's clock an event's `timestamp` may be
    /// (further is a per-event rejection); the watermark never passes the
    /// clock plus this.
    #[serde(default = "default_max_future", skip_serializing_if = "is_default_max_future")]
    pub max_future_ms: u64,
    /// After this long without events the watermark advances with
    /// processing time, so a quiet pipeline still closes its windows.
    #[serde(default = "default_idle", skip_serializing_if = "is_default_idle")]
    pub watermark_idle_ms: u64,
    /// Outputs older than this are deleted from the output stream (0: kept
    /// until someone trims them). Downstream consumers read them long before.
    #[serde(default = "default_output_retention", skip_serializing_if = "is_default_output_retention")]
    pub output_retention_ms: u64,
    /// When > 0, an event whose `id` was accepted into this pipeline less
    /// than this many ms ago is not queued again (a producer's resend is
    /// harmless); the store keeps the ids of that long, so at most 24 h.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dedup_window_ms: u64,
    /// Where the pipeline's outputs (or a window's results) are delivered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<SinkSpec>,
    /// When a sink has more events than this waiting, ingest answers 429
    /// (a slow destination pushes back on producers).
    #[serde(default = "default_max_sink_lag", skip_serializing_if = "is_default_max_sink_lag")]
    pub max_sink_lag: u64,
}

/// Default for `max_sink_lag` (API.md).
pub const DEFAULT_MAX_SINK_LAG: u64 = 100_000;

fn default_max_sink_lag() -> u64 {
    DEFAULT_MAX_SINK_LAG
}

fn is_default_max_sink_lag(v: &u64) -> bool {
    *v == DEFAULT_MAX_SINK_LAG
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Default for `output_retention_ms`: one day.
pub const DEFAULT_OUTPUT_RETENTION_MS: u64 = 86_400_000;

/// Longest `output_retention_ms` (a year).
const MAX_OUTPUT_RETENTION_MS: u64 = 365 * 86_400_000;

fn default_output_retention() -> u64 {
    DEFAULT_OUTPUT_RETENTION_MS
}

fn is_default_output_retention(v: &u64) -> bool {
    *v == DEFAULT_OUTPUT_RETENTION_MS
}

/// Default for `max_queue_bytes`: 1 GiB.
pub const DEFAULT_MAX_QUEUE_BYTES: u64 = 1 << 30;
/// Default for `max_future_ms`: an hour.
pub const DEFAULT_MAX_FUTURE_MS: u64 = 3_600_000;
/// Longest `max_future_ms` (a year).
const MAX_MAX_FUTURE_MS: u64 = 365 * 86_400_000;

fn default_queue_bytes() -> u64 {
    DEFAULT_MAX_QUEUE_BYTES
}

fn is_default_queue_bytes(v: &u64) -> bool {
    *v == DEFAULT_MAX_QUEUE_BYTES
}

fn default_max_future() -> u64 {
    DEFAULT_MAX_FUTURE_MS
}

fn is_default_max_future(v: &u64) -> bool {
    *v == DEFAULT_MAX_FUTURE_MS
}

/// Default for `watermark_idle_ms`.
pub const DEFAULT_WATERMARK_IDLE_MS: u64 = 10_000;

fn default_idle() -> u64 {
    DEFAULT_WATERMARK_IDLE_MS
}

fn is_default_idle(v: &u64) -> bool {
    *v == DEFAULT_WATERMARK_IDLE_MS
}

fn default_depth() -> u64 {
    DEFAULT_MAX_QUEUE_DEPTH
}

/// One stage of a spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageDecl {
    pub name: String,
    pub plugin: String,
    /// Omitted: the latest version when the spec is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub config: Value,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub limits: StageLimits,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// Retries of transient failures: exponential backoff with jitter, bounded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Tries in all, the first included (1 = no retries).
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 3, initial_backoff_ms: 100, max_backoff_ms: 5_000 }
    }
}

impl RetryPolicy {
    /// The wait before try `attempt + 1` after try `attempt` failed:
    /// `initial × 2^(attempt-1)`, capped, with ±20% jitter.
    pub fn backoff_ms(&self, attempt: u32, jitter: f64) -> u64 {
        let exp = self.initial_backoff_ms.saturating_mul(1u64 << (attempt.saturating_sub(1)).min(30));
        let capped = exp.min(self.max_backoff_ms) as f64;
        (capped * (0.8 + 0.4 * jitter.clamp(0.0, 1.0))).round() as u64
    }
}

/// Ids of pipelines, plugins, tables: `[a-z0-9-]{1,64}` (API.md).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl PipelineSpec {
    /// The stages' names, in order.
    pub fn stage_names(&self) -> Vec<String> {
        self.stages.iter().map(|s| s.name.clone()).collect()
    }

    /// Parses spec JSON, naming the field at fault.
    pub fn parse(text: &[u8]) -> Result<PipelineSpec, String> {
        let de = &mut serde_json::Deserializer::from_slice(text);
        let spec: PipelineSpec = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." { format!("invalid pipeline spec: {}", e.inner()) } else { format!("invalid pipeline spec at `{path}`: {}", e.inner()) }
        })?;
        spec.validate()?;
        Ok(spec)
    }

    fn validate(&self) -> Result<(), String> {
        if self.stages.is_empty() {
            return Err("invalid pipeline spec: `stages` must list at least one stage".into());
        }
        if self.stages.len() > 32 {
            return Err("invalid pipeline spec: at most 32 stages".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, stage) in self.stages.iter().enumerate() {
            let at = format!("stages[{i}]");
            if !valid_name(&stage.name) {
                return Err(format!("invalid pipeline spec at `{at}.name`: {:?} must match [a-z0-9-]{{1,64}}", stage.name));
            }
            if !names.insert(stage.name.as_str()) {
                return Err(format!("invalid pipeline spec at `{at}.name`: duplicate stage name {:?}", stage.name));
            }
            if !valid_name(&stage.plugin) {
                return Err(format!("invalid pipeline spec at `{at}.plugin`: {:?} must match [a-z0-9-]{{1,64}}", stage.plugin));
            }
            if !stage.config.is_object() {
                return Err(format!("invalid pipeline spec at `{at}.config`: must be a JSON object"));
            }
            stage.limits.validate().map_err(|e| format!("invalid pipeline spec at `{at}`: {e}"))?;
            let retry = &stage.retry;
            if retry.max_attempts == 0 || retry.max_attempts > 100 {
                return Err(format!("invalid pipeline spec at `{at}.retry.max_attempts`: must be 1 to 100"));
            }
            if retry.initial_backoff_ms == 0 || retry.max_backoff_ms < retry.initial_backoff_ms || retry.max_backoff_ms > 3_600_000 {
                return Err(format!(
                    "invalid pipeline spec at `{at}.retry`: need 0 < initial_backoff_ms <= max_backoff_ms <= 3600000"
                ));
            }
        }
        if self.max_queue_depth == 0 || self.max_queue_depth > 100_000_000 {
            return Err("invalid pipeline spec at `max_queue_depth`: must be 1 to 100000000".into());
        }
        if !(1024..=(1u64 << 40)).contains(&self.max_queue_bytes) {
            return Err("invalid pipeline spec at `max_queue_bytes`: must be 1024 to 1099511627776 (1 TiB)".into());
        }
        if self.max_future_ms == 0 || self.max_future_ms > MAX_MAX_FUTURE_MS {
            return Err(format!("invalid pipeline spec at `max_future_ms`: must be 1 to {MAX_MAX_FUTURE_MS} (a year)"));
        }
        if self.windows.len() > crate::window::spec::MAX_WINDOWS {
            return Err(format!("invalid pipeline spec at `windows`: at most {} windows", crate::window::spec::MAX_WINDOWS));
        }
        let mut names = std::collections::HashSet::new();
        for (i, window) in self.windows.iter().enumerate() {
            window.validate(&format!("windows[{i}]"))?;
            if !names.insert(window.name.as_str()) {
                return Err(format!("invalid pipeline spec at `windows[{i}].name`: duplicate window name {:?}", window.name));
            }
        }
        if self.watermark_idle_ms == 0 || self.watermark_idle_ms > 86_400_000 {
            return Err("invalid pipeline spec at `watermark_idle_ms`: must be 1 to 86400000".into());
        }
        if self.output_retention_ms != 0 && !(1_000..=MAX_OUTPUT_RETENTION_MS).contains(&self.output_retention_ms) {
            return Err(format!(
                "invalid pipeline spec at `output_retention_ms`: must be 1000 to {MAX_OUTPUT_RETENTION_MS} (ms), or 0 to keep outputs until they are trimmed by hand"
            ));
        }
        self.validate_sinks()?;
        if self.dedup_window_ms > MAX_DEDUP_WINDOW_MS {
            return Err(format!(
                "invalid pipeline spec at `dedup_window_ms`: must be 0 (off) to {MAX_DEDUP_WINDOW_MS} (24 h); the store keeps every id accepted within the window"
            ));
        }
        Ok(())
    }

    fn validate_sinks(&self) -> Result<(), String> {
        if self.sinks.len() > MAX_SINKS {
            return Err(format!("invalid pipeline spec at `sinks`: at most {MAX_SINKS} sinks"));
        }
        if self.max_sink_lag == 0 || self.max_sink_lag > 100_000_000 {
            return Err("invalid pipeline spec at `max_sink_lag`: must be 1 to 100000000".into());
        }
        let windows: Vec<&str> = self.windows.iter().map(|w| w.name.as_str()).collect();
        let mut names = std::collections::HashSet::new();
        for (i, sink) in self.sinks.iter().enumerate() {
            sink.validate(&format!("sinks[{i}]"), &windows)?;
            if !names.insert(sink.name.as_str()) {
                return Err(format!("invalid pipeline spec at `sinks[{i}].name`: duplicate sink name {:?}", sink.name));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_api_example_and_names_bad_fields() {
        let spec = PipelineSpec::parse(br#"{"stages":[{"name":"drop-bots","plugin":"bot-filter","version":2,
            "config":{"patterns":["bot"]},"retry":{"max_attempts":4,"initial_backoff_ms":100,"max_backoff_ms":5000},
            "limits":{"fuel":5000000,"memory_mb":32,"timeout_ms":200}}],"max_queue_depth":100000}"#)
        .unwrap();
        assert_eq!(spec.stages[0].limits.memory_mb, 32);
        assert_eq!(spec.stages[0].retry.max_attempts, 4);
        let err = PipelineSpec::parse(br#"{"stages":[{"name":"a","plugin":"p","limits":{"fuel":"x"}}]}"#).unwrap_err();
        assert!(err.contains("stages[0].limits.fuel"), "{err}");
        let err = PipelineSpec::parse(br#"{"stages":[{"name":"A","plugin":"p"}]}"#).unwrap_err();
        assert!(err.contains("stages[0].name"), "{err}");
        let err = PipelineSpec::parse(br#"{"stages":[]}"#).unwrap_err();
        assert!(err.contains("at least one stage"), "{err}");
        let err = PipelineSpec::parse(br#"{"stages":[{"name":"a","plugin":"p"}],"colour":1}"#).unwrap_err();
        assert!(err.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn output_retention_defaults_to_a_day_and_is_bounded() {
        let spec = PipelineSpec::parse(br#"{"stages":[{"name":"a","plugin":"p"}]}"#).unwrap();
        assert_eq!(spec.output_retention_ms, DEFAULT_OUTPUT_RETENTION_MS);
        for ok in [0u64, 1000, 365 * 86_400_000] {
            let text = format!(r#"{{"stages":[{{"name":"a","plugin":"p"}}],"output_retention_ms":{ok}}}"#);
            assert_eq!(PipelineSpec::parse(text.as_bytes()).unwrap().output_retention_ms, ok);
        }
        for bad in [999u64, 365 * 86_400_000 + 1] {
            let text = format!(r#"{{"stages":[{{"name":"a","plugin":"p"}}],"output_retention_ms":{bad}}}"#);
            let err = PipelineSpec::parse(text.as_bytes()).unwrap_err();
            assert!(err.contains("`output_retention_ms`: must be 1000 to"), "{err}");
        }
    }

    #[test]
    fn future_and_byte_bounds_default_and_are_checked() {
        let spec = PipelineSpec::parse(br#"{"stages":[{"name":"a","plugin":"p"}]}"#).unwrap();
        assert_eq!((spec.max_future_ms, spec.max_queue_bytes), (DEFAULT_MAX_FUTURE_MS, DEFAULT_MAX_QUEUE_BYTES));
        let spec = PipelineSpec::parse(br#"{"stages":[{"name":"a","plugin":"p"}],"max_future_ms":5000,"max_queue_bytes":4096}"#).unwrap();
        assert_eq!((spec.max_future_ms, spec.max_queue_bytes), (5000, 4096));
        for bad in [r#""max_future_ms":0"#, r#""max_future_ms":31536000001"#, r#""max_queue_bytes":10"#] {
            let text = format!(r#"{{"stages":[{{"name":"a","plugin":"p"}}],{bad}}}"#);
            let err = PipelineSpec::parse(text.as_bytes()).unwrap_err();
            assert!(err.contains(bad.split(':').next().unwrap().trim_matches('"')), "{err}");
        }
    }

    #[test]
    fn dedup_window_defaults_to_off_and_is_at_most_a_day() {
        let spec = PipelineSpec::parse(br#"{"stages":[{"name":"a","plugin":"p"}]}"#).unwrap();
        assert_eq!(spec.dedup_window_ms, 0);
        assert!(!serde_json::to_string(&spec).unwrap().contains("dedup_window_ms"), "the default is not echoed");
        for ok in [1u64, 60_000, 86_400_000] {
            let text = format!(r#"{{"stages":[{{"name":"a","plugin":"p"}}],"dedup_window_ms":{ok}}}"#);
            assert_eq!(PipelineSpec::parse(text.as_bytes()).unwrap().dedup_window_ms, ok);
        }
        let err = PipelineSpec::parse(br#"{"stages":[{"name":"a","plugin":"p"}],"dedup_window_ms":86400001}"#).unwrap_err();
        assert!(err.contains("`dedup_window_ms`: must be 0 (off) to 86400000"), "{err}");
    }

    #[test]
    fn backoff_grows_and_caps() {
        let r = RetryPolicy { max_attempts: 5, initial_backoff_ms: 100, max_backoff_ms: 1000 };
        assert_eq!(r.backoff_ms(1, 0.5), 100);
        assert_eq!(r.backoff_ms(2, 0.5), 200);
        assert_eq!(r.backoff_ms(5, 0.5), 1000);
        assert_eq!(r.backoff_ms(3, 0.0), 320);
        assert_eq!(r.backoff_ms(3, 1.0), 480);
    }
}
