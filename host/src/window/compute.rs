//! Panes → window results: merging, session splitting, HyperLogLog unions
//! and the result record of API.md.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::spec::{result_key, AggOp, Shape, WindowSpec};
use crate::store::{Store, StoreResult};
use crate::domain::{DistinctQuery, PaneAgg, PaneRow};

/// One window's merged value for one group.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowValue {
    pub start: i64,
    pub end: i64,
    pub group: String,
    pub agg: PaneAgg,
    /// The panes (sessions: points) it was merged from, for distinct counts.
    pub panes: Vec<i64>,
    /// Per aggregate: the distinct count (`count_distinct` only, once filled).
    pub distinct: Vec<Option<u64>>,
}

/// The starts of the windows covering pane `pane`, oldest first.
pub fn starts_covering(pane: i64, size: i64, slide: i64) -> impl Iterator<Item = i64> {
    let first = pane - size + slide;
    (0..size / slide).map(move |k| first + k * slide)
}

/// The windows starting at `starts` of a tumbling/sliding `def`, per group,
/// merged from `rows` (which must hold every pane of those windows).
/// `groups`, if given, keeps only those (start, group) pairs.
pub fn pane_windows(
    def: &WindowSpec,
    rows: &[PaneRow],
    starts: &BTreeSet<i64>,
    keep: impl Fn(i64, &str) -> bool,
) -> Vec<WindowValue> {
    let Shape::Panes { size, .. } = def.shape() else { return Vec::new() };
    let mut by_pane: BTreeMap<i64, Vec<&PaneRow>> = BTreeMap::new();
    for row in rows {
        by_pane.entry(row.pane).or_default().push(row);
    }
    let mut out = Vec::new();
    for &start in starts {
        let mut groups: BTreeMap<&str, WindowValue> = BTreeMap::new();
        for (_, rows) in by_pane.range(start..start.saturating_add(size)) {
            for row in rows {
                if !keep(start, &row.group) {
                    continue;
                }
                let value = groups.entry(row.group.as_str()).or_insert_with(|| WindowValue {
                    start,
                    end: start.saturating_add(size),
                    group: row.group.clone(),
                    agg: PaneAgg::new(def.aggregates.len()),
                    panes: Vec::new(),
                    distinct: vec![None; def.aggregates.len()],
                });
                value.agg.merge(&row.agg);
                value.panes.push(row.pane);
            }
        }
        out.extend(groups.into_values());
    }
    out
}

/// Every session of a session `def` in `rows` (its points), per group.
pub fn sessions(def: &WindowSpec, rows: &[PaneRow]) -> Vec<WindowValue> {
    let Shape::Session { gap } = def.shape() else { return Vec::new() };
    let mut by_group: BTreeMap<&str, Vec<&PaneRow>> = BTreeMap::new();
    for row in rows {
        by_group.entry(row.group.as_str()).or_default().push(row);
    }
    let mut out = Vec::new();
    for (group, mut points) in by_group {
        points.sort_by_key(|r| r.pane);
        let mut current: Option<WindowValue> = None;
        for point in points {
            match &mut current {
                Some(session) if point.pane < session.end => {
                    session.agg.merge(&point.agg);
                    session.panes.push(point.pane);
                    session.end = session.end.max(point.pane.saturating_add(gap));
                }
                _ => {
                    out.extend(current.take());
                    let mut agg = PaneAgg::new(def.aggregates.len());
                    agg.merge(&point.agg);
                    current = Some(WindowValue {
                        start: point.pane,
                        end: point.pane.saturating_add(gap),
                        group: group.to_string(),
                        agg,
                        panes: vec![point.pane],
                        distinct: vec![None; def.aggregates.len()],
                    });
                }
            }
        }
        out.extend(current);
    }
    out
}

/// Fills the `count_distinct` values of `values` with one store call.
pub async fn fill_distinct(store: &dyn Store, pipeline: &str, def: &WindowSpec, values: &mut [WindowValue]) -> StoreResult<()> {
    let distinct_aggs: Vec<usize> =
        def.aggregates.iter().enumerate().filter(|(_, a)| a.op == AggOp::CountDistinct).map(|(i, _)| i).collect();
    if distinct_aggs.is_empty() || values.is_empty() {
        return Ok(());
    }
    let mut queries = Vec::with_capacity(values.len() * distinct_aggs.len());
    for v in values.iter() {
        for &agg in &distinct_aggs {
            queries.push(DistinctQuery { agg, group: v.group.clone(), panes: v.panes.clone() });
        }
    }
    let counts = store.distinct_counts(pipeline, &def.name, &queries).await?;
    let mut counts = counts.into_iter();
    for v in values.iter_mut() {
        for &agg in &distinct_aggs {
            v.distinct[agg] = counts.next();
        }
    }
    Ok(())
}

