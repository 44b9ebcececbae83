//! The oracle of the ingest fuzz: serde_json reading the same text, plus
//! the ingest rules of API.md written plainly ([`oracle_event`],
//! [`oracle_split`]), and the checks that compare `parse_ingest` and `split`
//! with it ([`check_event`], [`check_split`]). Shared by the fuzz test
//! (`main.rs`) and the cargo-fuzz targets in `fuzz/`.

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::Value;
use sluice::api::ingest::parse::parse_ingest;
use sluice::api::ingest::split::{split, Format};

/// What `parse_ingest` is given as the receive time.
pub const NOW: i64 = 1_795_737_600_000;
/// What `parse_ingest` is given as a new id: over 256 characters, so no
/// client id can equal it.
pub fn generated_id() -> String {
    "g".repeat(300)
}
/// `data` nested deeper than this may also be refused (API.md v1.1; the
/// check may live in the route rather than in `parse_ingest`).
pub const MAX_DATA_DEPTH: usize = 64;


/// One member of an event object as serde_json reads it: a `Value`, or the
/// raw text of a value serde_json's `Value` cannot hold (a number beyond
/// f64, nesting past its recursion limit, a lone surrogate) but that is
/// still JSON by its grammar.
#[derive(Debug)]
pub enum Member {
    Value(Value),
    Unrepresentable(String),
}

/// What the oracle expects of one event text.
#[derive(Debug)]
pub enum Expect {
    Reject,
    Accept(Expected),
    /// Either is right (the reason is given), but if accepted, these values.
    Either(&'static str, Expected),
}

#[derive(Debug)]
pub struct Expected {
    pub kind: String,
    pub id: String,
    pub source: String,
    pub timestamp: i64,
    pub data: Member,
}

/// The members of a JSON object text per serde_json, later duplicates
/// winning (as serde_json's `Map` does); `None` if it is not an object.
pub fn oracle_members(text: &str) -> Option<BTreeMap<String, Member>> {
    serde_json::from_str::<IgnoredAny>(text).ok()?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Some(map.into_iter().map(|(k, v)| (k, Member::Value(v))).collect()),
        Ok(_) => None,
        // Valid JSON a `Value` cannot hold: read the members one by one.
        Err(_) => {
            if !text.trim_start_matches([' ', '\t', '\n', '\r']).starts_with('{') {
                return None;
            }
            let raw: BTreeMap<String, &RawValue> = serde_json::from_str(text).ok()?;
            let one = |r: &RawValue| match serde_json::from_str::<Value>(r.get()) {
                Ok(v) => Member::Value(v),
                Err(_) => Member::Unrepresentable(r.get().to_string()),
            };
            Some(raw.into_iter().map(|(k, r)| (k, one(r))).collect())
        }
    }
}

