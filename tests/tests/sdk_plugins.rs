//! Stages written in Python and JavaScript (plugin-sdk/python, plugin-sdk/js),
//! black-box through the real server on both stores: the example plugins
//! (plugins-py/, plugins-js/) give the same outputs and DLQ entries as the
//! Rust ones on page views like the chain benchmark's, and the sandbox holds
//! them as it holds Rust stages (an endless loop ends in `fuel` or
//! `timeout`, an allocation loop in `memory`, an uncaught exception in
//! `panic` with the language's message).
//!
//! One server per store runs every component (each compiles in seconds; the
//! compiled cache under target/ serves the second server). The components
//! are built by `scripts/build-sdk-plugins.sh`.

use sluice_blackbox_tests as harness;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use harness::{on_both_stores, sdk_wasm, wait_for, Server, StoreKind, SDK_LANGS};
use serde_json::{json, Value};

/// A small deterministic generator (Knuth's MMIX LCG), as the chain bench's.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const BROWSERS: [&str; 3] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
];
const BOTS: [&str; 3] = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "Mozilla/5.0 (compatible; WebCRAWLER/1.0)",
];
const HOSTS: [&str; 4] = ["shop.example.com", "WWW.Example.com", "user:pw@blog.example.org:8443", "[::1]:8080"];
const PATHS: [&str; 5] = ["", "/products/running-shoes", "/blog/2024", "/a%20b/c", "/search"];
const QUERIES: [&str; 7] =
    ["", "?q=running+shoes&page=2", "?utm_campaign=retarget%2D7&utm_source=google", "?q=winter%20jacket&q=gift", "?a&b=&=c", "?k=%C3%A9%zz", "?ref=nav#top"];

/// Page views like the chain benchmark's (about a tenth from bots), and the
/// edge cases both plugins must agree on: URLs that do not parse, non-string
/// fields, non-ASCII text, and a nested `ua` before the top-level one.
fn page_views() -> Vec<Value> {
    let mut rng = Lcg(0x5eed_cafe);
    let mut events: Vec<Value> = (0..120)
        .map(|i| {
            let url = format!("https://{}{}{}", rng.pick(&HOSTS), rng.pick(&PATHS), rng.pick(&QUERIES));
            let ua = if rng.below(10) == 0 { rng.pick(&BOTS) } else { rng.pick(&BROWSERS) };
            json!({"id": format!("pv{i}"), "type": "page_view", "source": "web", "timestamp": 1_767_225_600_000i64 + 137 * i,
                   "data": {"email": format!("u{i}@example.com"), "ms": 20 + rng.below(3000), "referrer": "https://www.google.com/", "ua": ua, "url": url}})
        })
        .collect();
    let edge = [
        json!({"url": "not a url", "ua": "curl/8"}),
        json!({"url": "ht_tp://h/", "ua": "SPIDER-man"}),
        json!({"url": "http://a b/"}),
        json!({"url": "http://h:99999/"}),
        json!({"url": 42, "ua": ["bot"]}),
        json!({"other": true}),
        json!({"ua": "Ünïcödé CrawLer ✓", "url": "https://bücher.example/ä?q=%C3%A9&x=1"}),
        json!({"meta": {"ua": "nested bot"}, "ua": "fine", "url": "https://h.example/?x=\"quoted\""}),
        json!({"note": "tab\there \\ \"quote\"", "ua": "bot", "url": "git+ssh://H.example/p"}),
    ];
    for (i, data) in edge.into_iter().enumerate() {
        events.push(json!({"id": format!("edge{i}"), "type": "page_view", "source": "web", "timestamp": 1_767_225_600_000i64 + i as i64, "data": data}));
    }
    events
}

/// A stage's file name in `target/plugins-<lang>` (Python modules take `_`).
fn file(lang: &str, name: &str) -> String {
    if lang == "py" {
        name.replace('-', "_")
    } else {
        name.to_string()
    }
}

/// Every output and DLQ entry of a pipeline, keyed by event id, without
/// what differs by pipeline (its name and plugin).
fn results(server: &Server, pipeline: &str) -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    for event in server.outputs(pipeline) {
        let id = event["id"].as_str().unwrap().to_string();
        let previous = all.insert(id.clone(), json!({"output": {"type": event["type"], "source": event["source"], "timestamp": event["timestamp"], "data": event["data"]}}));
        assert!(previous.is_none(), "{pipeline}: two outputs for {id}");
    }
    for entry in server.dlq(pipeline) {
        let id = entry["event"]["id"].as_str().unwrap().to_string();
        all.insert(id, json!({"dlq": {"error_kind": entry["error_kind"], "error": entry["error"], "attempts": entry["attempts"]}}));
    }
    all
}

