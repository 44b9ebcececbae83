//! The event type a stage sees, with lazy access to `data`.
//!
//! `data` arrives from the host as JSON text, and stays text while the stage
//! reads fields and sets top-level ones: a read finds just that member (see
//! `json.rs`), a top-level set splices the text. The object is parsed only
//! for nested edits, `remove` and `data_mut`; only a changed event is copied
//! back to the host.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::json::{self, FieldValue};

/// One event. Fields are read through accessors so the SDK knows whether the
/// stage changed anything (an unchanged event is not sent back to the host).
#[derive(Clone)]
pub struct Event {
    id: Text,
    kind: Text,
    source: Text,
    timestamp: i64,
    data: Data,
    changed: bool,
    /// Whether the id, kind, source or timestamp changed (an event changed
    /// only in `data` crosses back to the host as its data alone).
    head_changed: bool,
}

/// One string of an event: its own, or a stretch of the batch text the host
/// handed over, shared by the batch's events (reading an event then costs
/// no allocation or copy; the text is copied on the first change).
#[derive(Clone)]
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // shared only by packed batches
enum Text {
    Own(String),
    Shared(Arc<String>, Range<usize>),
}

impl Text {
    #[inline]
    fn as_str(&self) -> &str {
        match self {
            Text::Own(text) => text,
            Text::Shared(batch, range) => &batch[range.clone()],
        }
    }

    fn into_string(self) -> String {
        match self {
            Text::Own(text) => text,
            Text::Shared(batch, range) => batch[range].to_owned(),
        }
    }
}

#[derive(Clone)]
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // shared only by packed batches
enum Data {
    /// As the host sent it, not yet changed (see [`Text::Shared`]).
    Shared(Arc<String>, Range<usize>),
    /// The JSON text: as the host sent it, or with top-level fields spliced in.
    Raw(String),
    /// Parsed for an edit the text cannot take in place.
    Parsed(Map<String, Value>),
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id())
            .field("type", &self.kind())
            .field("source", &self.source())
            .field("timestamp", &self.timestamp)
            .field("data", &self.data_json())
            .finish()
    }
}

impl Event {
    /// A new event, for stages that fan one input out into several.
    pub fn new(id: impl Into<String>, kind: impl Into<String>, timestamp: i64) -> Event {
        Event {
            id: Text::Own(id.into()),
            kind: Text::Own(kind.into()),
            source: Text::Own(String::new()),
            timestamp,
            data: Data::Parsed(Map::new()),
            changed: true,
            head_changed: true,
        }
    }

    /// Wraps an event as the host delivers it (`data` is JSON object text).
    #[inline]
    pub fn from_parts(id: String, kind: String, source: String, timestamp: i64, data: String) -> Event {
        Event {
            id: Text::Own(id),
            kind: Text::Own(kind),
            source: Text::Own(source),
            timestamp,
            data: Data::Raw(data),
            changed: false,
            head_changed: false,
        }
    }