/// How deeply a JSON value nests (a scalar is 0, `{}` is 1).
pub fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The ingest rules of API.md, plainly: `type` a non-empty string
/// (required); `id` absent/null (a new one) or a string of 1 to 256
/// characters; `source` absent/null ("") or a string; `timestamp`
/// absent/null (receive time), an integer ms ≥ 0 that fits i64, or RFC 3339
/// text at or after the epoch (ms, rounded down); `data` absent/null (`{}`)
/// or an object; no other member.
pub fn oracle_event(text: &str) -> Expect {
    let Some(mut members) = oracle_members(text) else { return Expect::Reject };
    let mut take = |name: &str| match members.remove(name) {
        None | Some(Member::Value(Value::Null)) => None,
        Some(m) => Some(m),
    };
    let (kind, id, source, timestamp, data) = (take("type"), take("id"), take("source"), take("timestamp"), take("data"));
    if !members.is_empty() {
        return Expect::Reject;
    }
    let kind = match kind {
        Some(Member::Value(Value::String(s))) if !s.is_empty() => s,
        _ => return Expect::Reject,
    };
    let id = match id {
        None => generated_id(),
        Some(Member::Value(Value::String(s))) if (1..=256).contains(&s.chars().count()) => s,
        _ => return Expect::Reject,
    };
    let source = match source {
        None => String::new(),
        Some(Member::Value(Value::String(s))) => s,
        _ => return Expect::Reject,
    };
    let mut either = None;
    let timestamp = match timestamp {
        None => NOW,
        Some(Member::Value(Value::Number(n))) => match (n.as_i64(), n.as_f64()) {
            (Some(ms), _) if ms >= 0 => ms,
            // `-0`: serde_json reads it as the float -0.0 (as it does `-0.0`);
            // the integer zero, taken as 0 or refused, either is harmless.
            (None, Some(f)) if f == 0.0 && f.is_sign_negative() => {
                either = Some("`-0` timestamp");
                0
            }
            _ => return Expect::Reject,
        },
        Some(Member::Value(Value::String(s))) => match rfc3339_ms(&s) {
            Some(ms) => ms,
            None => return Expect::Reject,
        },
        _ => return Expect::Reject,
    };
    let data = match data {
        None => Member::Value(Value::Object(Default::default())),
        Some(Member::Value(v @ Value::Object(_))) => {
            if depth(&v) > MAX_DATA_DEPTH {
                either = Some("`data` nested deeper than 64");
            }
            Member::Value(v)
        }
        Some(Member::Unrepresentable(raw)) if raw.starts_with('{') => {
            if nesting_of(&raw) > MAX_DATA_DEPTH {
                either = Some("`data` nested deeper than 64");
            }
            Member::Unrepresentable(raw)
        }
        _ => return Expect::Reject,
    };
    let expected = Expected { kind, id, source, timestamp, data };
    match either {
        Some(why) => Expect::Either(why, expected),
        None => Expect::Accept(expected),
    }
}

/// The deepest bracket nesting of JSON text (brackets inside strings not
/// counted).
pub fn nesting_of(text: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for c in text.chars() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => in_string = false,
            (true, false, _) => {}
            (false, _, '"') => in_string = true,
            (false, _, '{' | '[') => {
                depth += 1;
                max = max.max(depth);
            }
            (false, _, '}' | ']') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// RFC 3339 text (per the `time` crate) at or after the epoch, as ms
/// rounded down.
pub fn rfc3339_ms(text: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    let nanos = t.unix_timestamp_nanos();
    if nanos < 0 {
        return None;
    }
    i64::try_from(nanos.div_euclid(1_000_000)).ok()
}

/// Checks `parse_ingest` on one text against the oracle; `Ok(accepted)`,
/// or `Err` saying how they differ.
pub fn check_event(text: &str) -> Result<bool, String> {
    let got = parse_ingest(text, NOW, generated_id);
    let (expected, optional) = match oracle_event(text) {
        Expect::Reject => {
            return match got {
                Err(_) => Ok(false),
                Ok(e) => Err(format!("the parser accepted what the oracle refuses: {e:?}")),
            }
        }
        Expect::Accept(e) => (e, None),
        Expect::Either(why, e) => (e, Some(why)),
    };
    let event = match (got, optional) {
        (Ok(event), _) => event,
        (Err(_), Some(_)) => return Ok(false),
        (Err(message), None) => return Err(format!("the parser refused ({message}) what the oracle accepts: {expected:?}")),
    };
    let timestamp_ok = event.timestamp == expected.timestamp;
    let data_ok = match &expected.data {
        Member::Value(v) => serde_json::from_str::<Value>(&event.data).ok().as_ref() == Some(v),
        // A `Value` cannot hold it: the text must come through as it was written.
        Member::Unrepresentable(raw) => &event.data == raw,
    };
    if event.kind != expected.kind || event.id != expected.id || event.source != expected.source || !timestamp_ok || !data_ok {
        return Err(format!("values differ: parser {event:?}, oracle {expected:?}"));
    }
    Ok(true)
}

/// JSON's own whitespace (RFC 8259).
pub const JSON_WS: [char; 4] = [' ', '\t', '\n', '\r'];

/// One item the splitter should give: its text (trimmed of JSON
/// whitespace) is JSON; `value` is serde_json's `Value` of it where one can
/// hold it.
pub fn oracle_item(text: &str) -> Option<(String, Option<Value>)> {
    serde_json::from_str::<IgnoredAny>(text).ok()?;
    Some((text.trim_matches(JSON_WS).to_string(), serde_json::from_str(text).ok()))
}

/// The splitter's expected result: `Err(())` for a 400, else one entry per
/// item, `None` for an item refused on its own.
pub type SplitExpect = Result<Vec<Option<(String, Option<Value>)>>, ()>;

/// The splitting rules of API.md, plainly. JSON: the body must be UTF-8 and
/// JSON; an array gives its elements (whatever they are: the parser judges
/// each), an object gives itself, anything else is a 400. NDJSON: UTF-8;
/// lines split at `\n` (a `\r` before it dropped); blank lines skipped; each
/// other line is an item, or an item error if it is not JSON; no items, or
/// no valid one, is a 400.
pub fn oracle_split(format: Format, body: &[u8]) -> SplitExpect {
    let text = std::str::from_utf8(body).map_err(|_| ())?;
    match format {
        Format::Json => {
            serde_json::from_str::<IgnoredAny>(text).map_err(|_| ())?;
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Array(items)) => Ok(items.into_iter().map(|v| Some((serde_json::to_string(&v).unwrap(), Some(v)))).collect()),
                Ok(Value::Object(o)) => Ok(vec![Some((text.trim_matches(JSON_WS).to_string(), Some(Value::Object(o))))]),
                Ok(_) => Err(()),
                // JSON a `Value` cannot hold: count the elements without one.
                Err(_) => match text.trim_start_matches(JSON_WS).as_bytes().first() {
                    Some(b'[') => {
                        let n = serde_json::from_str::<Vec<IgnoredAny>>(text).map_err(|_| ())?.len();
                        Ok((0..n).map(|_| None).collect())
                    }
                    Some(b'{') => Ok(vec![oracle_item(text)]),
                    _ => Err(()),
                },
            }
        }
        Format::NdJson => {
            let mut items = Vec::new();
            for line in text.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line.trim().is_empty() {
                    continue;
                }
                items.push(oracle_item(line));
            }
            if items.iter().all(Option::is_none) {
                return Err(());
            }
            Ok(items)
        }
    }
}

