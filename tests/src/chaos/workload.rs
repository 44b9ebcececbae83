//! What the soak sends and where each event must end: the pipeline specs,
//! the events (numbered; everything about an event follows from its
//! number), and the expected outputs, DLQ entries and window results.
//!
//! The pipeline: `flaky` (retries) → `split-items` (fan-out) →
//! `schema-check` (the DLQ: events without `data.n`) → the 3-stage chain
//! `bot-filter` → `url-parts` → `pii-redact`, with a tumbling window (count
//! and sum per second) and a sliding one (count per host, 4 s sliding by
//! 1 s). The relaxed spec lets the DLQ's events through `check`, so a replay
//! after it delivers them.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

/// The event time of event 0; events spread over 20 one-second windows.
const BASE_TS: i64 = 1_000_000_000;
/// The sliding window's size and slide (ms).
const SLIDE_SIZE_MS: i64 = 4000;
const SLIDE_MS: i64 = 1000;

/// The plugins the spec uses, as (plugin name, crate name).
pub const PLUGINS: [(&str, &str); 6] = [
    ("flaky", "flaky"),
    ("split-items", "split_items"),
    ("schema-check", "schema_check"),
    ("bot-filter", "bot_filter"),
    ("url-parts", "url_parts"),
    ("pii-redact", "pii_redact"),
];

/// The pipeline spec; `relaxed` lets events without `data.n` pass `check`.
pub fn spec(relaxed: bool) -> Value {
    let required = if relaxed { "data.url" } else { "data.n" };
    json!({"max_queue_depth": 1_000_000, "watermark_idle_ms": 86_400_000,
        "stages": [
            {"name": "flaky", "plugin": "flaky", "retry": {"max_attempts": 4, "initial_backoff_ms": 20, "max_backoff_ms": 200}},
            {"name": "split", "plugin": "split-items"},
            {"name": "check", "plugin": "schema-check", "config": {"required": [required]}},
            {"name": "drop-bots", "plugin": "bot-filter"},
            {"name": "parts", "plugin": "url-parts"},
            {"name": "redact", "plugin": "pii-redact", "config": {"fields": ["data.email"], "mode": "hash", "salt": "s"}}
        ],
        "windows": [
            {"name": "per-second", "kind": "tumbling", "size_ms": 1000, "allowed_lateness_ms": 86_400_000,
             "aggregates": [{"op": "count"}, {"op": "sum", "field": "data.n"}]},
            {"name": "by-host", "kind": "sliding", "size_ms": SLIDE_SIZE_MS, "slide_ms": SLIDE_MS, "group_by": "data.host",
             "allowed_lateness_ms": 86_400_000, "aggregates": [{"op": "count"}]}
        ]})
}

/// Where one unit (an event after fan-out) must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Output,
    Dlq,
    Filtered,
}

/// Event number `g`'s properties.
struct Traits {
    ts: i64,
    host: String,
    has_n: bool,
    bot: bool,
    /// `Some(k)`: split into `k` items (0 drops it).
    items: Option<u64>,
    fail_attempts: Option<u64>,
}

fn traits(g: u64) -> Traits {
    Traits {
        ts: BASE_TS + ((g * 7) % 20) as i64 * 1000 + (g % 997) as i64,
        host: format!("h{}.example", g % 3),
        has_n: g % 13 != 0,
        bot: g % 11 == 3,
        items: (g % 6 == 0).then_some((g / 6) % 4),
        fail_attempts: if g % 17 == 0 {
            Some(3)
        } else if g % 5 == 0 {
            Some(2)
        } else {
            None
        },
    }
}

