//! The `windows` part of a pipeline spec (API.md): what to aggregate, over
//! which event-time windows, grouped how, and when a window is late.

use serde::{Deserialize, Serialize};

/// Results are kept this long by default (the issue: 24 h).
pub const DEFAULT_RETENTION_MS: u64 = 86_400_000;
/// A sliding window is stored as `size_ms / slide_ms` panes; more than this
/// per window is refused (each result merges that many panes).
pub const MAX_PANES_PER_WINDOW: u64 = 10_000;
/// Windows per pipeline.
pub const MAX_WINDOWS: usize = 16;
/// Aggregates per window (the stores check stored rows against the same limit).
pub use crate::domain::MAX_AGGREGATES;

/// One window of a pipeline spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    pub name: String,
    pub kind: WindowKind,
    /// Tumbling and sliding: the window length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_ms: Option<u64>,
    /// Sliding: how far apart window starts are (also the pane length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slide_ms: Option<u64>,
    /// Session: the silence that ends a session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_ms: Option<u64>,
    /// A `data.*` path; omitted = one group for all events (`group: null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
    /// How long after the watermark passes a window's end it still takes
    /// updates (and re-emits); later events go to the DLQ as `late`.
    #[serde(default)]
    pub allowed_lateness_ms: u64,
    pub aggregates: Vec<Aggregate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spike: Option<SpikeRule>,
    /// How long closed results are kept.
    #[serde(default = "default_retention")]
    pub retention_ms: u64,
}

fn default_retention() -> u64 {
    DEFAULT_RETENTION_MS
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    Tumbling,
    Sliding,
    Session,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AggOp {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    CountDistinct,
}

impl AggOp {
    pub fn name(self) -> &'static str {
        match self {
            AggOp::Count => "count",
            AggOp::Sum => "sum",
            AggOp::Avg => "avg",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::CountDistinct => "count_distinct",
        }
    }
}

/// One aggregate: `{"op": "avg", "field": "data.ms"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Aggregate {
    pub op: AggOp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Raise an alert when a group's count in the current window passes
/// `factor` × the mean of its previous `baseline_windows` windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpikeRule {
    pub factor: f64,
    pub baseline_windows: u32,
    #[serde(default)]
    pub min_count: u64,
}

/// A window's shape, checked: what the rest of the code works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Tumbling (`slide == size`) or sliding; panes are `slide` long.
    Panes { size: i64, slide: i64 },
    /// Session windows; each event is its own point.
    Session { gap: i64 },
}

impl WindowSpec {
    /// The checked shape. Only valid after [`validate`](Self::validate).
    pub fn shape(&self) -> Shape {
        match self.kind {
            WindowKind::Tumbling => {
                let size = self.size_ms.unwrap_or(1) as i64;
                Shape::Panes { size, slide: size }
            }
            WindowKind::Sliding => Shape::Panes {
                size: self.size_ms.unwrap_or(1) as i64,
                slide: self.slide_ms.unwrap_or(1) as i64,
            },
            WindowKind::Session => Shape::Session { gap: self.gap_ms.unwrap_or(1) as i64 },
        }
    }

    pub fn lateness(&self) -> i64 {
        self.allowed_lateness_ms as i64
    }