/// Checks `split` on one body against the oracle; `Ok(split into items)`,
/// or `Err` saying how they differ.
pub fn check_split(format: Format, body: &[u8]) -> Result<bool, String> {
    let got = split(format, body, usize::MAX, |n| sluice::api::error::ApiError::TooManyEvents(format!("over {n}")));
    let expected = oracle_split(format, body);
    match (got, expected) {
        (Err(_), Err(())) => Ok(false),
        (Ok(items), Err(())) => Err(format!("split gave {} items where the oracle says 400", items.len())),
        (Err(e), Ok(items)) => Err(format!("split refused ({e:?}) where the oracle has {} items", items.len())),
        (Ok(items), Ok(want)) => {
            if items.len() != want.len() {
                return Err(format!("split gave {} items, the oracle {}", items.len(), want.len()));
            }
            for (i, (got, want)) in items.iter().zip(&want).enumerate() {
                match (got, want) {
                    (Err(_), None) => {}
                    // An array element a `Value` cannot hold: it must be JSON.
                    (Ok(text), None) if format == Format::Json => {
                        if serde_json::from_str::<IgnoredAny>(text).is_err() {
                            return Err(format!("item {i} {text:?} is not JSON"));
                        }
                    }
                    (Ok(text), Some((want_text, want_value))) => {
                        let same = match want_value {
                            Some(v) => serde_json::from_str::<Value>(text).ok().as_ref() == Some(v),
                            None => text == want_text,
                        };
                        let plain = !text.starts_with(JSON_WS) && !text.ends_with(JSON_WS);
                        if !same || !plain {
                            return Err(format!("item {i}: split {text:?}, oracle {want_text:?}"));
                        }
                    }
                    (got, want) => return Err(format!("item {i}: split {got:?}, oracle {want:?}")),
                }
            }
            Ok(true)
        }
    }
}