/// Event number `g` as sent.
pub fn event(g: u64) -> Value {
    let t = traits(g);
    let mut data = json!({
        "url": format!("https://{}/p/{}?ref=chaos", t.host, g % 10),
        "ua": if t.bot { "Mozilla/5.0 (compatible; Googlebot/2.1)" } else { "Mozilla/5.0 (X11; Linux x86_64)" },
        "email": format!("u{}@example.com", g % 50),
    });
    if t.has_n {
        data["n"] = json!(g);
    }
    if let Some(k) = t.items {
        data["items"] = json!((0..k).map(|j| format!("item-{j}")).collect::<Vec<_>>());
    }
    if let Some(f) = t.fail_attempts {
        data["fail_attempts"] = json!(f);
    }
    json!({"id": format!("e{g}"), "type": "view", "timestamp": t.ts, "data": data})
}

/// One unit an event becomes after `split-items`.
pub struct Unit {
    pub id: String,
    ts: i64,
    host: String,
    n: u64,
    has_n: bool,
    bot: bool,
}

/// The units event `g` becomes.
pub fn units(g: u64) -> Vec<Unit> {
    let t = traits(g);
    let unit = |id: String| Unit { id, ts: t.ts, host: t.host.clone(), n: g, has_n: t.has_n, bot: t.bot };
    match t.items {
        Some(k) => (0..k).map(|j| unit(format!("e{g}:{j}"))).collect(),
        None => vec![unit(format!("e{g}"))],
    }
}

impl Unit {
    /// Where this unit ends: before the replay (`relaxed` false) or after
    /// the relaxed spec and a replay of the whole DLQ.
    pub fn place(&self, relaxed: bool) -> Place {
        match (self.has_n || relaxed, self.bot) {
            (false, _) => Place::Dlq,
            (true, true) => Place::Filtered,
            (true, false) => Place::Output,
        }
    }
}

/// What the pipeline must hold once drained.
#[derive(Default)]
pub struct Expected {
    /// Every unit's id and where it must be.
    pub places: HashMap<String, Place>,
    /// Tumbling window start → (count, sum of `data.n`).
    pub per_second: BTreeMap<i64, (u64, f64)>,
    /// Sliding window (host, start) → count.
    pub by_host: BTreeMap<(String, i64), u64>,
}

impl Expected {
    /// The expectation for events `numbers`, before or after the replay.
    pub fn of(numbers: impl IntoIterator<Item = u64>, relaxed: bool) -> Expected {
        let mut expected = Expected::default();
        for unit in numbers.into_iter().flat_map(units) {
            let place = unit.place(relaxed);
            if place == Place::Output {
                let second = unit.ts.div_euclid(1000) * 1000;
                let cell = expected.per_second.entry(second).or_default();
                cell.0 += 1;
                if unit.has_n {
                    cell.1 += unit.n as f64;
                }
                let pane = unit.ts.div_euclid(SLIDE_MS) * SLIDE_MS;
                for k in 0..SLIDE_SIZE_MS / SLIDE_MS {
                    *expected.by_host.entry((unit.host.clone(), pane - k * SLIDE_MS)).or_default() += 1;
                }
            }
            expected.places.insert(unit.id, place);
        }
        expected
    }

    /// How many units must be in `place`.
    pub fn count(&self, place: Place) -> usize {
        self.places.values().filter(|p| **p == place).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_reaches_every_place_and_both_windows() {
        let before = Expected::of(0..600, false);
        let after = Expected::of(0..600, true);
        for place in [Place::Output, Place::Dlq, Place::Filtered] {
            assert!(before.count(place) > 10, "{place:?}: {}", before.count(place));
        }
        assert_eq!(after.count(Place::Dlq), 0);
        assert_eq!(after.places.len(), before.places.len());
        assert!(after.count(Place::Output) > before.count(Place::Output));
        assert_eq!(after.per_second.values().map(|c| c.0).sum::<u64>() as usize, after.count(Place::Output));
        // Each output lands in four sliding windows.
        assert_eq!(after.by_host.values().sum::<u64>() as usize, 4 * after.count(Place::Output));
        // Fan-out: event 6 has (6/6)%4 = 1 item, event 12 two, event 0 none (dropped).
        assert_eq!(units(12).iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), ["e12:0", "e12:1"]);
        assert!(units(0).is_empty());
    }
}
