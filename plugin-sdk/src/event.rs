//! The event type a stage sees, with lazy access to `data`.
//!
//! `data` arrives from the host as JSON text. Reading a field scans the text
//! for that one path without building the whole object; the object is parsed
//! only when the stage changes it, and only a changed event is copied back.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// One event. Fields are read through accessors so the SDK knows whether the
/// stage changed anything (an unchanged event is not sent back to the host).
#[derive(Clone)]
pub struct Event {
    id: String,
    kind: String,
    source: String,
    timestamp: i64,
    data: Data,
    changed: bool,
}

#[derive(Clone)]
enum Data {
    /// The JSON text as the host sent it, untouched.
    Raw(String),
    /// Parsed because the stage changed it.
    Parsed(Map<String, Value>),
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id)
            .field("type", &self.kind)
            .field("source", &self.source)
            .field("timestamp", &self.timestamp)
            .field("data", &self.data_json())
            .finish()
    }
}

impl Event {
    /// A new event, for stages that fan one input out into several.
    pub fn new(id: impl Into<String>, kind: impl Into<String>, timestamp: i64) -> Event {
        Event {
            id: id.into(),
            kind: kind.into(),
            source: String::new(),
            timestamp,
            data: Data::Parsed(Map::new()),
            changed: true,
        }
    }

    /// Wraps an event as the host delivers it (`data` is JSON object text).
    pub fn from_parts(id: String, kind: String, source: String, timestamp: i64, data: String) -> Event {
        Event { id, kind, source, timestamp, data: Data::Raw(data), changed: false }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    /// The event type (`type` in the HTTP API).
    pub fn kind(&self) -> &str {
        &self.kind
    }
    pub fn source(&self) -> &str {
        &self.source
    }
    /// Event time in ms since the Unix epoch.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }
    pub fn set_id(&mut self, id: impl Into<String>) {
        self.id = id.into();
        self.changed = true;
    }
    pub fn set_kind(&mut self, kind: impl Into<String>) {
        self.kind = kind.into();
        self.changed = true;
    }
    pub fn set_source(&mut self, source: impl Into<String>) {
        self.source = source.into();
        self.changed = true;
    }
    pub fn set_timestamp(&mut self, timestamp: i64) {
        self.timestamp = timestamp;
        self.changed = true;
    }

    /// Whether the stage changed anything since the host handed it over.
    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// Reads the value at `path` (`"data.url"`, or just `"url"`; nested with
    /// dots: `"data.user.id"`) as `T`. `None` when it is absent or not a `T`.
    ///
    /// On an unchanged event this scans the JSON text for the path only.
    pub fn get<'a, T: Deserialize<'a>>(&'a self, path: &str) -> Option<T> {
        let keys = data_keys(path);
        match &self.data {
            Data::Raw(text) => {
                let raw = raw_at(text, keys)?;
                serde_json::from_str(raw.get()).ok()
            }
            Data::Parsed(map) => {
                let value = value_at(map, keys)?;
                T::deserialize(value).ok()
            }
        }
    }

    /// Reads a string field without copying it when it has no escapes.
    pub fn get_str(&self, path: &str) -> Option<Cow<'_, str>> {
        self.get::<BorrowedStr<'_>>(path).map(|s| s.0)
    }

    /// Sets the value at `path`, creating intermediate objects.
    ///
    /// A top-level key of an unparsed event is set by editing the JSON text
    /// in place (its value replaced, or the key appended), so the common
    /// "add or replace a field" costs two scans of the text, not a full parse
    /// and re-serialization.
    pub fn set(&mut self, path: &str, value: impl Into<Value>) {
        let keys: Vec<&str> = data_keys(path).collect();
        let value = value.into();
        if let ([key], Data::Raw(text)) = (keys.as_slice(), &mut self.data) {
            if splice_top_level(text, &[(key, &value)]) {
                self.changed = true;
                return;
            }
        }
        let Some((last, parents)) = keys.split_last() else { return };
        let mut map = self.data_mut();
        for key in parents {
            let entry = map.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            map = entry.as_object_mut().expect("just made an object");
        }
        map.insert(last.to_string(), value);
    }

