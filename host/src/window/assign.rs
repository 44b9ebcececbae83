//! From a batch's output events to the store updates of its windows.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::spec::{AggOp, Shape, WindowSpec};
use crate::domain::Event;
use crate::domain::{PaneAgg, PaneDelta, NO_WATERMARK};

/// A pipeline's windows, with their field paths split once.
#[derive(Debug, Clone, Default)]
pub struct WindowSet {
    pub defs: Vec<WindowSpec>,
    compiled: Vec<Compiled>,
    /// Every top-level `data` key some window reads.
    top_keys: Vec<String>,
}

#[derive(Debug, Clone)]
struct Compiled {
    shape: Shape,
    group: Option<FieldRef>,
    /// Per aggregate: the field it reads, if any.
    fields: Vec<Option<FieldRef>>,
}

/// A `data.*` path: which of the set's top-level keys it starts at, and the
/// keys below that.
#[derive(Debug, Clone)]
struct FieldRef {
    top: usize,
    rest: Vec<String>,
}

/// An event that came too late for a window definition.
#[derive(Debug, Clone, PartialEq)]
pub struct LateEvent {
    pub event: Event,
    pub window: String,
    /// The newest window covering the event (the one it missed last).
    pub start: i64,
    pub end: i64,
}

/// What one entry's events do to the windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub deltas: Vec<PaneDelta>,
    pub late: Vec<LateEvent>,
    pub max_event_ts: Option<i64>,
    /// The decisions hold while the stored watermark is below this: from
    /// here on some counted update would be late (`i64::MAX`: never).
    pub valid_below: i64,
}

impl Default for Assignment {
    fn default() -> Self {
        Assignment { deltas: Vec::new(), late: Vec::new(), max_event_ts: None, valid_below: i64::MAX }
    }
}

fn split_path(path: &str) -> Vec<String> {
    path.trim_start_matches("data.").split('.').map(str::to_string).collect()
}

/// A field's value in one event: the raw JSON text of a top-level member
/// (no parse), or a parsed value for nested paths. Never JSON `null`.
enum Found<'a> {
    Raw(&'a str),
    Parsed(Value),
}

impl Found<'_> {
    /// The value as a finite number; anything else (a string, `1e400`,
    /// which reads as infinity) is not a number for the aggregates.
    fn as_f64(&self) -> Option<f64> {
        let x = match self {
            Found::Raw(t) if t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => t.parse().ok(),
            Found::Raw(_) => None,
            Found::Parsed(v) => v.as_f64(),
        };
        x.filter(|x| x.is_finite())
    }

    /// Canonical JSON text (the group key).
    fn key(&self) -> String {
        match self {
            // A string without escapes is already in serde_json's form.
            Found::Raw(t) if t.starts_with('"') && !t.contains('\\') => t.to_string(),
            Found::Raw(t) => serde_json::from_str::<Value>(t).map(|v| v.to_string()).unwrap_or_else(|_| t.to_string()),
            Found::Parsed(v) => v.to_string(),
        }
    }

    /// The text a value is counted as distinct by (strings without quotes).
    fn distinct_text(&self) -> String {
        match self {
            Found::Raw(t) if t.starts_with('"') && !t.contains('\\') => t[1..t.len() - 1].to_string(),
            Found::Raw(t) => match serde_json::from_str::<Value>(t) {
                Ok(Value::String(s)) => s,
                Ok(v) => v.to_string(),
                Err(_) => t.to_string(),
            },
            Found::Parsed(Value::String(s)) => s.clone(),
            Found::Parsed(v) => v.to_string(),
        }
    }
}

