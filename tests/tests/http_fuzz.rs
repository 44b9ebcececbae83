//! Random requests at every route of a real server, on both stores: random
//! methods, path parameters (valid, empty, huge, percent-encoded junk,
//! `..`), query strings, headers and bodies (random bytes, near-JSON,
//! hostile events, large arrays within the body limit).
//!
//! Asserts: no answer ≥ 500 other than 503, every request answered (a
//! handler that panics drops its connection), the process alive and
//! `/healthz` answering at the end, and no `panicked` in its log.
//!
//! Requests are written on raw TCP, so paths reach the server as generated
//! (no URL normalisation of `..`, any method, any bytes). The pipeline set up
//! first is never deleted. `SLUICE_HTTP_FUZZ_REQUESTS` (default 1,500 per
//! store) and `SLUICE_FUZZ_SEED` choose the run; it stops early after
//! 120 s.

use sluice_blackbox_tests as harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use harness::{on_both_stores, Server, StoreKind};
use serde_json::json;

const PIPELINE: &str = "fz";
const WINDOW: &str = "w";
/// The server's body limit in this test (smaller than the default, so the
/// largest bodies stay quick).
const MAX_BODY: usize = 1 << 20;
const TIME_BOUND: Duration = Duration::from_secs(120);

/// A small seeded generator (SplitMix64): the same seed, the same requests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Every route of API.md (from the routers in `host/src/api/`), its usual
/// method first, and a few paths that are no route.
const ROUTES: &[(&str, &[&str])] = &[
    ("/", &["GET"]),
    ("/healthz", &["GET"]),
    ("/readyz", &["GET"]),
    ("/metrics", &["GET"]),
    ("/v1/plugins", &["GET"]),
    ("/v1/plugins/{plugin}", &["GET", "PUT"]),
    ("/v1/plugins/{plugin}/versions/{version}", &["DELETE"]),
    ("/v1/pipelines", &["GET"]),
    ("/v1/pipelines/{pipeline}", &["GET", "PUT", "DELETE"]),
    ("/v1/pipelines/{pipeline}/events", &["POST"]),
    ("/v1/pipelines/{pipeline}/dlq", &["GET", "DELETE"]),
    ("/v1/pipelines/{pipeline}/dlq/replay", &["POST"]),
    ("/v1/pipelines/{pipeline}/output", &["GET"]),
    ("/v1/pipelines/{pipeline}/metrics", &["GET"]),
    ("/v1/pipelines/{pipeline}/windows/{window}", &["GET"]),
    ("/v1/pipelines/{pipeline}/windows/{window}/results", &["GET"]),
    ("/v1/pipelines/{pipeline}/windows/{window}/live", &["GET"]),
    ("/v1/pipelines/{pipeline}/alerts", &["GET"]),
    ("/v1/tables/{table}", &["GET", "PUT"]),
    ("/v1", &["GET"]),
    ("/v2/pipelines", &["GET"]),
    ("/v1/pipelines/{pipeline}/nope", &["GET"]),
    ("/v1/pipelines/{pipeline}/events/{window}", &["POST"]),
    ("//v1//pipelines", &["GET"]),
];

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "FOO", "get"];

/// Path parameters that are never a real one (none decodes to `fz`, so the
/// pipeline set up is never deleted).
const JUNK_PARAMS: &[&str] = &[
    "", "nope", "..", "%2e%2e", "%2E%2E%2F%2E%2E", "a%2Fb", "%ff%fe", "%00", "%", "%zz", "fz%20", "%20fz", "{}", "-1", "0",
    "99999999999999999999", "é", "%C3%A9", "a b", "fz\tx", "%0d%0aX-Injected:%201", "\u{1f600}", "CON", ".", "~",
];

const CONTENT_TYPES: &[&str] = &[
    "application/json", "application/x-ndjson", "application/ndjson", "application/jsonl", "application/wasm", "text/plain",
    "application/json; charset=utf-16", "APPLICATION/JSON;;;", "multipart/form-data; boundary=x", "", ";", "application/x-www-form-urlencoded",
    "\u{7f}junk",
];

const QUERY_KEYS: &[&str] = &["limit", "cursor", "from", "to", "group", "access_token", "x"];
const QUERY_VALUES: &[&str] = &[
    "", "0", "1", "-1", "1000", "1001", "99999999999999999999999", "abc", "%ff", "%00", "0-0", "1-1", "999999999999999-0",
    "18446744073709551615-18446744073709551615", "1.5", "1-0.99999999999", "9223372036854775807", "-9223372036854775808",
    "2026-11-27T10:00:00Z", "null", "%22x%22", "[", "%5B1%5D", "a&b", "é",
];