    /// Sets several top-level fields of `data` at once (keys without the
    /// `data.` prefix): on an unparsed event, one scan of the text for all.
    pub fn set_fields<'k>(&mut self, fields: impl IntoIterator<Item = (&'k str, Value)>) {
        let fields: Vec<(&str, Value)> = fields.into_iter().collect();
        if let Data::Raw(text) = &mut self.data {
            let borrowed: Vec<(&str, &Value)> = fields.iter().map(|(k, v)| (*k, v)).collect();
            if splice_top_level(text, &borrowed) {
                self.changed = true;
                return;
            }
        }
        let map = self.data_mut();
        for (key, value) in fields {
            map.insert(key.to_string(), value);
        }
    }

    /// Removes the value at `path`, answering what was there.
    pub fn remove(&mut self, path: &str) -> Option<Value> {
        let keys: Vec<&str> = data_keys(path).collect();
        let (last, parents) = keys.split_last()?;
        self.get::<IgnoredAny>(path)?;
        let mut map = self.data_mut();
        for key in parents {
            map = map.get_mut(*key)?.as_object_mut()?;
        }
        map.remove(*last)
    }

    /// The whole `data` object, parsed, without marking the event changed.
    /// (Reading single fields with [`Event::get`] is cheaper.)
    pub fn data(&self) -> Map<String, Value> {
        match &self.data {
            Data::Raw(text) => serde_json::from_str(text).unwrap_or_default(),
            Data::Parsed(map) => map.clone(),
        }
    }

    /// The whole `data` object, parsed (and from now on sent back as changed).
    pub fn data_mut(&mut self) -> &mut Map<String, Value> {
        self.changed = true;
        if let Data::Raw(text) = &self.data {
            let map = serde_json::from_str::<Map<String, Value>>(text).unwrap_or_default();
            self.data = Data::Parsed(map);
        }
        match &mut self.data {
            Data::Parsed(map) => map,
            Data::Raw(_) => unreachable!("parsed above"),
        }
    }

    /// `data` as JSON text.
    pub fn data_json(&self) -> Cow<'_, str> {
        match &self.data {
            Data::Raw(text) => Cow::Borrowed(text),
            Data::Parsed(map) => Cow::Owned(serde_json::to_string(map).expect("a JSON map serializes")),
        }
    }

    /// Splits the event into `(id, kind, source, timestamp, data JSON)`.
    pub fn into_parts(self) -> (String, String, String, i64, String) {
        let data = match self.data {
            Data::Raw(text) => text,
            Data::Parsed(map) => serde_json::to_string(&map).expect("a JSON map serializes"),
        };
        (self.id, self.kind, self.source, self.timestamp, data)
    }
}

/// Replaces (or appends) the top-level `fields` of the JSON object `text`,
/// in one scan of the text. `false` when `text` is not a well-formed object
/// (the caller then falls back to parsing).
fn splice_top_level(text: &mut String, fields: &[(&str, &Value)]) -> bool {
    let keys: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    let mut de = serde_json::Deserializer::from_str(text);
    let Ok(found) = FindKeys { keys: &keys }.deserialize(&mut de) else { return false };
    if de.end().is_err() {
        return false;
    }
    let Some(close) = text.rfind('}') else { return false };
    let base = text.as_ptr() as usize;
    // (start, end, replacement) for keys present; appended text for the rest.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut appended = String::new();
    let mut empty = text[..close].trim_end().ends_with('{');
    for ((key, value), span) in fields.iter().zip(found) {
        let Ok(value_text) = serde_json::to_string(value) else { return false };
        match span {
            Some(raw) => {
                let start = raw.get().as_ptr() as usize - base;
                edits.push((start, start + raw.get().len(), value_text));
            }
            None => {
                let Ok(key_text) = serde_json::to_string(key) else { return false };
                if !empty {
                    appended.push(',');
                }
                empty = false;
                appended.push_str(&key_text);
                appended.push(':');
                appended.push_str(&value_text);
            }
        }
    }
    edits.sort_by_key(|(start, ..)| *start);
    let mut out = String::with_capacity(text.len() + appended.len() + 64);
    let mut at = 0;
    for (start, end, replacement) in &edits {
        out.push_str(&text[at..*start]);
        out.push_str(replacement);
        at = *end;
    }
    out.push_str(&text[at..close]);
    out.push_str(&appended);
    out.push_str(&text[close..]);
    *text = out;
    true
}

/// Scans one JSON object for several keys at once (first occurrence each),
/// skipping every other value unparsed.
struct FindKeys<'k> {
    keys: &'k [&'k str],
}