    /// An event whose strings are the given stretches of a packed batch's
    /// text (the ranges are on char boundaries).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn from_batch(batch: &Arc<String>, [id, kind, source, data]: [Range<usize>; 4], timestamp: i64) -> Event {
        Event {
            id: Text::Shared(batch.clone(), id),
            kind: Text::Shared(batch.clone(), kind),
            source: Text::Shared(batch.clone(), source),
            timestamp,
            data: Data::Shared(batch.clone(), data),
            changed: false,
            head_changed: false,
        }
    }

    #[inline]
    pub fn id(&self) -> &str {
        self.id.as_str()
    }
    /// The event type (`type` in the HTTP API).
    #[inline]
    pub fn kind(&self) -> &str {
        self.kind.as_str()
    }
    #[inline]
    pub fn source(&self) -> &str {
        self.source.as_str()
    }
    /// Event time in ms since the Unix epoch.
    #[inline]
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }
    pub fn set_id(&mut self, id: impl Into<String>) {
        self.id = Text::Own(id.into());
        self.changed = true;
        self.head_changed = true;
    }
    pub fn set_kind(&mut self, kind: impl Into<String>) {
        self.kind = Text::Own(kind.into());
        self.changed = true;
        self.head_changed = true;
    }
    pub fn set_source(&mut self, source: impl Into<String>) {
        self.source = Text::Own(source.into());
        self.changed = true;
        self.head_changed = true;
    }
    pub fn set_timestamp(&mut self, timestamp: i64) {
        self.timestamp = timestamp;
        self.changed = true;
        self.head_changed = true;
    }

    /// Whether the stage changed anything since the host handed it over.
    #[inline]
    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// Whether the id, kind, source or timestamp changed.
    pub fn is_head_changed(&self) -> bool {
        self.head_changed
    }

    /// Reads the value at `path` (`"data.url"`, or just `"url"`; nested with
    /// dots: `"data.user.id"`) as `T`. `None` when it is absent or not a `T`.
    ///
    /// On an unchanged event this scans the JSON text for the path only (up
    /// to the key, not the whole object), and deserializes just that value.
    pub fn get<'a, T: Deserialize<'a>>(&'a self, path: &str) -> Option<T> {
        match self.text() {
            Some(text) => serde_json::from_str(raw_at(text, path)?.text).ok(),
            None => T::deserialize(value_at(self.parsed()?, data_keys(path))?).ok(),
        }
    }

    /// Reads a string field, borrowed from the event when it has no escapes
    /// (the usual case: no copy and no allocation).
    pub fn get_str(&self, path: &str) -> Option<Cow<'_, str>> {
        match self.text() {
            Some(text) => raw_at(text, path)?.as_str(),
            None => value_at(self.parsed()?, data_keys(path))?.as_str().map(Cow::Borrowed),
        }
    }

    /// Sets the value at `path`, creating intermediate objects.
    ///
    /// A top-level key of an unparsed event is set by editing the JSON text
    /// in place (its value replaced, or the key appended), so the common
    /// "add or replace a field" costs one scan of the text and one copy, not
    /// a full parse and re-serialization.
    pub fn set(&mut self, path: &str, value: impl Into<Value>) {
        let value = value.into();
        let mut keys = data_keys(path);
        let Some(first) = keys.next() else { return };
        let nested = keys.next().is_some();
        self.own_text();
        if let (false, Data::Raw(text)) = (nested, &mut self.data) {
            if splice_top_level(text, &[(first, &value)]) {
                self.changed = true;
                return;
            }
        }
        let keys: Vec<&str> = data_keys(path).collect();
        let (last, parents) = keys.split_last().expect("at least one key");
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
    ///
    /// The values are [`Value`]s, or [`RawJson`](crate::RawJson) the stage
    /// wrote itself (cheapest: spliced into the text as it is).
    pub fn set_fields<'k, V: FieldValue>(&mut self, fields: impl IntoIterator<Item = (&'k str, V)>) {
        let fields: Vec<(&str, V)> = fields.into_iter().collect();
        self.own_text();
        if let Data::Raw(text) = &mut self.data {
            if splice_top_level(text, &fields) {
                self.changed = true;
                return;
            }
        }
        let map = self.data_mut();
        for (key, value) in fields {
            map.insert(key.to_string(), value.into_value());
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
        match (self.text(), &self.data) {
            (Some(text), _) => serde_json::from_str(text).unwrap_or_default(),
            (None, Data::Parsed(map)) => map.clone(),
            (None, _) => Map::new(),
        }
    }

    /// The whole `data` object, parsed (and from now on sent back as changed).
    pub fn data_mut(&mut self) -> &mut Map<String, Value> {
        self.changed = true;
        if let Some(text) = self.text() {
            let map = serde_json::from_str::<Map<String, Value>>(text).unwrap_or_default();
            self.data = Data::Parsed(map);
        }
        match &mut self.data {
            Data::Parsed(map) => map,
            Data::Raw(_) | Data::Shared(..) => unreachable!("parsed above"),
        }
    }

    /// `data` as JSON text.
    pub fn data_json(&self) -> Cow<'_, str> {
        match (self.text(), &self.data) {
            (Some(text), _) => Cow::Borrowed(text),
            (None, Data::Parsed(map)) => Cow::Owned(serde_json::to_string(map).expect("a JSON map serializes")),
            (None, _) => Cow::Borrowed("{}"),
        }
    }

    /// Splits the event into `(id, kind, source, timestamp, data JSON)`.
    pub fn into_parts(self) -> (String, String, String, i64, String) {
        let data = match self.data {
            Data::Raw(text) => text,
            Data::Shared(batch, range) => batch[range].to_owned(),
            Data::Parsed(map) => serde_json::to_string(&map).expect("a JSON map serializes"),
        };
        (self.id.into_string(), self.kind.into_string(), self.source.into_string(), self.timestamp, data)
    }

    /// `data` as text, unless it is parsed.
    #[inline]
    fn text(&self) -> Option<&str> {
        match &self.data {
            Data::Raw(text) => Some(text),
            Data::Shared(batch, range) => Some(&batch[range.clone()]),
            Data::Parsed(_) => None,
        }
    }

    fn parsed(&self) -> Option<&Map<String, Value>> {
        match &self.data {
            Data::Parsed(map) => Some(map),
            _ => None,
        }
    }

    /// Copies shared `data` text into the event's own, to change it.
    fn own_text(&mut self) {
        if let Data::Shared(batch, range) = &self.data {
            self.data = Data::Raw(batch[range.clone()].to_owned());
        }
    }
}

