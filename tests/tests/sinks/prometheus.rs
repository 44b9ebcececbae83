//! `/metrics` (API.md v1.1): `promtool check metrics` passes on a live
//! server's answer, every family has `# HELP` and `# TYPE`, stage duration
//! and event-to-output latency are histograms with buckets, and the sink
//! delivery and failure counters count what the sinks did.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use sluice_blackbox_tests::{wait_for, Server, StoreKind};
use serde_json::{json, Value};

use super::receiver::{Mode, Receiver};
use super::{chain_spec, ingest, sink_status, start, wait_delivered};

/// `promtool check metrics` on `text`: (passed, what it printed).
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (scripts/test.sh installs Debian's `prometheus` package for it)");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool finishes");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The family a sample line belongs to (histogram suffixes taken off when
/// the family is a histogram).
fn family_of<'a>(line: &'a str, histograms: &BTreeSet<&str>) -> &'a str {
    let name = line.split(['{', ' ']).next().unwrap_or(line);
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if histograms.contains(base) {
                return base;
            }
        }
    }
    name
}

/// The value of the one sample line starting with `prefix` and holding every one of `labels`.
fn sample(text: &str, prefix: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(prefix) && labels.iter().all(|want| l.contains(want)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

fn metrics_pass_promtool(store: StoreKind) {
    let server: Server = start(store);
    let hook = Receiver::start(Mode::Accept);
    let refuser = Receiver::start(Mode::Answer(400));
    server.put_pipeline(
        "web",
        &chain_spec(json!([{"name": "hook", "kind": "http", "url": hook.url, "batch_max": 50},
                           {"name": "refuser", "kind": "http", "url": refuser.url, "batch_max": 50}])),
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    // 100 page views stamped now, 20 of them bots (dropped by the first stage): 80 outputs.
    let events: Vec<Value> = (0..100)
        .map(|i| {
            let ua = if i % 5 == 0 { "Googlebot/2.1" } else { "Mozilla/5.0" };
            json!({"id": format!("m{i}"), "type": "page_view", "timestamp": now,
                   "data": {"url": format!("https://shop.example/p/{i}"), "ua": ua, "email": "u@example.com"}})
        })
        .collect();
    ingest(&server, "web", &events, 50);
    wait_delivered(&server, "web", "hook", 80, Duration::from_secs(30));
    wait_for("the refusing sink to give up on 80", Duration::from_secs(30), || (sink_status(&server, "web", "refuser")["failed"] == json!(80)).then_some(()));

    let text = server.client().get(server.url("/metrics")).send().expect("GET /metrics").text().expect("a text body");
    let (passed, said) = promtool_check(&text);
    assert!(passed, "promtool check metrics failed:\n{said}\n---\n{text}");

    // Every family has HELP and TYPE.
    let typed: Vec<(&str, &str)> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split_once(' ')).collect();
    let histograms: BTreeSet<&str> = typed.iter().filter(|(_, t)| *t == "histogram").map(|(n, _)| *n).collect();
    let families: BTreeSet<&str> = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).map(|l| family_of(l, &histograms)).collect();
    assert!(families.len() >= 15, "{families:?}");
    for family in &families {
        assert!(text.contains(&format!("# HELP {family} ")), "no HELP for {family}");
        assert!(typed.iter().any(|(n, _)| n == family), "no TYPE for {family}");
    }
    for histogram in ["sluice_stage_call_seconds", "sluice_event_to_output_seconds"] {
        assert!(histograms.contains(histogram), "{histogram} is not a histogram: {typed:?}");
    }

    // The event-to-output histogram counted each output once, all of them under 5 minutes.
    let web = "pipeline=\"web\"";
    assert_eq!(sample(&text, "sluice_event_to_output_seconds_count", &[web]), Some(80.0), "{text}");
    assert_eq!(sample(&text, "sluice_event_to_output_seconds_bucket", &[web, "le=\"+Inf\""]), Some(80.0));
    assert_eq!(sample(&text, "sluice_event_to_output_seconds_bucket", &[web, "le=\"300\""]), Some(80.0));
    let sum = sample(&text, "sluice_event_to_output_seconds_sum", &[web]).expect("a sum");
    assert!(sum > 0.0 && sum < 80.0 * 300.0, "{sum}");
    // Each stage's calls are in its histogram: as many observations as calls.
    for stage in ["drop-bots", "parts", "redact"] {
        let label = format!("stage=\"{stage}\"");
        let calls = sample(&text, "sluice_stage_calls_total", &[web, &label]).expect("calls");
        assert!(calls >= 1.0);
        assert_eq!(sample(&text, "sluice_stage_call_seconds_count", &[web, &label]), Some(calls), "{stage}");
    }
    // The sink counters.
    assert_eq!(sample(&text, "sluice_sink_delivered_total", &[web, "sink=\"hook\""]), Some(80.0));
    assert_eq!(sample(&text, "sluice_sink_failed_total", &[web, "sink=\"refuser\""]), Some(80.0));
}
sluice_blackbox_tests::on_both_stores!(metrics_pass_promtool);