    /// Checks the window; errors name the field, relative to `at` (e.g. `windows[1]`).
    pub fn validate(&self, at: &str) -> Result<(), String> {
        let bad = |field: &str, msg: String| Err(format!("invalid pipeline spec at `{at}.{field}`: {msg}"));
        if self.name.is_empty()
            || self.name.len() > 64
            || !self.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return bad("name", format!("{:?} must match [a-z0-9_-]{{1,64}}", self.name));
        }
        const DAY: u64 = 86_400_000;
        const YEAR: u64 = 366 * DAY;
        let positive = |field: &str, v: Option<u64>, max: u64| -> Result<u64, String> {
            match v {
                None => Err(format!("invalid pipeline spec at `{at}`: a {:?} window needs `{field}`", self.kind)),
                Some(0) => Err(format!("invalid pipeline spec at `{at}.{field}`: must be > 0")),
                Some(v) if v > max => Err(format!("invalid pipeline spec at `{at}.{field}`: at most {max}")),
                Some(v) => Ok(v),
            }
        };
        let unused = |field: &str, v: Option<u64>| -> Result<(), String> {
            match v {
                Some(_) => Err(format!("invalid pipeline spec at `{at}.{field}`: not used by a {:?} window", self.kind)),
                None => Ok(()),
            }
        };
        match self.kind {
            WindowKind::Tumbling => {
                positive("size_ms", self.size_ms, YEAR)?;
                unused("slide_ms", self.slide_ms)?;
                unused("gap_ms", self.gap_ms)?;
            }
            WindowKind::Sliding => {
                let size = positive("size_ms", self.size_ms, YEAR)?;
                let slide = positive("slide_ms", self.slide_ms, YEAR)?;
                unused("gap_ms", self.gap_ms)?;
                if slide > size || size % slide != 0 {
                    return bad("slide_ms", format!("must divide size_ms ({size}) evenly"));
                }
                if size / slide > MAX_PANES_PER_WINDOW {
                    return bad("slide_ms", format!("size_ms / slide_ms must be at most {MAX_PANES_PER_WINDOW}"));
                }
            }
            WindowKind::Session => {
                positive("gap_ms", self.gap_ms, 30 * DAY)?;
                unused("size_ms", self.size_ms)?;
                unused("slide_ms", self.slide_ms)?;
            }
        }
        if self.allowed_lateness_ms > 30 * DAY {
            return bad("allowed_lateness_ms", format!("at most {}", 30 * DAY));
        }
        if self.retention_ms == 0 || self.retention_ms > 30 * DAY {
            return bad("retention_ms", format!("must be 1 to {}", 30 * DAY));
        }
        if let Some(path) = &self.group_by {
            check_path(path).or_else(|e| bad("group_by", e))?;
        }
        if self.aggregates.is_empty() {
            return bad("aggregates", "list at least one aggregate".into());
        }
        if self.aggregates.len() > MAX_AGGREGATES {
            return bad("aggregates", format!("at most {MAX_AGGREGATES}"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, agg) in self.aggregates.iter().enumerate() {
            match (&agg.field, agg.op) {
                (None, AggOp::Count) => {}
                (None, op) => return bad(&format!("aggregates[{i}]"), format!("`{}` needs a `field`", op.name())),
                (Some(path), _) => check_path(path).or_else(|e| bad(&format!("aggregates[{i}].field"), e))?,
            }
            if !seen.insert(result_key(agg)) {
                return bad(&format!("aggregates[{i}]"), format!("duplicate aggregate `{}`", result_key(agg)));
            }
        }
        if let Some(spike) = &self.spike {
            if self.kind != WindowKind::Tumbling {
                return bad("spike", "spike rules apply to tumbling windows only".into());
            }
            if !(spike.factor.is_finite() && spike.factor > 0.0) {
                return bad("spike.factor", "must be a number > 0".into());
            }
            if spike.baseline_windows == 0 || spike.baseline_windows > 1000 {
                return bad("spike.baseline_windows", "must be 1 to 1000".into());
            }
        }
        Ok(())
    }
}

/// The name an aggregate's value has in a result: `count`, `avg_data.ms`, ...
pub fn result_key(agg: &Aggregate) -> String {
    match &agg.field {
        None => agg.op.name().to_string(),
        Some(field) => format!("{}_{field}", agg.op.name()),
    }
}

/// Field paths are `data.<key>[.<key>...]` (API.md: "any `data.*` field").
fn check_path(path: &str) -> Result<(), String> {
    let rest = path.strip_prefix("data.").ok_or_else(|| format!("{path:?} must be a `data.*` path"))?;
    if rest.is_empty() || rest.split('.').any(str::is_empty) || path.len() > 256 {
        return Err(format!("{path:?} is not a valid `data.*` path"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<WindowSpec, String> {
        let w: WindowSpec = serde_json::from_str(json).map_err(|e| e.to_string())?;
        w.validate("windows[0]")?;
        Ok(w)
    }

    #[test]
    fn api_examples_parse() {
        let w = parse(r#"{"name":"online_now","kind":"sliding","size_ms":300000,"slide_ms":1000,
            "aggregates":[{"op":"count_distinct","field":"data.user_id"}]}"#)
        .unwrap();
        assert_eq!(w.shape(), Shape::Panes { size: 300_000, slide: 1000 });
        assert_eq!(w.retention_ms, DEFAULT_RETENTION_MS);
        let w = parse(r#"{"name":"sessions","kind":"session","gap_ms":1800000,"group_by":"data.user_id","aggregates":[{"op":"count"}]}"#)
            .unwrap();
        assert_eq!(w.shape(), Shape::Session { gap: 1_800_000 });
    }

    #[test]
    fn bad_windows_name_the_field() {
        let cases = [
            (r#"{"name":"a","kind":"sliding","size_ms":1000,"slide_ms":300,"aggregates":[{"op":"count"}]}"#, "windows[0].slide_ms"),
            (r#"{"name":"a","kind":"tumbling","aggregates":[{"op":"count"}]}"#, "needs `size_ms`"),
            (r#"{"name":"a","kind":"tumbling","size_ms":0,"aggregates":[{"op":"count"}]}"#, "windows[0].size_ms"),
            (r#"{"name":"a","kind":"tumbling","size_ms":10,"aggregates":[{"op":"avg"}]}"#, "needs a `field`"),
            (r#"{"name":"a","kind":"tumbling","size_ms":10,"aggregates":[{"op":"sum","field":"ms"}]}"#, "data.*"),
            (r#"{"name":"a","kind":"tumbling","size_ms":10,"aggregates":[]}"#, "at least one aggregate"),
            (r#"{"name":"A","kind":"tumbling","size_ms":10,"aggregates":[{"op":"count"}]}"#, "windows[0].name"),
            (r#"{"name":"a","kind":"session","gap_ms":10,"aggregates":[{"op":"count"}],"spike":{"factor":2,"baseline_windows":3}}"#, "tumbling windows only"),
            (r#"{"name":"a","kind":"session","gap_ms":10,"size_ms":5,"aggregates":[{"op":"count"}]}"#, "windows[0].size_ms"),
        ];
        for (json, want) in cases {
            let err = parse(json).unwrap_err();
            assert!(err.contains(want), "{json}: {err}");
        }
        assert!(parse(r#"{"name":"a","kind":"hopping","size_ms":10,"aggregates":[{"op":"count"}]}"#).is_err());
    }
}