/// Replaces (or appends) the top-level `fields` of the JSON object `text`,
/// in one scan of the text: a field present is replaced where it stands (its
/// first occurrence), the others are appended in order. The scan stops once
/// every field is found (the host guarantees the text is well-formed, so the
/// rest need not be read). `false` when `text` is not an object (the caller
/// then falls back to parsing).
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn splice_top_level<V: FieldValue>(text: &mut String, fields: &[(&str, V)]) -> bool {
    if let [(key, value)] = fields {
        return splice_one(text, key, value);
    }
    // The keys, and where each field's current value is, if present. Stages
    // set a handful of fields, so the usual case needs no allocation.
    let (mut inline_keys, mut inline_found) = ([""; 8], [const { None }; 8]);
    let (mut heap_keys, mut heap_found);
    let (keys, found): (&mut [&str], &mut [json::Found]) = if fields.len() <= inline_keys.len() {
        (&mut inline_keys[..fields.len()], &mut inline_found[..fields.len()])
    } else {
        heap_keys = vec![""; fields.len()];
        heap_found = vec![None; fields.len()];
        (&mut heap_keys, &mut heap_found)
    };
    for (key, (name, _)) in keys.iter_mut().zip(fields) {
        *key = name;
    }
    // Where the appended fields go, if any are missing.
    let append = match json::find_members(text, keys, found) {
        None => return false,
        Some(json::Members::AllFound) => None,
        Some(json::Members::Ended { close, empty }) => Some((close, empty)),
    };
    let added: usize = fields.iter().map(|(key, value)| key.len() + 4 + value.json_len_hint()).sum();
    let mut out = String::with_capacity(text.len() + added);
    // The replacements, in the order they appear in the text.
    let mut at = 0;
    while let Some((i, range)) = found
        .iter()
        .enumerate()
        .filter_map(|(i, value)| Some((i, value.as_ref()?.0.clone())))
        .filter(|(_, range)| range.start >= at)
        .min_by_key(|(_, range)| range.start)
    {
        out.push_str(&text[at..range.start]);
        fields[i].1.write_json(&mut out);
        at = range.end;
    }
    if let Some((close, mut empty)) = append {
        out.push_str(&text[at..close]);
        at = close;
        for ((key, value), range) in fields.iter().zip(found.iter()) {
            if range.is_none() {
                if !empty {
                    out.push(',');
                }
                empty = false;
                json::write_key(&mut out, key);
                out.push(':');
                value.write_json(&mut out);
            }
        }
    }
    out.push_str(&text[at..]);
    *text = out;
    true
}