/// The members of the JSON object `data` named by `keys`, as raw text, in
/// one pass that skips everything else without building values.
fn pick<'a>(data: &'a str, keys: &[String]) -> Vec<Option<&'a str>> {
    struct Picker<'k>(&'k [String]);
    impl<'de> serde::de::DeserializeSeed<'de> for Picker<'_> {
        type Value = Vec<Option<&'de str>>;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> serde::de::Visitor<'de> for Picker<'_> {
        type Value = Vec<Option<&'de str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = vec![None; self.0.len()];
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                match self.0.iter().position(|k| *k == *key) {
                    Some(i) => out[i] = Some(map.next_value::<&'de serde_json::value::RawValue>()?.get()),
                    None => {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(data);
    serde::de::DeserializeSeed::deserialize(Picker(keys), &mut de).unwrap_or_else(|_| vec![None; keys.len()])
}

/// `field` in an event whose picked top-level members are `picked`
/// (null and absent alike are `None`).
fn lookup<'a>(picked: &[Option<&'a str>], field: &FieldRef) -> Option<Found<'a>> {
    let raw = picked.get(field.top).copied().flatten()?;
    if field.rest.is_empty() {
        return (raw != "null").then_some(Found::Raw(raw));
    }
    let mut at: Value = serde_json::from_str(raw).ok()?;
    for key in &field.rest {
        at = at.get_mut(key.as_str())?.take();
    }
    (!at.is_null()).then_some(Found::Parsed(at))
}

impl WindowSet {
    pub fn new(defs: Vec<WindowSpec>) -> Self {
        let mut top_keys: Vec<String> = Vec::new();
        let mut field = |path: &str| {
            let mut parts = split_path(path);
            let first = parts.remove(0);
            let top = top_keys.iter().position(|k| *k == first).unwrap_or_else(|| {
                top_keys.push(first);
                top_keys.len() - 1
            });
            FieldRef { top, rest: parts }
        };
        let compiled = defs
            .iter()
            .map(|d| {
                let group = d.group_by.as_deref().map(&mut field);
                let fields = d.aggregates.iter().map(|a| a.field.as_deref().map(&mut field)).collect();
                Compiled { shape: d.shape(), group, fields }
            })
            .collect();
        WindowSet { defs, compiled, top_keys }
    }

    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&WindowSpec> {
        self.defs.iter().find(|d| d.name == name)
    }

