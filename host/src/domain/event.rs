//! The event as the host holds it, crosses into stages, and shows it in the
//! API: the one type every layer passes around.

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
    /// Given by the client or made at ingest; kept through the stages.
    #[component(name = "id")]
    pub id: String,
    /// The event type (`type` in JSON; `kind` in WIT, where `type` is a keyword).
    #[component(name = "kind")]
    pub kind: String,
    /// Where the event came from ("" if not given).
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

    /// Appends the event's JSON (the same text as its `Serialize`) to `out`,
    /// with `data` copied as it is: every `Event` the host makes holds a
    /// checked JSON object there (ingest parses it; stage outputs are
    /// checked when they are emitted), so the hot paths need not re-read it.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"id\":");
        write_json_str(out, &self.id);
        out.extend_from_slice(b",\"type\":");
        write_json_str(out, &self.kind);
        out.extend_from_slice(b",\"source\":");
        write_json_str(out, &self.source);
        out.extend_from_slice(b",\"timestamp\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.timestamp).as_bytes());
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(self.data.as_bytes());
        out.push(b'}');
    }
}

/// Appends `text` as a JSON string (serde_json's escaping): the hot paths
/// write JSON by hand and need exactly serde's text.
pub fn write_json_str(out: &mut Vec<u8>, text: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// An event as answered and stored (`id`, `type`, `source`, `timestamp`
/// in ms, `data`); the API's document describes events with this type.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Event)]
pub struct EventOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    source: &'a str,
    /// ms since the epoch.
    timestamp: i64,
    #[schema(value_type = Object)]
    data: &'a RawValue,
}

/// [`EventOut`] where a type without a lifetime is needed (the OpenAPI document).
pub type EventSchema = EventOut<'static>;

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

/// The current time, ms since the epoch (event time and every stored
/// timestamp are in this unit).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
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
