//! Reading one event as clients send it (the ingest form of API.md) from
//! its JSON text, without building a JSON tree. The `Event` it makes is
//! `crate::domain::Event`.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::domain::Event;

/// The members of one ingest event, borrowed from the body: each value as
/// its raw JSON text, checked and converted by [`parse_ingest`]. Reading the
/// body this way builds no JSON tree and copies `data` once, as it is.
#[derive(Default)]
struct IngestMembers<'a> {
    kind: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    source: Option<&'a RawValue>,
    timestamp: Option<&'a RawValue>,
    data: Option<&'a RawValue>,
    /// The first member that is not an event field.
    unknown: Option<String>,
}

impl<'de> Deserialize<'de> for IngestMembers<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = IngestMembers<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = IngestMembers::default();
                while let Some(MemberName(key)) = map.next_key::<MemberName<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    let slot = match key.as_ref() {
                        "type" => &mut members.kind,
                        "id" => &mut members.id,
                        "source" => &mut members.source,
                        "timestamp" => &mut members.timestamp,
                        "data" => &mut members.data,
                        _ => {
                            members.unknown.get_or_insert_with(|| key.into_owned());
                            continue;
                        }
                    };
                    *slot = Some(value);
                }
                Ok(members)
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// A member's name, borrowed from the body unless it has escapes (serde's
/// own `Cow<str>` always copies).
struct MemberName<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for MemberName<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;
        impl<'de> serde::de::Visitor<'de> for Name {
            type Value = MemberName<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, name: &'de str) -> Result<Self::Value, E> {
                Ok(MemberName(std::borrow::Cow::Borrowed(name)))
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Self::Value, E> {
                Ok(MemberName(std::borrow::Cow::Owned(name.to_owned())))
            }
        }
        deserializer.deserialize_str(Name)
    }
}

/// An absent member, or JSON `null`: the field's default.
fn is_null(raw: Option<&RawValue>) -> bool {
    raw.is_none_or(|r| r.get() == "null")
}

/// A JSON string member as text; `Err(())` when it is another JSON type.
fn string_member(raw: &RawValue) -> Result<String, ()> {
    if !raw.get().starts_with('"') {
        return Err(());
    }
    serde_json::from_str::<std::borrow::Cow<str>>(raw.get()).map(|s| s.into_owned()).map_err(|_| ())
}

/// Reads one event in the ingest form (API.md) from its JSON text: `type`
/// required; `id`, `source`, `timestamp` (ms or RFC 3339) and `data`
/// (object) optional. `now_ms` fills a missing timestamp, `new_id` a missing
/// id. Text that is not JSON at all answers the parser's message.
pub fn parse_ingest(text: &str, now_ms: i64, new_id: impl FnOnce() -> String) -> Result<Event, String> {
    if !text.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => "an event must be a JSON object".into(),
            Err(e) => format!("not valid JSON: {e}"),
        });
    }
    let members: IngestMembers = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let kind = match members.kind {
        None => return Err("`type` is required".into()),
        Some(raw) => match string_member(raw) {
            Ok(s) if !s.is_empty() => s,
            Ok(_) => return Err("`type` must not be empty".into()),
            Err(()) => return Err("`type` must be a string".into()),
        },
    };
    let id = match members.id {
        raw if is_null(raw) => new_id(),
        Some(raw) => match string_member(raw) {
            // Characters, as the message and the README say (not UTF-8 bytes).
            Ok(s) if (1..=256).contains(&s.chars().count()) => s,
            Ok(_) => return Err("`id` must be 1 to 256 characters".into()),
            Err(()) => return Err("`id` must be a string".into()),
        },
        None => unreachable!("is_null covers None"),
    };
    let source = match members.source {
        raw if is_null(raw) => String::new(),
        Some(raw) => string_member(raw).map_err(|()| "`source` must be a string".to_string())?,
        None => unreachable!("is_null covers None"),
    };
    let timestamp = match members.timestamp {
        raw if is_null(raw) => now_ms,
        Some(raw) => match raw.get().as_bytes()[0] {
            b'-' | b'0'..=b'9' => raw
                .get()
                .parse::<i64>()
                .ok()
                .filter(|t| *t >= 0)
                .ok_or("`timestamp` must be a non-negative integer of ms since the epoch")?,
            b'"' => {
                let s = string_member(raw).map_err(|()| "`timestamp` must be integer ms since the epoch or RFC 3339 text")?;
                parse_rfc3339_ms(&s).ok_or_else(|| format!("`timestamp` {s:?} is not RFC 3339 text (e.g. 2026-11-27T10:00:00Z)"))?
            }
            _ => return Err("`timestamp` must be integer ms since the epoch or RFC 3339 text".into()),
        },
        None => unreachable!("is_null covers None"),
    };
    let data = match members.data {
        raw if is_null(raw) => "{}".to_string(),
        Some(raw) if raw.get().starts_with('{') => raw.get().to_string(),
        Some(_) => return Err("`data` must be a JSON object".into()),
        None => unreachable!("is_null covers None"),
    };
    if let Some(unknown) = members.unknown {
        return Err(format!("unknown field `{unknown}` (event fields are type, id, source, timestamp, data)"));
    }
    Ok(Event { id, kind, source, timestamp, data })
}

