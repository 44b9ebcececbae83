//! A batch's rows as the one JSON array parameter the insert takes: per
//! event an object of column → mapped field; per window result the fixed
//! columns (a batch holding several records of one window instance keeps
//! the newest, as the upsert would).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use crate::sinks::Item;

/// The value of event field `field` (`id`, `type`, `source`, `timestamp`,
/// `data`, `data.<path>`; a missing path is `null`).
fn field_value(event: &crate::domain::Event, data: &Value, field: &str) -> Value {
    match field {
        "id" => Value::String(event.id.clone()),
        "type" => Value::String(event.kind.clone()),
        "source" => Value::String(event.source.clone()),
        "timestamp" => Value::from(event.timestamp),
        "data" => data.clone(),
        path => {
            let mut at = data;
            for part in path.trim_start_matches("data.").split('.') {
                match at.get(part) {
                    Some(next) => at = next,
                    None => return Value::Null,
                }
            }
            at.clone()
        }
    }
}

/// Rows of output events.
pub fn event_rows(items: &[Item], columns: &BTreeMap<String, String>) -> Result<String, String> {
    let mut rows = Vec::with_capacity(items.len());
    for item in items {
        let Item::Event(event) = item else { return Err("a window result reached an event table".into()) };
        let data: Value = serde_json::from_str(&event.data).map_err(|e| format!("event {:?}: data is not JSON: {e}", event.id))?;
        let row: Map<String, Value> = columns.iter().map(|(column, field)| (column.clone(), field_value(event, &data, field))).collect();
        rows.push(Value::Object(row));
    }
    serde_json::to_string(&rows).map_err(|e| format!("cannot write the rows: {e}"))
}

/// Rows of window results, one per (window, group, start): the last one wins.
pub fn window_rows(items: &[Item]) -> Result<String, String> {
    let mut rows: Vec<Value> = Vec::with_capacity(items.len());
    let mut at: HashMap<(String, String, i64), usize> = HashMap::new();
    for item in items {
        let Item::Window(record) = item else { return Err("an event reached a window-results table".into()) };
        let result: Value = serde_json::from_str(&record.json).map_err(|e| format!("window {:?} result is not JSON: {e}", record.window))?;
        let group: Value = serde_json::from_str(&record.group).unwrap_or_else(|_| Value::String(record.group.clone()));
        let end = result.get("end").and_then(Value::as_i64).unwrap_or(record.start);
        let row = serde_json::json!({"window": record.window, "group": group, "start": record.start, "end": end, "result": result});
        match at.get(&(record.window.clone(), record.group.clone(), record.start)) {
            Some(&i) => rows[i] = row,
            None => {
                at.insert((record.window.clone(), record.group.clone(), record.start), rows.len());
                rows.push(row);
            }
        }
    }
    serde_json::to_string(&rows).map_err(|e| format!("cannot write the rows: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Event, WindowRecord};

    #[test]
    fn maps_fields_and_keeps_the_newest_window_record() {
        let e = Event { id: "a".into(), kind: "view".into(), source: "web".into(), timestamp: 7, data: r#"{"url":"/x","n":{"m":2}}"#.into() };
        let columns: BTreeMap<String, String> =
            [("id", "id"), ("url", "data.url"), ("m", "data.n.m"), ("gone", "data.nope"), ("ts", "timestamp"), ("payload", "data")]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
        let rows: Value = serde_json::from_str(&event_rows(&[Item::Event(e)], &columns).unwrap()).unwrap();
        assert_eq!(rows[0], serde_json::json!({"id": "a", "url": "/x", "m": 2, "gone": null, "ts": 7, "payload": {"url": "/x", "n": {"m": 2}}}));
        let record = |count: u64| WindowRecord { window: "w".into(), start: 60, group: "\"/x\"".into(), json: format!(r#"{{"group":"/x","start":60,"end":120,"count":{count}}}"#) };
        let rows: Value = serde_json::from_str(&window_rows(&[Item::Window(record(1)), Item::Window(record(3))]).unwrap()).unwrap();
        assert_eq!(rows.as_array().unwrap().len(), 1);
        assert_eq!(rows[0]["result"]["count"], 3);
        assert_eq!((rows[0]["group"].as_str(), rows[0]["end"].as_i64()), (Some("/x"), Some(120)));
    }
}