fn wait_processed(server: &Server, pipeline: &str, n: usize) {
    wait_for(&format!("{pipeline} to process {n} events"), Duration::from_secs(90), || {
        let m = server.metrics(pipeline);
        (m["processed"].as_u64() == Some(n as u64) && m["queue_depth"] == json!(0)).then_some(())
    });
}

/// The two stores' runs take turns: the second then loads every component
/// from the compiled cache the first one wrote, instead of both compiling
/// them at once.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn sdk_stages_match_rust_and_are_sandboxed(store: StoreKind) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let server = Server::start(store);
    for plugin in ["bot-filter", "url-parts"] {
        server.upload(&format!("{plugin}-rust"), &plugin.replace('-', "_"));
        for lang in SDK_LANGS {
            server.upload_bytes(&format!("{plugin}-{lang}"), sdk_wasm(lang, &file(lang, plugin)));
        }
    }
    let events = page_views();
    let langs = ["rust", SDK_LANGS[0], SDK_LANGS[1]];
    for plugin in ["bot-filter", "url-parts"] {
        for lang in langs {
            let id = format!("{plugin}-{lang}");
            server.put_pipeline(&id, &json!({"stages": [{"name": "s", "plugin": id}]}));
            let (status, answer) = server.ingest_ndjson(&id, &events);
            assert_eq!(status, 202, "{id}: {answer}");
        }
    }
    // The sandbox matrix, per language, while those run.
    let hostile = ["loop", "alloc", "throw", "ok"].map(|what| json!({"id": what, "type": "t", "data": {"do": what}}));
    for lang in SDK_LANGS {
        let id = format!("hostile-{lang}");
        server.upload_bytes(&id, sdk_wasm(lang, "hostile"));
        // Fuel enough for the allocation loop to reach the memory cap
        // (zeroing 16 MiB costs millions of fuel: at the default 10,000,000
        // it ends in `fuel` first); the endless loop still ends in `fuel`.
        let limits = json!({"fuel": 1_000_000_000u64, "memory_mb": 64, "timeout_ms": 2000});
        server.put_pipeline(&id, &json!({"stages": [{"name": "h", "plugin": id, "limits": limits}]}));
        assert_eq!(server.ingest_ndjson(&id, &hostile).0, 202);
    }

    for plugin in ["bot-filter", "url-parts"] {
        for lang in langs {
            wait_processed(&server, &format!("{plugin}-{lang}"), events.len());
        }
        let rust = results(&server, &format!("{plugin}-rust"));
        // The comparison is not empty on either side: bots dropped, URLs
        // parsed, bad URLs rejected.
        if plugin == "bot-filter" {
            let kept = rust.len();
            assert!(kept > 90 && kept < events.len() - 5, "{plugin}: {kept} of {} kept", events.len());
        } else {
            let failed = rust.values().filter(|r| r.get("dlq").is_some()).count();
            assert_eq!(failed, 4, "{plugin}: {rust:#?}");
            assert_eq!(rust["pv0"]["output"]["data"]["query"].is_object(), true, "{:#}", rust["pv0"]);
        }
        for lang in SDK_LANGS {
            let theirs = results(&server, &format!("{plugin}-{lang}"));
            for (id, want) in &rust {
                assert_eq!(theirs.get(id), Some(want), "{plugin} in {lang}, event {id}");
            }
            assert_eq!(theirs.len(), rust.len(), "{plugin} in {lang}: {:?}", theirs.keys().filter(|k| !rust.contains_key(*k)).collect::<Vec<_>>());
        }
    }

    for (lang, message) in [("py", "KeyError: 'hostile-python: thrown on purpose'"), ("js", "RangeError: hostile-js: thrown on purpose")] {
        let id = format!("hostile-{lang}");
        wait_processed(&server, &id, hostile.len());
        let got = results(&server, &id);
        let kind = |what: &str| got[what]["dlq"]["error_kind"].as_str().unwrap_or_else(|| panic!("{lang} {what}: {got:#?}")).to_string();
        assert!(["fuel", "timeout"].contains(&kind("loop").as_str()), "{lang} loop: {got:#?}");
        assert_eq!(kind("alloc"), "memory", "{lang} alloc: {got:#?}");
        assert_eq!(kind("throw"), "panic", "{lang} throw: {got:#?}");
        let error = got["throw"]["dlq"]["error"].as_str().unwrap();
        assert!(error.contains(message), "{lang}: the DLQ entry names the exception: {error}");
        assert_eq!(got["ok"]["output"]["data"], json!({"do": "ok"}), "{lang}: the event beside the poison ones passes");
    }
}
on_both_stores!(sdk_stages_match_rust_and_are_sandboxed);