impl<'de> DeserializeSeed<'de> for FindKeys<'_> {
    type Value = Vec<Option<&'de RawValue>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FindKeys<'_> {
    type Value = Vec<Option<&'de RawValue>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = vec![None; self.keys.len()];
        while let Some(key) = map.next_key::<BorrowedStr<'de>>()? {
            match self.keys.iter().position(|k| *k == key.0) {
                Some(i) if found[i].is_none() => found[i] = Some(map.next_value::<&'de RawValue>()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// The keys of a path inside `data`: `"data.a.b"` and `"a.b"` both give `a`, `b`.
fn data_keys(path: &str) -> impl Iterator<Item = &str> {
    let inner = path.strip_prefix("data.").unwrap_or(path);
    inner.split('.').filter(|k| !k.is_empty())
}

fn value_at<'a, 'k>(map: &'a Map<String, Value>, mut keys: impl Iterator<Item = &'k str>) -> Option<&'a Value> {
    let first = keys.next()?;
    let mut value = map.get(first)?;
    for key in keys {
        value = value.as_object()?.get(key)?;
    }
    Some(value)
}

fn raw_at<'a, 'k>(text: &'a str, keys: impl Iterator<Item = &'k str>) -> Option<&'a RawValue> {
    let mut current: &'a str = text;
    let mut found = None;
    for key in keys {
        let mut de = serde_json::Deserializer::from_str(current);
        let raw = FindKey { key }.deserialize(&mut de).ok()??;
        current = raw.get();
        found = Some(raw);
    }
    found
}

/// Scans one JSON object for one key, skipping every other value unparsed.
struct FindKey<'k> {
    key: &'k str,
}

impl<'de> DeserializeSeed<'de> for FindKey<'_> {
    type Value = Option<&'de RawValue>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FindKey<'_> {
    type Value = Option<&'de RawValue>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<BorrowedStr<'de>>()? {
            if found.is_none() && key.0 == self.key {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

#[derive(Deserialize)]
struct BorrowedStr<'a>(#[serde(borrow)] Cow<'a, str>);

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &str) -> Event {
        Event::from_parts("e1".into(), "page_view".into(), "web".into(), 1, data.into())
    }

    #[test]
    fn reads_fields_without_parsing_and_stays_unchanged() {
        let e = event(r#"{"url":"https://a.example/x","ua":"Mozilla","n":3,"user":{"id":"u\"1"}}"#);
        assert_eq!(e.get_str("data.url").as_deref(), Some("https://a.example/x"));
        assert_eq!(e.get_str("ua").as_deref(), Some("Mozilla"));
        assert_eq!(e.get::<i64>("data.n"), Some(3));
        assert_eq!(e.get_str("data.user.id").as_deref(), Some("u\"1"));
        assert_eq!(e.get_str("data.missing"), None);
        assert_eq!(e.get::<i64>("data.url"), None);
        assert!(!e.is_changed());
    }

    #[test]
    fn top_level_set_edits_the_text_in_place() {
        let mut e = event(r#"{"url":"u","email":"a@b.c","n":1}"#);
        e.set("data.email", "hashed");
        e.set("data.host", "h");
        e.set("data.q", serde_json::json!({"a": "b\"c"}));
        assert!(e.is_changed());
        assert_eq!(e.get_str("data.email").as_deref(), Some("hashed"));
        let (.., data) = e.into_parts();
        assert_eq!(data, r#"{"url":"u","email":"hashed","n":1,"host":"h","q":{"a":"b\"c"}}"#);
        let mut empty = event("{ }");
        empty.set("x", 1);
        assert_eq!(empty.into_parts().4, r#"{ "x":1}"#);
        let mut many = event(r#"{"b":1,"a":2}"#);
        many.set_fields([("a", Value::from(3)), ("c", Value::from("x")), ("b", Value::Null), ("d", Value::from(true))]);
        assert_eq!(many.into_parts().4, r#"{"b":null,"a":3,"c":"x","d":true}"#);
        let mut from_empty = event("{}");
        from_empty.set_fields([("a", Value::from(1)), ("b", Value::from(2))]);
        assert_eq!(from_empty.into_parts().4, r#"{"a":1,"b":2}"#);
        // Not an object: falls back to a fresh object.
        let mut broken = event("[1]");
        broken.set("x", 1);
        assert_eq!(broken.into_parts().4, r#"{"x":1}"#);
    }

    #[test]
    fn set_and_remove_mark_changed_and_serialize() {
        let mut e = event(r#"{"a":1,"b":{"c":2}}"#);
        e.set("data.b.d", "x");
        assert_eq!(e.remove("data.a"), Some(Value::from(1)));
        assert_eq!(e.remove("data.zzz"), None);
        assert!(e.is_changed());
        assert_eq!(e.get_str("data.b.d").as_deref(), Some("x"));
        let (.., data) = e.into_parts();
        assert_eq!(data, r#"{"b":{"c":2,"d":"x"}}"#);
    }
}
