//! The event as the host holds it, crosses into stages, and shows it in the API.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use wasmtime::component::{ComponentType, Lift, Lower};

/// One event. The same struct is lowered into a stage (the WIT `event`
/// record, field for field) and serialized in the API (`type`, and `data` as
/// an embedded JSON object), so crossing into a stage copies no more than the
/// component model itself must.
#[derive(Clone, Debug, PartialEq, Eq, ComponentType, Lift, Lower)]
#[component(record)]
pub struct Event {
    #[component(name = "id")]
    pub id: String,
    /// The event type (`type` in JSON; `kind` in WIT, where `type` is a keyword).
    #[component(name = "kind")]
    pub kind: String,
    #[component(name = "source")]
    pub source: String,
    /// Event time, ms since the Unix epoch.
    #[component(name = "timestamp")]
    pub timestamp: i64,
    /// A JSON object, as text.
    #[component(name = "data")]
    pub data: String,
}

impl Event {
    /// The serialized size that output caps are measured in.
    pub fn byte_size(&self) -> usize {
        self.id.len() + self.kind.len() + self.source.len() + self.data.len() + 8
    }
}

#[derive(Serialize)]
struct EventOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    source: &'a str,
    timestamp: i64,
    data: &'a RawValue,
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let data: &RawValue = serde_json::from_str(&self.data)
            .unwrap_or_else(|_| serde_json::from_str("{}").expect("valid literal"));
        EventOut { id: &self.id, kind: &self.kind, source: &self.source, timestamp: self.timestamp, data }
            .serialize(serializer)
    }
}

#[derive(Deserialize)]
struct EventIn {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    source: String,
    timestamp: i64,
    data: Box<RawValue>,
}

impl<'de> Deserialize<'de> for Event {
    /// Reads the stored/API form (all fields present, `timestamp` in ms).
    /// Ingest has its own, more forgiving parser.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = EventIn::deserialize(deserializer)?;
        if !raw.data.get().trim_start().starts_with('{') {
            return Err(D::Error::custom("data must be a JSON object"));
        }
        Ok(Event { id: raw.id, kind: raw.kind, source: raw.source, timestamp: raw.timestamp, data: String::from(Box::<str>::from(raw.data)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_embeds_data() {
        let e = Event { id: "a".into(), kind: "view".into(), source: "web".into(), timestamp: 5, data: r#"{"x":1}"#.into() };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(text, r#"{"id":"a","type":"view","source":"web","timestamp":5,"data":{"x":1}}"#);
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), e);
        assert!(serde_json::from_str::<Event>(r#"{"id":"a","type":"v","timestamp":1,"data":[1]}"#).is_err());
    }
}

/// Reads one event in the ingest form (API.md): `type` required; `id`,
/// `source`, `timestamp` (ms or RFC 3339) and `data` (object) optional.
/// `now_ms` fills a missing timestamp, `new_id` a missing id.
pub fn parse_ingest(value: serde_json::Value, now_ms: i64, new_id: impl FnOnce() -> String) -> Result<Event, String> {
    use serde_json::Value;
    let Value::Object(mut object) = value else {
        return Err("an event must be a JSON object".into());
    };
    let kind = match object.remove("type") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::String(_)) => return Err("`type` must not be empty".into()),
        Some(_) => return Err("`type` must be a string".into()),
        None => return Err("`type` is required".into()),
    };
    let id = match object.remove("id") {
        None | Some(Value::Null) => new_id(),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => s,
        Some(Value::String(_)) => return Err("`id` must be 1 to 256 characters".into()),
        Some(_) => return Err("`id` must be a string".into()),
    };
    let source = match object.remove("source") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(_) => return Err("`source` must be a string".into()),
    };
    let timestamp = match object.remove("timestamp") {
        None | Some(Value::Null) => now_ms,
        Some(Value::Number(n)) => n.as_i64().filter(|t| *t >= 0).ok_or("`timestamp` must be a non-negative integer of ms since the epoch")?,
        Some(Value::String(s)) => parse_rfc3339_ms(&s).ok_or_else(|| format!("`timestamp` {s:?} is not RFC 3339 text (e.g. 2026-11-27T10:00:00Z)"))?,
        Some(_) => return Err("`timestamp` must be integer ms since the epoch or RFC 3339 text".into()),
    };
    let data = match object.remove("data") {
        None | Some(Value::Null) => "{}".to_string(),
        Some(data @ Value::Object(_)) => data.to_string(),
        Some(_) => return Err("`data` must be a JSON object".into()),
    };
    if let Some(unknown) = object.keys().next() {
        return Err(format!("unknown field `{unknown}` (event fields are type, id, source, timestamp, data)"));
    }
    Ok(Event { id, kind, source, timestamp, data })
}

/// RFC 3339 text to ms since the epoch.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok().filter(|ms| *ms >= 0)
}

/// The current time, ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod ingest_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_defaults() {
        let e = parse_ingest(json!({"type": "view", "timestamp": "2026-11-27T00:00:01.5Z", "data": {"a": 1}}), 7, || "gen".into()).unwrap();
        assert_eq!((e.id.as_str(), e.kind.as_str(), e.timestamp, e.data.as_str()), ("gen", "view", 1_795_737_601_500, r#"{"a":1}"#));
        let e = parse_ingest(json!({"type": "v", "id": "x"}), 7, || unreachable!()).unwrap();
        assert_eq!((e.id.as_str(), e.timestamp, e.data.as_str()), ("x", 7, "{}"));
    }

    #[test]
    fn names_what_is_wrong() {
        let err = |v| parse_ingest(v, 0, || "g".into()).unwrap_err();
        assert_eq!(err(json!({"id": "x"})), "`type` is required");
        assert_eq!(err(json!({"type": 3})), "`type` must be a string");
        assert_eq!(err(json!({"type": "v", "data": [1]})), "`data` must be a JSON object");
        assert!(err(json!({"type": "v", "timestamp": "yesterday"})).contains("RFC 3339"));
        assert!(err(json!({"type": "v", "extra": 1})).contains("unknown field `extra`"));
        assert_eq!(err(json!([1])), "an event must be a JSON object");
    }
}