/// Event texts, hostile ones of issue 10 among them.
const EVENTS: &[&str] = &[
    r#"{"type":"v","data":{"ms":1}}"#,
    r#"{"type":"v","data":{"ms":1e400}}"#,
    r#"{"type":"v","data":{"ms":-1e400,"s":"\ud800"}}"#,
    r#"{"type":"v","timestamp":"2100-01-01T00:00:00Z","data":{"ms":2}}"#,
    r#"{"type":"v","timestamp":9223372036854775807}"#,
    r#"{"type":"v","timestamp":-0,"id":"x"}"#,
    r#"{"type":"v","timestamp":1E+2}"#,
    r#"{"type":"v","id":"dup","id":"dup2","data":{"a":1,"a":2}}"#,
    r#"{"type":"","extra":1}"#,
    r#"{"type":"v","data":[1]}"#,
    r#"{"type":"v","data":{"ms":"1"}}"#,
    r#"[1,2]"#,
    r#"{"type":"v""#,
    "null",
];

/// The pipeline the requests aim at: the pass-through plugin and a
/// tumbling window.
fn spec() -> serde_json::Value {
    json!({
        "stages": [{"name": "pass", "plugin": "bot-filter"}],
        "windows": [{"name": WINDOW, "kind": "tumbling", "size_ms": 1000,
                     "aggregates": [{"op": "count"}, {"op": "avg", "field": "data.ms"}, {"op": "sum", "field": "data.ms"}]}],
    })
}

struct Request {
    method: String,
    target: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    /// An SSE feed: read the head only.
    live: bool,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let cut = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned();
        let headers: Vec<String> = self.headers.iter().map(|(k, v)| format!("{k}: {}", cut(v))).collect();
        write!(f, "{} {} {headers:?} body ({} bytes) {:?}", self.method, cut(&self.target), self.body.len(), cut(&self.body))
    }
}

fn deep(levels: usize) -> String {
    format!("{{\"type\":\"v\",\"data\":{}1{}}}", "{\"a\":".repeat(levels), "}".repeat(levels))
}

fn event(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => deep([63, 64, 65, 129, 200][rng.below(5)]),
        1 => format!("{{\"type\":\"v\",\"id\":\"{}\"}}", "x".repeat([1, 256, 257, 5000][rng.below(4)])),
        _ => rng.pick(EVENTS).to_string(),
    }
}

