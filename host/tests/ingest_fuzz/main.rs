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
//! repeats; the failing case and seed are printed). The oracle is in
//! `oracle.rs`, shared with the cargo-fuzz targets in `fuzz/`.

mod oracle;

use oracle::{check_event, check_split, oracle_event, Expect};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice::api::ingest::split::Format;

fn cases() -> u64 {
    std::env::var("SLUICE_FUZZ_CASES").ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(100_000)
}

fn seed() -> u64 {
    std::env::var("SLUICE_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_1ce)
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