/// [`splice_top_level`] for one field (what [`Event::set`] does): the same
/// result without the bookkeeping for several.
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn splice_one<V: FieldValue>(text: &mut String, key: &str, value: &V) -> bool {
    let mut found = [None];
    let Some(members) = json::find_members(text, &[key], &mut found) else { return false };
    let mut out = String::with_capacity(text.len() + key.len() + 4 + value.json_len_hint());
    match (found[0].take(), members) {
        (Some((range, _)), _) => {
            out.push_str(&text[..range.start]);
            value.write_json(&mut out);
            out.push_str(&text[range.end..]);
        }
        (None, json::Members::Ended { close, empty }) => {
            out.push_str(&text[..close]);
            if !empty {
                out.push(',');
            }
            json::write_key(&mut out, key);
            out.push(':');
            value.write_json(&mut out);
            out.push_str(&text[close..]);
        }
        // (Not answered for one key: found means `found[0]` is set.)
        (None, json::Members::AllFound) => return false,
    }
    *text = out;
    true
}

/// The keys of a path inside `data`: `"data.a.b"` and `"a.b"` both give `a`,
/// `b` (empty keys are skipped).
fn data_keys(path: &str) -> DataKeys<'_> {
    DataKeys { rest: path.strip_prefix("data.").unwrap_or(path) }
}

/// The iterator [`data_keys`] answers: `str::split('.')` without its
/// searcher machinery, which costs more than the scan for a short path.
struct DataKeys<'p> {
    rest: &'p str,
}

impl<'p> Iterator for DataKeys<'p> {
    type Item = &'p str;
    fn next(&mut self) -> Option<&'p str> {
        while !self.rest.is_empty() {
            let (key, rest) = match self.rest.bytes().position(|b| b == b'.') {
                Some(dot) => (&self.rest[..dot], &self.rest[dot + 1..]),
                None => (self.rest, ""),
            };
            self.rest = rest;
            if !key.is_empty() {
                return Some(key);
            }
        }
        None
    }
}

fn value_at<'a, 'k>(map: &'a Map<String, Value>, mut keys: impl Iterator<Item = &'k str>) -> Option<&'a Value> {
    let first = keys.next()?;
    let mut value = map.get(first)?;
    for key in keys {
        value = value.as_object()?.get(key)?;
    }
    Some(value)
}

/// The value at `path` in the JSON object `text`: each key is looked up in
/// the value the one before it found.
fn raw_at<'a>(text: &'a str, path: &str) -> Option<json::Raw<'a>> {
    let mut keys = data_keys(path);
    let mut current = json::member(text, keys.next()?)?;
    for key in keys {
        current = json::member(current.text, key)?;
    }
    Some(current)
}

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

    #[test]
    fn shared_batch_text_reads_in_place_and_copies_on_change() {
        let batch = Arc::new(String::from(r#"e1view{"a":1,"u":"x"}e2click{"b":2}"#));
        let mut first = Event::from_batch(&batch, [0..2, 2..6, 6..6, 6..21], 5);
        let second = Event::from_batch(&batch, [21..23, 23..28, 28..28, 28..35], 6);
        assert_eq!((first.id(), first.kind(), first.source(), first.timestamp()), ("e1", "view", "", 5));
        assert_eq!(first.get::<i64>("data.a"), Some(1));
        assert_eq!(second.get_str("data.b"), None);
        assert_eq!(second.get::<i64>("data.b"), Some(2));
        assert!(!first.is_changed());
        first.set("data.c", 3);
        assert!(first.is_changed() && !first.is_head_changed());
        assert_eq!(first.data_json(), r#"{"a":1,"u":"x","c":3}"#);
        // The batch text is untouched; the other event still reads it.
        assert_eq!(second.data_json(), r#"{"b":2}"#);
        assert_eq!(second.clone().into_parts(), ("e2".into(), "click".into(), "".into(), 6, r#"{"b":2}"#.into()));
        first.set_kind("other");
        assert!(first.is_head_changed());
        assert_eq!(first.into_parts().1, "other");
    }
}