    /// Assigns `events` to the windows (all of them, or only `only`), given
    /// the watermark the store holds now.
    pub fn assign<'a>(&self, events: impl IntoIterator<Item = (&'a Event, Option<&'a str>)>, watermark: i64) -> Assignment {
        let mut out = Assignment::default();
        // (def, pane, group) → index into out.deltas
        let mut index: HashMap<(usize, i64, String), usize> = HashMap::new();
        let mut seen_distinct: HashMap<usize, Vec<HashSet<String>>> = HashMap::new();
        for (event, only) in events {
            let ts = event.timestamp;
            let picked = if self.top_keys.is_empty() { Vec::new() } else { pick(&event.data, &self.top_keys) };
            let mut counted = false;
            for (d, (def, c)) in self.defs.iter().zip(&self.compiled).enumerate() {
                if only.is_some_and(|name| name != def.name) {
                    continue;
                }
                let lateness = def.lateness();
                // `late_at`: the watermark from which this event is late;
                // `dirty_at`: from which it lands in a closed window.
                let (pane, late_at, dirty_at, missed) = match c.shape {
                    Shape::Panes { size, slide } => {
                        let pane = ts.div_euclid(slide) * slide;
                        (pane, pane.saturating_add(size).saturating_add(lateness), pane.saturating_add(slide), (pane, pane.saturating_add(size)))
                    }
                    // A session point joins a closed session only if it is
                    // before the watermark.
                    Shape::Session { gap } => {
                        (ts, ts.saturating_add(gap).saturating_add(lateness), ts.saturating_add(1), (ts, ts.saturating_add(gap)))
                    }
                };
                let late = watermark != NO_WATERMARK && late_at <= watermark;
                if late {
                    out.late.push(LateEvent { event: event.clone(), window: def.name.clone(), start: missed.0, end: missed.1 });
                    continue;
                }
                counted = true;
                out.valid_below = out.valid_below.min(late_at);
                let group = match &c.group {
                    None => "null".to_string(),
                    Some(field) => lookup(&picked, field).map(|v| v.key()).unwrap_or_else(|| "null".to_string()),
                };
                let slot = *index.entry((d, pane, group.clone())).or_insert_with(|| {
                    out.deltas.push(PaneDelta {
                        window: def.name.clone(),
                        pane,
                        group,
                        agg: PaneAgg::new(def.aggregates.len()),
                        distinct: vec![Vec::new(); def.aggregates.len()],
                        dirty_at: Some(dirty_at),
                    });
                    out.deltas.len() - 1
                });
                let delta = &mut out.deltas[slot];
                delta.agg.count += 1;
                for (i, (agg, field_ref)) in def.aggregates.iter().zip(&c.fields).enumerate() {
                    let Some(field_ref) = field_ref else { continue };
                    let field = &mut delta.agg.fields[i];
                    let value = lookup(&picked, field_ref);
                    match agg.op {
                        AggOp::Count => match value {
                            Some(_) => field.n += 1,
                            None => field.missing += 1,
                        },
                        AggOp::CountDistinct => match value {
                            Some(v) => {
                                field.n += 1;
                                let text = v.distinct_text();
                                let sets = seen_distinct.entry(slot).or_insert_with(|| vec![HashSet::new(); def.aggregates.len()]);
                                if sets[i].insert(text.clone()) {
                                    delta.distinct[i].push(text);
                                }
                            }
                            None => field.missing += 1,
                        },
                        // Each op keeps only the state its result needs (fewer
                        // store writes per delta); `n + missing` is always the count.
                        // A sum that would stop being finite takes the value as
                        // missing, like a non-number: nothing infinite is stored.
                        op => match value.and_then(|v| v.as_f64()).filter(|x| op != AggOp::Sum && op != AggOp::Avg || (field.sum + x).is_finite()) {
                            Some(x) => {
                                field.n += 1;
                                match op {
                                    AggOp::Min => field.min = Some(field.min.map_or(x, |m| m.min(x))),
                                    AggOp::Max => field.max = Some(field.max.map_or(x, |m| m.max(x))),
                                    _ => field.sum += x,
                                }
                            }
                            None => field.missing += 1,
                        },
                    }
                }
            }
            if counted {
                out.max_event_ts = Some(out.max_event_ts.map_or(ts, |m| m.max(ts)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: i64, data: &str) -> Event {
        Event { id: format!("e{ts}"), kind: "view".into(), source: "t".into(), timestamp: ts, data: data.into() }
    }

    fn set(json: &str) -> WindowSet {
        let defs: Vec<WindowSpec> = serde_json::from_str(json).unwrap();
        for (i, d) in defs.iter().enumerate() {
            d.validate(&format!("windows[{i}]")).unwrap();
        }
        WindowSet::new(defs)
    }

    #[test]
    fn sums_per_pane_and_group_and_counts_missing() {
        let w = set(r#"[{"name":"t","kind":"tumbling","size_ms":1000,"group_by":"data.url",
            "aggregates":[{"op":"count"},{"op":"avg","field":"data.ms"},{"op":"count_distinct","field":"data.u"}]}]"#);
        let events = [
            ev(10, r#"{"url":"/a","ms":5,"u":"x"}"#),
            ev(20, r#"{"url":"/a","ms":"slow","u":"x"}"#),
            ev(1500, r#"{"url":"/a","ms":7}"#),
            ev(30, r#"{"ms":1,"u":"y"}"#),
        ];
        let a = w.assign(events.iter().map(|e| (e, None)), NO_WATERMARK);
        assert_eq!(a.max_event_ts, Some(1500));
        assert!(a.late.is_empty());
        assert_eq!(a.valid_below, 1000, "window [0, 1000) is late from watermark 1000 on");
        let find = |pane: i64, group: &str| a.deltas.iter().find(|d| d.pane == pane && d.group == group).unwrap();
        let d = find(0, "\"/a\"");
        assert_eq!(d.agg.count, 2);
        assert_eq!((d.agg.fields[1].n, d.agg.fields[1].sum, d.agg.fields[1].missing), (1, 5.0, 1));
        assert_eq!(d.agg.fields[1].min, None, "avg keeps no minimum");
        assert_eq!(d.distinct[2], vec!["x".to_string()]);
        assert_eq!(find(1000, "\"/a\"").agg.fields[2].missing, 1);
        assert_eq!(find(0, "null").agg.count, 1);
    }

    #[test]
    fn fields_are_read_without_parsing_all_of_data() {
        let w = set(r#"[{"name":"t","kind":"tumbling","size_ms":1000,"group_by":"data.page.path",
            "aggregates":[{"op":"sum","field":"data.ms"},{"op":"count_distinct","field":"data.u"}]}]"#);
        let events = [
            ev(1, r#"{"skip":{"deep":[1,2,{"x":"}"}]},"ms":2.5,"u":"a\u00e9","page":{"path":"/x"}}"#),
            ev(2, r#"{"ms":"2","u":7,"page":{"path":"/x"}}"#),
            ev(3, r#"{"ms":null,"u":null,"page":null}"#),
        ];
        let a = w.assign(events.iter().map(|e| (e, None)), NO_WATERMARK);
        let x = a.deltas.iter().find(|d| d.group == "\"/x\"").unwrap();
        assert_eq!((x.agg.count, x.agg.fields[0].sum, x.agg.fields[0].missing), (2, 2.5, 1));
        assert_eq!(x.distinct[1], vec!["aé".to_string(), "7".to_string()]);
        let none = a.deltas.iter().find(|d| d.group == "null").unwrap();
        assert_eq!((none.agg.fields[0].missing, none.agg.fields[1].missing), (1, 1));
    }

    #[test]
    fn numbers_that_are_not_finite_count_as_missing() {
        let w = set(r#"[{"name":"t","kind":"tumbling","size_ms":1000,
            "aggregates":[{"op":"avg","field":"data.ms"},{"op":"max","field":"data.x"}]}]"#);
        let events = [
            ev(1, r#"{"ms":1,"x":2}"#),
            ev(2, r#"{"ms":1e400,"x":-1e999}"#),
            ev(3, r#"{"ms":1.7e308,"x":{"deep":1}}"#),
            ev(4, r#"{"ms":1.7e308}"#),
        ];
        let a = w.assign(events.iter().map(|e| (e, None)), NO_WATERMARK);
        let d = &a.deltas[0];
        assert_eq!(d.agg.count, 4);
        let (avg, max) = (&d.agg.fields[0], &d.agg.fields[1]);
        assert_eq!((avg.n, avg.missing), (2, 2), "1e400 and the sum that would overflow count as missing");
        assert!(avg.sum.is_finite() && avg.sum >= 1.7e308);
        assert_eq!((max.n, max.missing, max.max), (1, 3, Some(2.0)));
    }

    #[test]
    fn late_and_dirty_follow_the_watermark() {
        let w = set(r#"[{"name":"s","kind":"sliding","size_ms":3000,"slide_ms":1000,"allowed_lateness_ms":500,
            "aggregates":[{"op":"count"}]}]"#);
        // Watermark 4000: pane 0's newest window [0,3000) is final at 3500 → late.
        let a = w.assign([(&ev(999, "{}"), None)], 4000);
        assert_eq!(a.late.len(), 1);
        assert_eq!((a.late[0].start, a.late[0].end), (0, 3000));
        // Pane 1000: window [1000,4000) closed at 4000, final at 4500 →
        // counted; it lands in a closed window from watermark 2000 on.
        let a = w.assign([(&ev(1000, "{}"), None)], 4000);
        assert!(a.late.is_empty());
        assert_eq!((a.deltas[0].dirty_at, a.valid_below), (Some(2000), 4500));
        // Pane 4000.
        let a = w.assign([(&ev(4000, "{}"), None)], 4000);
        assert!(a.late.is_empty());
        assert_eq!((a.deltas[0].dirty_at, a.valid_below), (Some(5000), 7500));
        // `only` restricts to one window.
        let a = w.assign([(&ev(4000, "{}"), Some("other"))], 4000);
        assert!(a.deltas.is_empty());
    }
}