/// The API's result object: `group`, `start`, `end`, `closed`, `count`,
/// `<op>_<field>` per aggregate and `missing_<field>` per field read.
pub fn render(def: &WindowSpec, value: &WindowValue, closed: bool) -> Value {
    let mut out = Map::new();
    let group: Value = serde_json::from_str(&value.group).unwrap_or(Value::Null);
    out.insert("group".into(), group);
    out.insert("start".into(), value.start.into());
    out.insert("end".into(), value.end.into());
    out.insert("closed".into(), closed.into());
    out.insert("count".into(), value.agg.count.into());
    let mut missing: BTreeMap<String, u64> = BTreeMap::new();
    for (i, agg) in def.aggregates.iter().enumerate() {
        let Some(field_name) = &agg.field else { continue };
        let field = value.agg.fields.get(i).cloned().unwrap_or_default();
        let number = |x: Option<f64>| x.and_then(serde_json::Number::from_f64).map(Value::Number).unwrap_or(Value::Null);
        let v = match agg.op {
            AggOp::Count => field.n.into(),
            AggOp::Sum => number(Some(field.sum)),
            AggOp::Avg => number((field.n > 0).then(|| field.sum / field.n as f64)),
            AggOp::Min => number(field.min),
            AggOp::Max => number(field.max),
            AggOp::CountDistinct => value.distinct.get(i).copied().flatten().unwrap_or(0).into(),
        };
        out.insert(result_key(agg), v);
        missing.entry(format!("missing_{field_name}")).or_insert(field.missing);
    }
    for (k, v) in missing {
        out.insert(k, v.into());
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FieldAgg;

    fn row(pane: i64, group: &str, count: u64, sum: f64) -> PaneRow {
        PaneRow {
            pane,
            group: group.into(),
            agg: PaneAgg {
                count,
                fields: vec![FieldAgg::default(), FieldAgg { n: count, sum, min: Some(sum), max: Some(sum), missing: 0 }],
            },
        }
    }

    fn def(json: &str) -> WindowSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn sliding_windows_merge_their_panes() {
        let d = def(r#"{"name":"s","kind":"sliding","size_ms":3000,"slide_ms":1000,"aggregates":[{"op":"count"},{"op":"sum","field":"data.x"}]}"#);
        let rows = vec![row(0, "null", 1, 1.0), row(1000, "null", 2, 2.0), row(3000, "null", 4, 4.0)];
        assert_eq!(starts_covering(1000, 3000, 1000).collect::<Vec<_>>(), vec![-1000, 0, 1000]);
        let starts: BTreeSet<i64> = [0, 1000].into();
        let got = pane_windows(&d, &rows, &starts, |_, _| true);
        assert_eq!(got.iter().map(|v| (v.start, v.agg.count)).collect::<Vec<_>>(), vec![(0, 3), (1000, 6)]);
        let json = render(&d, &got[1], false);
        assert_eq!(json["sum_data.x"], 6.0);
        assert_eq!(json["missing_data.x"], 0);
        assert_eq!(json["end"], 4000);
        assert_eq!(json["group"], Value::Null);
    }

    #[test]
    fn sessions_split_at_the_gap_per_group() {
        let d = def(r#"{"name":"s","kind":"session","gap_ms":100,"group_by":"data.u","aggregates":[{"op":"count"}]}"#);
        let rows = vec![row(0, "\"a\"", 1, 0.0), row(99, "\"a\"", 1, 0.0), row(198, "\"a\"", 1, 0.0), row(50, "\"b\"", 1, 0.0)];
        let got = sessions(&d, &rows);
        let spans: Vec<_> = got.iter().map(|v| (v.group.as_str(), v.start, v.end, v.agg.count)).collect();
        assert_eq!(spans, vec![("\"a\"", 0, 298, 3), ("\"b\"", 50, 150, 1)]);
        let rows = vec![row(0, "\"a\"", 1, 0.0), row(100, "\"a\"", 1, 0.0)];
        assert_eq!(sessions(&d, &rows).len(), 2, "a gap of exactly gap_ms ends the session");
    }
}
