//! Fuzzing the ingest parser (`parse_ingest`) and body splitter (`split`)
//! with serde_json as the oracle.
//!
//! Inputs are arbitrary bytes and near-JSON: valid event objects and bodies,
//! then mutated (truncation, byte flips, inserted or deleted brackets,
//! quotes, commas and escapes, lone `\u` surrogates, non-UTF-8 bytes) with
//! odd numbers (`1e400`, `-0`, `1E+2`, 20-digit integers), deep nesting,
//! duplicate keys, unknown members and `null`s.
//!
//! The oracle is serde_json reading the same text (to a `Value`, or, where a
//! `Value` cannot hold it, checking the syntax with `IgnoredAny`) plus the
//! rules of API.md written plainly below ([`oracle_event`]). The parser must
//! agree on accept/reject and, for accepted events, on `type`, `id`,
//! `source`, `timestamp` and `data` (equal as `serde_json::Value`).
//!
//! Cases: `SLUICE_FUZZ_CASES` (default 100,000 for each of the parser and
//! the splitter); seed: `SLUICE_FUZZ_SEED` (default fixed, so a failure
//! repeats; the failing case and seed are printed).

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::Value;
use sluice::api::ingest::parse::parse_ingest;
use sluice::api::ingest::split::{split, Format};

/// What `parse_ingest` is given as the receive time.
const NOW: i64 = 1_795_737_600_000;
/// What `parse_ingest` is given as a new id: over 256 characters, so no
/// client id can equal it.
fn generated_id() -> String {
    "g".repeat(300)
}
/// `data` nested deeper than this may also be refused (API.md v1.1; the
/// check may live in the route rather than in `parse_ingest`).
const MAX_DATA_DEPTH: usize = 64;

fn cases() -> u64 {
    std::env::var("SLUICE_FUZZ_CASES").ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(100_000)
}