/// RFC 3339 text to ms since the epoch.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    // Rounded down, so a time just before the epoch is refused rather than taken as 0.
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).ok().filter(|ms| *ms >= 0)
}

#[cfg(test)]
mod ingest_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_defaults() {
        let e = parse_ingest(&json!({"type": "view", "timestamp": "2026-11-27T00:00:01.5Z", "data": {"a": 1}}).to_string(), 7, || "gen".into()).unwrap();
        assert_eq!((e.id.as_str(), e.kind.as_str(), e.timestamp, e.data.as_str()), ("gen", "view", 1_795_737_601_500, r#"{"a":1}"#));
        let e = parse_ingest(&json!({"type": "v", "id": "x"}).to_string(), 7, || unreachable!()).unwrap();
        assert_eq!((e.id.as_str(), e.timestamp, e.data.as_str()), ("x", 7, "{}"));
    }

    #[test]
    fn names_what_is_wrong() {
        let err = |v: serde_json::Value| parse_ingest(&v.to_string(), 0, || "g".into()).unwrap_err();
        assert_eq!(err(json!({"id": "x"})), "`type` is required");
        assert_eq!(err(json!({"type": 3})), "`type` must be a string");
        assert_eq!(err(json!({"type": "v", "data": [1]})), "`data` must be a JSON object");
        assert!(err(json!({"type": "v", "timestamp": "yesterday"})).contains("RFC 3339"));
        assert!(err(json!({"type": "v", "extra": 1})).contains("unknown field `extra`"));
        assert_eq!(err(json!([1])), "an event must be a JSON object");
        assert_eq!(err(json!({"type": "v", "timestamp": 1.5})), "`timestamp` must be a non-negative integer of ms since the epoch");
        assert_eq!(err(json!({"type": "v", "timestamp": -1})), "`timestamp` must be a non-negative integer of ms since the epoch");
        assert_eq!(err(json!({"type": "v", "source": 1})), "`source` must be a string");
        assert_eq!(err(json!({"type": "v", "id": ""})), "`id` must be 1 to 256 characters");
        let bad = parse_ingest(r#"{"type": "v", "data": {"a": }"#, 0, || "g".into()).unwrap_err();
        assert!(bad.starts_with("not valid JSON: expected value"), "{bad}");
    }

    #[test]
    fn reads_escapes_and_keeps_data_text() {
        let text = r#"{"\u0074ype": "a\"b", "id": null, "data": {"k": [1, {"x": "\n"}]}, "source": "s\u00e9"}"#;
        let e = parse_ingest(text, 9, || "gen".into()).unwrap();
        assert_eq!((e.kind.as_str(), e.id.as_str(), e.source.as_str(), e.timestamp), ("a\"b", "gen", "s\u{e9}", 9));
        assert_eq!(e.data, r#"{"k": [1, {"x": "\n"}]}"#);
        let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(v["k"][1]["x"], "\n");
    }

    #[test]
    fn fast_json_matches_serde() {
        let events = [
            Event { id: "a\"\u{1}".into(), kind: "view".into(), source: "".into(), timestamp: 0, data: r#"{"x":1}"#.into() },
            Event { id: "é".into(), kind: "t\\".into(), source: "web".into(), timestamp: i64::MAX, data: r#"{ "y" : [ ] }"#.into() },
        ];
        for e in &events {
            let mut fast = Vec::new();
            e.write_json(&mut fast);
            assert_eq!(String::from_utf8(fast).unwrap(), serde_json::to_string(e).unwrap());
        }
    }
}