fn body(rng: &mut Rng, port: u16) -> Vec<u8> {
    match rng.below(14) {
        0 => Vec::new(),
        1 => {
            let n = rng.below(2048);
            rng.bytes(n)
        }
        2 => event(rng).into_bytes(),
        3 | 4 => {
            let n = [1, 3, 10, 100, 1000, 20_000][rng.below(6)];
            let items: Vec<String> = (0..n).map(|_| event(rng)).collect();
            let text = format!("[{}]", items.join(","));
            text.into_bytes()
        }
        5 => {
            let n = [1, 5, 100, 2000][rng.below(4)];
            (0..n).map(|_| event(rng) + "\n").collect::<String>().into_bytes()
        }
        6 => {
            // Near-JSON: a valid body with a few bytes changed.
            let mut b = format!("[{},{}]", event(rng), event(rng)).into_bytes();
            for _ in 0..3 {
                let at = rng.below(b.len());
                b[at] = b"{}[]\",:\\ \xff"[rng.below(10)];
            }
            b
        }
        7 => {
            let mut spec = spec();
            match rng.below(4) {
                0 => spec["stages"][0]["plugin"] = json!(rng.pick(&["nope", "", "bot-filter@9", "bot-filter@0"])),
                1 => spec["windows"][0]["size_ms"] = json!([0i64, -1, 1, 1i64 << 60][rng.below(4)]),
                2 => spec["max_queue_depth"] = json!([0, 1, -5][rng.below(3)]),
                _ => spec["bogus"] = json!(true),
            }
            spec.to_string().into_bytes()
        }
        8 => rng.pick(&[r#"{"ids":["a","b"]}"#, r#"{"limit":0}"#, r#"{"limit":1}"#, r#"{"limit":18446744073709551615}"#, r#"{"ids":[1]}"#, "{}", r#"{"ids":[],"limit":1}"#]).into(),
        9 => rng.pick(&[r#"{"k":"v"}"#, r#"{"k":1}"#, "[]", r#"{"":""}"#, r#"{"k":"\ud800"}"#]).into(),
        10 => {
            let mut b = b"\0asm\x0d\0\x01\0".to_vec();
            let n = rng.below(512);
            b.extend(rng.bytes(n));
            b
        }
        11 => format!("{{\"type\":\"v\",\"data\":{{\"pad\":\"{}\"}}}}", "p".repeat(MAX_BODY - 100 + rng.below(200))).into_bytes(),
        12 => format!("http://127.0.0.1:{port}/{}", "a".repeat(rng.below(100))).into_bytes(),
        _ => "{\"type\":\"v\"}\r\n\r\n\u{a0}\n{\"type\":\"w\"}".into(),
    }
}

fn param(rng: &mut Rng, valid: &str) -> String {
    match rng.below(10) {
        0..=5 => valid.to_string(),
        6 => "a".repeat([100, 3000, 20_000][rng.below(3)]),
        _ => rng.pick(JUNK_PARAMS).to_string(),
    }
}

fn request(rng: &mut Rng, port: u16) -> Request {
    // Ingest a quarter of the time, so the pipeline has events, outputs and
    // window results for the reads to page through.
    let (template, methods) = if rng.chance(25) { ("/v1/pipelines/{pipeline}/events", &["POST"][..]) } else { ROUTES[rng.below(ROUTES.len())] };
    let method = if rng.chance(70) { methods[rng.below(methods.len())] } else { rng.pick(METHODS) }.to_string();
    let mut path = template
        .replace("{pipeline}", &param(rng, PIPELINE))
        .replace("{window}", &param(rng, WINDOW))
        .replace("{plugin}", &param(rng, "bot-filter"))
        .replace("{version}", &param(rng, "1"))
        .replace("{table}", &param(rng, "t"));
    // Never delete the pipeline under test.
    if method.eq_ignore_ascii_case("DELETE") && path == format!("/v1/pipelines/{PIPELINE}") {
        path.push_str("x");
    }
    if rng.chance(40) {
        let n = 1 + rng.below(4);
        let pairs: Vec<String> = (0..n).map(|_| format!("{}={}", rng.pick(QUERY_KEYS), rng.pick(QUERY_VALUES))).collect();
        path = format!("{path}?{}", pairs.join("&"));
    }
    let mut headers = Vec::new();
    let host = if rng.chance(5) { rng.pick(&["evil.example", "127.0.0.1.evil.example", "", "[::1]:1", "localhost"]).to_string() } else { format!("127.0.0.1:{port}") };
    headers.push(("Host".to_string(), host.into_bytes()));
    if rng.chance(60) {
        headers.push(("Content-Type".into(), rng.pick(CONTENT_TYPES).into()));
    }
    if rng.chance(20) {
        let token = rng.pick(&["Bearer junk", "Bearer ", "Basic YTpi", "bearer", "Bearer \u{7f}"]).to_string();
        let token = if rng.chance(20) { format!("Bearer {}", "t".repeat(8000)) } else { token };
        headers.push(("Authorization".into(), token.into_bytes()));
    }
    if rng.chance(10) {
        let origin = rng.pick(&["http://evil.example", "null", "http://127.0.0.1", "file://"]).to_string();
        headers.push(("Origin".into(), origin.into_bytes()));
    }
    if rng.chance(10) {
        let key = rng.pick(&["k1", "k1", "", "\u{7f}", "x x"]).to_string();
        let key = if rng.chance(20) { "k".repeat(200) } else { key };
        headers.push(("Idempotency-Key".into(), key.into_bytes()));
    }
    if rng.chance(5) {
        let n = [1000, 8000, 30_000][rng.below(3)];
        headers.push(("X-Junk".into(), vec![b'j'; n]));
    }
    let body = if method == "GET" && rng.chance(80) { Vec::new() } else { body(rng, port) };
    let live = template.ends_with("/live");
    Request { method, target: path.into_bytes(), headers, body, live }
}

/// What happened to one request: the status, or why there is none.
enum Outcome {
    Status(u16, String),
    NoAnswer(String),
}

fn send(port: u16, req: &Request) -> Outcome {
    let mut stream = match TcpStream::connect(("127.0.0.1", port)) {
        Ok(s) => s,
        Err(e) => return Outcome::NoAnswer(format!("connect: {e}")),
    };
    let read_timeout = if req.live { Duration::from_secs(2) } else { Duration::from_secs(30) };
    stream.set_read_timeout(Some(read_timeout)).ok();
    stream.set_write_timeout(Some(Duration::from_secs(30))).ok();
    let mut head = Vec::new();
    head.extend(req.method.as_bytes());
    head.push(b' ');
    head.extend(&req.target);
    head.extend(b" HTTP/1.1\r\n");
    for (name, value) in &req.headers {
        head.extend(name.as_bytes());
        head.extend(b": ");
        head.extend(value);
        head.extend(b"\r\n");
    }
    head.extend(format!("Content-Length: {}\r\nConnection: close\r\n\r\n", req.body.len()).as_bytes());
    // The server may answer (413, 400) and close before reading all of it.
    let written = stream.write_all(&head).and_then(|()| stream.write_all(&req.body));
    let mut answer = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend(&buf[..n]);
                if req.live && answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e) => {
                if answer.is_empty() {
                    return Outcome::NoAnswer(format!("read: {e} (write: {written:?})"));
                }
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&answer[..answer.len().min(2000)]).into_owned();
    match text.strip_prefix("HTTP/1.1 ").and_then(|rest| rest.get(..3)).and_then(|code| code.parse().ok()) {
        Some(status) => Outcome::Status(status, text),
        None => Outcome::NoAnswer(format!("no status line (write: {written:?}): {text:?}")),
    }
}

fn http_fuzz(store: StoreKind) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let max_body = MAX_BODY.to_string();
    let mut server = Server::start_logging(store, &["--max-body-bytes", &max_body, "--window-tick-ms", "50"], log.path());
    server.upload("bot-filter", "bot_filter");
    server.put_pipeline(PIPELINE, &spec());
    let (status, body, _) = server.raw(reqwest::Method::PUT, "/v1/tables/t", Some("application/json"), br#"{"k":"v"}"#.to_vec());
    assert_eq!(status, 200, "{body}");

    // Regressions found by this test first, then the random requests.
    let mut fixed = Vec::new();
    for route in ["output", "dlq", "alerts", "windows/w/results"] {
        for cursor in ["18446744073709551615-18446744073709551615", "18446744073709551615", "18446744073709551615-18446744073709551615.1"] {
            let target = format!("/v1/pipelines/{PIPELINE}/{route}?cursor={cursor}").into_bytes();
            let headers = vec![("Host".to_string(), format!("127.0.0.1:{}", server.port).into_bytes())];
            fixed.push(Request { method: "GET".into(), target, headers, body: Vec::new(), live: false });
        }
    }
    let seed = std::env::var("SLUICE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x48_7474_70u64);
    let count: usize = std::env::var("SLUICE_HTTP_FUZZ_REQUESTS").ok().and_then(|s| s.parse().ok()).unwrap_or(1500);
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut failures = Vec::new();
    let mut sent = 0;
    while sent < count && started.elapsed() < TIME_BOUND {
        let req = fixed.pop().unwrap_or_else(|| request(&mut rng, server.port));
        sent += 1;
        match send(server.port, &req) {
            Outcome::Status(status, answer) => {
                *statuses.entry(status).or_default() += 1;
                if status >= 500 && status != 503 {
                    failures.push(format!("{status} for {req:?}\n  answer: {answer}"));
                }
            }
            // A body over the limit may be cut off by the 413 before it is all written.
            Outcome::NoAnswer(why) if req.body.len() > MAX_BODY && why.contains("write: Err") => {}
            Outcome::NoAnswer(why) => failures.push(format!("no answer ({why}) for {req:?}")),
        }
        if failures.len() >= 20 {
            break;
        }
    }
    eprintln!("http fuzz (seed {seed}): {sent} requests in {:.1?}, statuses {statuses:?}", started.elapsed());
    for failure in &failures {
        eprintln!("FAILED: {failure}");
    }

    assert!(server.is_alive(), "the server died; log:\n{}", std::fs::read_to_string(log.path()).unwrap_or_default());
    let (status, body) = server.get("/healthz");
    assert_eq!(status, 200, "/healthz after the fuzz: {body}");
    let logged = std::fs::read_to_string(log.path()).unwrap_or_default();
    assert!(!logged.contains("panicked"), "the server panicked:\n{logged}");
    assert!(failures.is_empty(), "{} requests failed:\n{}", failures.len(), failures.join("\n"));
    assert!(statuses.keys().any(|s| *s == 202) && statuses.keys().any(|s| *s == 200), "the fuzz reached no handler: {statuses:?}");
}

on_both_stores!(http_fuzz);