fn seed() -> u64 {
    std::env::var("SLUICE_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_1ce)
}

// ---------------------------------------------------------------- oracle

/// One member of an event object as serde_json reads it: a `Value`, or the
/// raw text of a value serde_json's `Value` cannot hold (a number beyond
/// f64, nesting past its recursion limit, a lone surrogate) but that is
/// still JSON by its grammar.
#[derive(Debug)]
enum Member {
    Value(Value),
    Unrepresentable(String),
}

/// What the oracle expects of one event text.
#[derive(Debug)]
enum Expect {
    Reject,
    Accept(Expected),
    /// Either is right (the reason is given), but if accepted, these values.
    Either(&'static str, Expected),
}

#[derive(Debug)]
struct Expected {
    kind: String,
    id: String,
    source: String,
    timestamp: i64,
    data: Member,
}

/// The members of a JSON object text per serde_json, later duplicates
/// winning (as serde_json's `Map` does); `None` if it is not an object.
fn oracle_members(text: &str) -> Option<BTreeMap<String, Member>> {
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
fn depth(v: &Value) -> usize {
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
fn oracle_event(text: &str) -> Expect {
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
fn nesting_of(text: &str) -> usize {
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
fn rfc3339_ms(text: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    let nanos = t.unix_timestamp_nanos();
    if nanos < 0 {
        return None;
    }
    i64::try_from(nanos.div_euclid(1_000_000)).ok()
}

/// Checks `parse_ingest` on one text against the oracle; `Ok(accepted)`,
/// or `Err` saying how they differ.
fn check_event(text: &str) -> Result<bool, String> {
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
const JSON_WS: [char; 4] = [' ', '\t', '\n', '\r'];

/// One item the splitter should give: its text (trimmed of JSON
/// whitespace) is JSON; `value` is serde_json's `Value` of it where one can
/// hold it.
fn oracle_item(text: &str) -> Option<(String, Option<Value>)> {
    serde_json::from_str::<IgnoredAny>(text).ok()?;
    Some((text.trim_matches(JSON_WS).to_string(), serde_json::from_str(text).ok()))
}

/// The splitter's expected result: `Err(())` for a 400, else one entry per
/// item, `None` for an item refused on its own.
type SplitExpect = Result<Vec<Option<(String, Option<Value>)>>, ()>;

/// The splitting rules of API.md, plainly. JSON: the body must be UTF-8 and
/// JSON; an array gives its elements (whatever they are: the parser judges
/// each), an object gives itself, anything else is a 400. NDJSON: UTF-8;
/// lines split at `\n` (a `\r` before it dropped); blank lines skipped; each
/// other line is an item, or an item error if it is not JSON; no items, or
/// no valid one, is a 400.
fn oracle_split(format: Format, body: &[u8]) -> SplitExpect {
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
fn check_split(format: Format, body: &[u8]) -> Result<bool, String> {
    let got = split(format, body);
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

// ------------------------------------------------------------- generator

/// Near-JSON made from event objects and odd pieces, then mutated.
struct Gen {
    rng: StdRng,
    /// Making an event whose members are all valid (some of the time, so
    /// that enough events are accepted to compare their values).
    clean: bool,
}

const NUMBERS: &[&str] = &[
    "0", "-0", "1", "-1", "42", "1.5", "-0.0", "0.0", "100.0", "1e400", "-1e400", "1e-400", "1E+2", "1e2", "2E-3",
    "9223372036854775807", "9223372036854775808", "-9223372036854775808", "18446744073709551615", "18446744073709551616",
    "123456789012345678901234567890", "1.7976931348623157e308", "2e308", "4.9e-324", "1795737600000",
    // Not JSON:
    "01", "1.", ".5", "+1", "NaN", "Infinity", "-", "1e", "0x10",
];

const STRINGS: &[&str] = &[
    "", "v", "view", "a\\\"b", "\\u0000", "\\n\\t", "caf\\u00e9", "é", "日本", "\\ud83d\\ude00", "😀", "\\ud800", "\\udc00",
    "\\ud800x", "\\uDBFF\\uDFFF", "\\u12", "\\x41", "\\/", "tab\there", "2026-11-27T10:00:00Z", "2026-11-27T10:00:00.123456789+02:00",
    "1970-01-01T00:00:00Z", "1969-12-31T23:59:59.9995Z", "1969-12-31T23:59:59Z", "9999-12-31T23:59:59Z", "2026-02-30T00:00:00Z",
    "2026-11-27 10:00:00Z", "2026-11-27T10:00:00", "2016-12-31T23:59:60Z", "yesterday", "null",
];

const KEYS: &[&str] = &["type", "id", "source", "timestamp", "data", "\\u0074ype", "typ\\u0065", "Type", "extra", "", "data ", "\\ud800"];

const PIECES: &[&str] = &["{", "}", "[", "]", "\"", ",", ":", "\\", "\\u", "\\ud800", "\\udc00", "null", "1e400", "-0", " ", "\n", "\r\n", "\u{a0}", "\u{0}", "\"type\":\"v\""];

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen { rng: StdRng::seed_from_u64(seed), clean: false }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.rng.random_range(0..from.len())]
    }

    fn ws(&mut self) -> &'static str {
        if self.chance(0.8) {
            ""
        } else {
            ["", " ", "\t", "\n", "\r", "  \n "][self.rng.random_range(0..6)]
        }
    }

    fn string(&mut self) -> String {
        if self.clean {
            return format!("\"{}\"", self.pick(&STRINGS[1..10]));
        }
        match self.rng.random_range(0..10) {
            0 => {
                let n = [1, 255, 256, 257, 129, 128][self.rng.random_range(0..6)];
                let c = if self.chance(0.5) { "é" } else { "x" };
                format!("\"{}\"", c.repeat(n))
            }
            1 => format!("\"{}{}\"", self.pick(STRINGS), self.pick(STRINGS)),
            _ => format!("\"{}\"", self.pick(STRINGS)),
        }
    }

    fn value(&mut self, depth: usize) -> String {
        match self.rng.random_range(0..if depth > 4 { 5 } else { 8 }) {
            0 => "null".into(),
            1 => ["true", "false"][self.rng.random_range(0..2)].into(),
            2 | 3 => self.pick(NUMBERS).into(),
            4 => self.string(),
            5 => {
                let n = self.rng.random_range(0..4);
                let items: Vec<String> = (0..n).map(|_| self.value(depth + 1)).collect();
                format!("[{}]", items.join(","))
            }
            _ => self.object(depth + 1),
        }
    }

    fn object(&mut self, depth: usize) -> String {
        let n = self.rng.random_range(0..4);
        let members: Vec<String> = (0..n)
            .map(|_| {
                let key = if self.chance(0.7) { format!("k{}", self.rng.random_range(0..3)) } else { self.pick(KEYS).to_string() };
                let (w1, w2) = (self.ws(), self.ws());
                format!("\"{key}\"{w1}:{w2}{}", self.value(depth))
            })
            .collect();
        format!("{{{}}}", members.join(","))
    }

    /// An object nested `levels` deep, as in issue row 2.
    fn deep(&mut self, levels: usize) -> String {
        let leaf = self.value(5);
        let (open, close) = if self.chance(0.5) { ("{\"a\":", "}") } else { ("[", "]") };
        let inner = format!("{}{leaf}{}", open.repeat(levels.saturating_sub(1)), close.repeat(levels.saturating_sub(1)));
        format!("{{\"a\":{inner}}}")
    }

    fn event(&mut self) -> String {
        self.clean = self.chance(0.3);
        let event = self.event_members();
        self.clean = false;
        event
    }

    fn event_members(&mut self) -> String {
        let mut members = Vec::new();
        for name in ["type", "id", "source", "timestamp", "data"] {
            let present = if name == "type" { self.chance(0.95) } else { self.chance(0.5) };
            if !present {
                continue;
            }
            let value = match name {
                _ if self.chance(0.05) => "null".to_string(),
                "timestamp" if self.clean => self.rng.random_range(0..i64::MAX).to_string(),
                "type" | "id" | "source" if self.chance(0.9) => self.string(),
                "timestamp" if self.chance(0.5) => self.pick(NUMBERS).to_string(),
                "timestamp" if self.chance(0.6) => format!("\"{}\"", self.pick(&STRINGS[18..])),
                "data" if self.chance(0.1) => {
                    let levels = self.rng.random_range(60..140);
                    self.deep(levels)
                }
                "data" if self.chance(0.85) => self.object(1),
                _ => self.value(2),
            };
            let key = if !self.clean && self.chance(0.05) { self.pick(KEYS).to_string() } else { name.to_string() };
            members.push(format!("\"{key}\"{}:{}{value}", self.ws(), self.ws()));
        }
        if !self.clean && self.chance(0.1) {
            let key = self.pick(KEYS);
            let v = self.value(3);
            members.push(format!("\"{key}\":{v}"));
        }
        if !self.clean && self.chance(0.05) {
            members.push(format!("\"unknown{}\":1", self.rng.random_range(0..3)));
        }
        // Shuffle the member order a little.
        if members.len() > 1 && self.chance(0.5) {
            let (a, b) = (self.rng.random_range(0..members.len()), self.rng.random_range(0..members.len()));
            members.swap(a, b);
        }
        let sep = format!("{},{}", self.ws(), self.ws());
        format!("{}{{{}{}{}}}{}", self.ws(), self.ws(), members.join(&sep), self.ws(), self.ws())
    }

    /// A few random edits of `text`'s bytes.
    fn mutate(&mut self, mut bytes: Vec<u8>, non_utf8: bool) -> Vec<u8> {
        let edits = self.rng.random_range(1..4);
        for _ in 0..edits {
            let at = if bytes.is_empty() { 0 } else { self.rng.random_range(0..=bytes.len()) };
            match self.rng.random_range(0..6) {
                0 => bytes.truncate(at),
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                2 => {
                    let piece = self.pick(PIECES).as_bytes().to_vec();
                    bytes.splice(at..at, piece);
                }
                3 if at < bytes.len() && non_utf8 => bytes[at] ^= 1 << self.rng.random_range(0..8),
                3 if at < bytes.len() => bytes[at] = b"{}[]\",:\\u0e-. a"[self.rng.random_range(0..15)],
                4 if non_utf8 => bytes.insert(at, [0xff, 0xc3, 0x80, 0xed][self.rng.random_range(0..4)]),
                _ if !bytes.is_empty() => {
                    // Duplicate a slice.
                    let from = self.rng.random_range(0..bytes.len());
                    let to = (from + self.rng.random_range(1..16)).min(bytes.len());
                    let slice = bytes[from..to].to_vec();
                    bytes.splice(at..at, slice);
                }
                _ => {}
            }
        }
        bytes
    }

    /// Random bytes from a JSON-ish alphabet, or any bytes.
    fn noise(&mut self, any_bytes: bool) -> Vec<u8> {
        let n = self.rng.random_range(0..40);
        if any_bytes {
            (0..n).map(|_| self.rng.random()).collect()
        } else {
            const ALPHABET: &[u8] = b"{}[]\",:\\utrue0123456789e-. \"typedata";
            (0..n).map(|_| ALPHABET[self.rng.random_range(0..ALPHABET.len())]).collect()
        }
    }

    /// One event text for `parse_ingest` (UTF-8).
    fn event_text(&mut self) -> String {
        let bytes = match self.rng.random_range(0..10) {
            0 => self.noise(false),
            1 => self.value(0).into_bytes(),
            2..=5 => self.event().into_bytes(),
            _ => {
                let e = self.event().into_bytes();
                self.mutate(e, false)
            }
        };
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// One body for `split`.
    fn body(&mut self) -> (Format, Vec<u8>) {
        let format = if self.chance(0.5) { Format::Json } else { Format::NdJson };
        let n = self.rng.random_range(0..6);
        let items: Vec<String> = (0..n).map(|_| if self.chance(0.8) { self.event() } else { self.value(2) }).collect();
        let body = match (format, self.rng.random_range(0..4)) {
            (_, 0) => {
                let any_bytes = self.chance(0.3);
                self.noise(any_bytes)
            }
            (Format::Json, 1) => self.event().into_bytes(),
            (Format::Json, _) => format!("{}[{}]{}", self.ws(), items.join(","), self.ws()).into_bytes(),
            (Format::NdJson, _) => {
                let mut text = String::new();
                for item in &items {
                    text.push_str(item);
                    text.push_str(["\n", "\r\n", "\n\n", "\n \t\n"][self.rng.random_range(0..4)]);
                }
                text.into_bytes()
            }
        };
        let body = if self.chance(0.5) {
            let non_utf8 = self.chance(0.2);
            self.mutate(body, non_utf8)
        } else {
            body
        };
        (format, body)
    }
}

// ----------------------------------------------------------------- tests

/// Runs `cases` checks, panicking at the first difference with the input,
/// the seed and the case number; a tenth of the cases or more must be
/// accepted and refused each, so the generator tests both sides.
fn run<T: std::fmt::Debug>(name: &str, make: impl Fn(&mut Gen) -> T, check: impl Fn(&T) -> Result<bool, String>) {
    let (seed, cases) = (seed(), cases());
    let mut gen = Gen::new(seed);
    let started = std::time::Instant::now();
    let mut accepted = 0u64;
    for case in 0..cases {
        let input = make(&mut gen);
        match check(&input) {
            Ok(yes) => accepted += u64::from(yes),
            Err(why) => panic!("{name}: case {case} (SLUICE_FUZZ_SEED={seed}) differs from the oracle: {why}\ninput: {input:?}"),
        }
    }
    eprintln!("{name}: {cases} cases ({accepted} accepted) agree with serde_json in {:.1?} (seed {seed})", started.elapsed());
    assert!(accepted >= cases / 10 && cases - accepted >= cases / 10, "{name}: {accepted} of {cases} accepted: the generator is lopsided");
}

#[test]
fn parse_ingest_agrees_with_serde_json() {
    run("parse_ingest", Gen::event_text, |text| check_event(text));
}

#[test]
fn split_agrees_with_serde_json() {
    run("split", Gen::body, |(format, body)| check_split(*format, body));
}

/// Hand-picked cases the random ones may miss, each with what the oracle
/// says (so the oracle itself is checked too).
#[test]
fn edge_cases_agree_with_serde_json() {
    let cases: &[(&str, bool)] = &[
        (r#"{"type":"v"}"#, true),
        (r#"{"type":""}"#, false),
        (r#"{"type":"v","type":"w"}"#, true),
        (r#"{"type":"v","type":5}"#, false),
        (r#"{"type":"v","data":{"ms":1e400}}"#, true),
        (r#"{"type":"v","timestamp":1e400}"#, false),
        (r#"{"type":"v","timestamp":1E+2}"#, false),
        (r#"{"type":"v","timestamp":100}"#, true),
        (r#"{"type":"v","timestamp":9223372036854775807}"#, true),
        (r#"{"type":"v","timestamp":9223372036854775808}"#, false),
        (r#"{"type":"v","timestamp":"1970-01-01T00:00:00Z"}"#, true),
        (r#"{"type":"v","timestamp":"1969-12-31T23:59:59Z"}"#, false),
        (r#"{"type":"v","timestamp":"1969-12-31T23:59:59.9995Z"}"#, false),
        (r#"{"type":"v","data":{"s":"\ud800"}}"#, true),
        (r#"{"type":"\ud800"}"#, false),
        (r#"{"type":"v","extra":null}"#, false),
        (r#"{"type":"v","id":null,"source":null,"timestamp":null,"data":null}"#, true),
        (r#"{"type":"v","data":[]}"#, false),
        (r#"{"type":"v","data":{"a":1,"a":2}}"#, true),
        ("{\"type\":\"v\",\"id\":\"é\"}", true),
    ];
    for (text, accept) in cases {
        let oracle = !matches!(oracle_event(text), Expect::Reject);
        assert_eq!(oracle, *accept, "the oracle on {text}");
        assert_eq!(check_event(text), Ok(*accept), "{text}");
    }
    let long_id = format!("{{\"type\":\"v\",\"id\":\"{}\"}}", "é".repeat(256));
    assert!(matches!(oracle_event(&long_id), Expect::Accept(_)));
    check_event(&long_id).unwrap_or_else(|why| panic!("256 × é: {why}"));
    let deep = format!("{{\"type\":\"v\",\"data\":{}1{}}}", "{\"a\":".repeat(200), "}".repeat(200));
    check_event(&deep).unwrap_or_else(|why| panic!("200 levels: {why}"));
    for (format, body) in [
        (Format::Json, &b"[1e400, {\"type\":\"v\"}]"[..]),
        (Format::Json, b" {\"type\":\"v\"} \n"),
        (Format::NdJson, b"{\"type\":\"v\"}\r\n\r\n1e400\n{oops\n"),
        (Format::NdJson, b"\xff\n"),
    ] {
        check_split(format, body).unwrap_or_else(|why| panic!("{:?}: {why}", String::from_utf8_lossy(body)));
    }
}
