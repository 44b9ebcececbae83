//! The client CLI (`send`, `apply`, `pipelines`, `get`, `plugin push|ls|rm`,
//! `tail`, `dlq`, `top --once`, `completions`) run as the real binary against
//! a real server.

use sluice_blackbox_tests as harness;

use std::collections::HashSet;
use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::{sluice_bin, wait_for, wasm_path, Server};
use serde_json::{json, Value};

/// Runs `sluice ARGS --server <server>`; answers (exit code, stdout, stderr).
fn cli(server: &Server, args: &[&str]) -> (i32, String, String) {
    let out: Output = Command::new(sluice_bin())
        .args(args)
        .env("SLUICE_SERVER", server.url(""))
        .env_remove("SLUICE_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("sluice runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// [`cli`], insisting on exit 0.
fn ok(server: &Server, args: &[&str]) -> String {
    let (code, out, err) = cli(server, args);
    assert_eq!(code, 0, "sluice {args:?} failed:\n{out}\n{err}");
    out
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn send_of_a_million_events_through_429s_loses_and_duplicates_nothing() {
    const N: usize = 1_000_000;
    let (store, dir) = harness::embedded_store();
    let server = Server::start(store);
    server.upload("bots", "bot_filter");
    // A queue bound far below the input: the sender meets 429s.
    server.put_pipeline("flood", &json!({"stages": [{"name": "bots", "plugin": "bots"}], "max_queue_depth": 5000}));
    let file = dir.path().join("events.ndjson");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    for i in 0..N {
        writeln!(w, r#"{{"id":"e{i}","type":"view","data":{{"n":{i}}}}}"#).unwrap();
    }
    w.flush().unwrap();
    drop(w);

    let started = Instant::now();
    let out = ok(&server, &["send", "flood", file.to_str().unwrap(), "--json", "--concurrency", "4"]);
    let took = started.elapsed();
    let summary = json_of(&out);
    eprintln!("send of {N} events: {took:?}, {summary}");
    assert_eq!(summary["sent"], N, "{summary}");
    assert_eq!(summary["accepted"], N, "{summary}");
    assert_eq!(summary["rejected"], 0, "{summary}");
    assert!(summary["retries"]["429"].as_u64().unwrap() > 0, "the queue bound was never met: {summary}");

    wait_for("every event processed", Duration::from_secs(120), || (server.metrics("flood")["processed"] == N).then_some(()));
    let outputs = server.outputs("flood");
    assert_eq!(outputs.len(), N, "one output per event");
    let ids: HashSet<&str> = outputs.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), N, "no event twice");
    assert!((0..N).all(|i| ids.contains(format!("e{i}").as_str())), "every id sent came out");
}

#[test]
fn send_lists_rejected_events_by_line_and_reads_arrays_and_stdin() {
    let (store, dir) = harness::embedded_store();
    let server = Server::start(store);
    server.upload("bots", "bot_filter");
    server.put_pipeline("p", &json!({"stages": [{"name": "bots", "plugin": "bots"}]}));

    let bad = dir.path().join("bad.ndjson");
    std::fs::write(&bad, "{\"type\":\"a\"}\n{\"data\":{}}\n\n{not json\n{\"type\":\"b\"}\n").unwrap();
    let (code, out, err) = cli(&server, &["send", "p", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("2 accepted, 2 rejected"), "{out}");
    assert!(err.contains("bad.ndjson:2: ") && err.contains("bad.ndjson:4: not JSON"), "{err}");

    let array = dir.path().join("many.json");
    std::fs::write(&array, r#"[{"type":"x","id":"a1"}, {"type":"x","id":"a2"},{"type":"x","id":"a3"}]"#).unwrap();
    let summary = json_of(&ok(&server, &["send", "p", array.to_str().unwrap(), "--json", "--batch-size", "2"]));
    assert_eq!((summary["accepted"].as_u64(), summary["requests"].as_u64()), (Some(3), Some(2)), "{summary}");

    let mut child = Command::new(sluice_bin())
        .args(["send", "p", "-", "--json", "--server", &server.url("")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"{\"type\":\"s\",\"id\":\"s1\"}\n{\"type\":\"s\",\"id\":\"s2\"}\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(json_of(&String::from_utf8_lossy(&out.stdout))["accepted"], 2);
    wait_for("7 outputs", Duration::from_secs(20), || (server.outputs("p").len() == 7).then_some(()));
}

#[test]
fn push_apply_with_a_diff_dry_run_pipelines_get_and_plugin_rm() {
    let (store, dir) = harness::embedded_store();
    let server = Server::start(store);
    let bots = wasm_path("bot_filter");
    let out = ok(&server, &["plugin", "push", "bots", bots.to_str().unwrap()]);
    assert!(out.contains("plugin bots version 1 uploaded"), "{out}");
    let out = ok(&server, &["plugin", "push", "bots", bots.to_str().unwrap()]);
    assert!(out.contains("version 1 already there"), "{out}");
    ok(&server, &["plugin", "push", "parts", wasm_path("url_parts").to_str().unwrap()]);
    let out = ok(&server, &["plugin", "ls"]);
    assert!(out.lines().any(|l| l.starts_with("bots ") && l.contains(" 1 ")) && out.contains("parts"), "{out}");

    let yaml = dir.path().join("web.yaml");
    std::fs::write(&yaml, "stages:\n  - name: drop-bots\n    plugin: bots\n    config:\n      patterns: [bot]\nmax_queue_depth: 5000\n").unwrap();
    let out = ok(&server, &["apply", "-f", yaml.to_str().unwrap()]);
    assert!(out.starts_with("pipeline web created"), "{out}");
    assert!(out.contains("+ stages[0].plugin: \"bots\"") && out.contains("+ stages[0].version: 1"), "{out}");

    let toml = dir.path().join("web.toml");
    std::fs::write(&toml, "max_queue_depth = 9000\n[[stages]]\nname = \"drop-bots\"\nplugin = \"bots\"\nconfig = { patterns = [\"bot\", \"spider\"] }\n").unwrap();
    let out = ok(&server, &["apply", "-f", toml.to_str().unwrap(), "--dry-run"]);
    assert!(out.starts_with("pipeline web is valid; it would change"), "{out}");
    assert!(out.contains("~ max_queue_depth: 5000 -> 9000") && out.contains("+ stages[0].config.patterns[1]: \"spider\""), "{out}");
    assert_eq!(server.get("/v1/pipelines/web").1["spec"]["max_queue_depth"], 5000, "--dry-run stored nothing");
    assert_eq!(server.get("/v1/pipelines").1["pipelines"].as_array().unwrap().len(), 1, "the scratch pipeline is gone");

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"id": "web", "stages": [{"name": "x", "plugin": "nope"}]}"#).unwrap();
    let (code, _, err) = cli(&server, &["apply", "-f", bad.to_str().unwrap(), "--dry-run"]);
    assert_eq!(code, 1);
    assert!(err.contains("not valid") && err.contains("nope"), "{err}");

    let applied = json_of(&ok(&server, &["apply", "-f", toml.to_str().unwrap(), "--json"]));
    assert_eq!(applied["created"], false);
    assert_eq!(applied["changes"].as_array().unwrap().len(), 2, "{applied}");
    let out = ok(&server, &["apply", "-f", toml.to_str().unwrap()]);
    assert_eq!(out.trim(), "pipeline web unchanged");

    let out = ok(&server, &["pipelines"]);
    assert!(out.lines().any(|l| l.starts_with("web ") && l.contains("drop-bots=bots@1")), "{out}");
    let got = json_of(&ok(&server, &["get", "web", "--json"]));
    assert_eq!(got["spec"]["max_queue_depth"], 9000);
    assert_eq!(got["metrics"]["accepted"], 0);

    let (code, _, err) = cli(&server, &["plugin", "rm", "bots", "1"]);
    assert_eq!(code, 1, "in use: refused");
    assert!(err.contains("409"), "{err}");
    assert!(ok(&server, &["plugin", "rm", "parts", "1"]).contains("plugin parts version 1 deleted"));
    assert_eq!(server.get("/v1/plugins/parts").0, 404);
}

#[test]
fn tail_dlq_top_and_completions() {
    let (store, dir) = harness::embedded_store();
    let server = Server::start(store);
    server.upload("check", "schema_check");
    server.put_pipeline(
        "shop",
        &json!({"stages": [{"name": "need-n", "plugin": "check", "config": {"required": ["data.n"]}}],
                "windows": [{"name": "per_min", "kind": "tumbling", "size_ms": 60000, "aggregates": [{"op": "count"}]}]}),
    );
    let file = dir.path().join("e.ndjson");
    let lines: String = (0..30).map(|i| if i % 3 == 0 { format!("{{\"type\":\"t\",\"id\":\"bad{i}\"}}\n") } else { format!("{{\"type\":\"t\",\"id\":\"ok{i}\",\"data\":{{\"n\":{i}}}}}\n") }).collect();
    std::fs::write(&file, lines).unwrap();
    ok(&server, &["send", "shop", file.to_str().unwrap()]);
    wait_for("30 processed", Duration::from_secs(20), || (server.metrics("shop")["processed"] == 30).then_some(()));

    let out = ok(&server, &["tail", "shop", "--json", "--no-follow"]);
    let ids: Vec<String> = out.lines().map(|l| json_of(l)["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 20, "{out}");
    assert!(ids.iter().all(|id| id.starts_with("ok")), "{out}");
    let out = ok(&server, &["tail", "shop", "--count", "3"]);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.lines().all(|l| l.contains(" t ok")), "{out}");
    let out = ok(&server, &["tail", "shop", "--window", "per_min", "--count", "1", "--json"]);
    assert!(out.contains("count"), "a live window update: {out}");

    let listed = json_of(&ok(&server, &["dlq", "ls", "shop", "--kind", "rejected", "--stage", "need-n", "--since", "10m", "--json"]));
    let entries = listed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 10, "{listed}");
    let none = json_of(&ok(&server, &["dlq", "ls", "shop", "--kind", "timeout", "--json"]));
    assert_eq!(none["entries"].as_array().unwrap().len(), 0);
    let human = ok(&server, &["dlq", "ls", "shop"]);
    assert!(human.contains("10 entries") && human.contains("missing required fields: data.n"), "{human}");
    let first = entries[0]["dlq_id"].as_str().unwrap();
    let shown = ok(&server, &["dlq", "show", "shop", first]);
    assert!(shown.contains("need-n") && shown.contains("\"bad"), "{shown}");

    // Replay: they fail again (still no data.n) and come back to the DLQ.
    let out = ok(&server, &["dlq", "replay", "shop", "--stage", "need-n"]);
    assert_eq!(out.trim(), "10 entries replayed");
    wait_for("40 processed", Duration::from_secs(20), || (server.metrics("shop")["processed"] == 40).then_some(()));
    wait_for("10 back in the DLQ", Duration::from_secs(20), || (server.dlq("shop").len() == 10).then_some(()));
    let out = ok(&server, &["dlq", "purge", "shop", "--kind", "rejected"]);
    assert_eq!(out.trim(), "10 entries deleted");
    assert!(server.dlq("shop").is_empty());

    let frame = ok(&server, &["top", "--once"]);
    let rows: Vec<&str> = frame.lines().collect();
    assert!(rows[0].starts_with("PIPELINE") && rows[0].contains("QUEUE") && rows[0].contains("LAG"), "{frame}");
    assert!(rows.iter().any(|r| r.starts_with("shop ") && r.split_whitespace().nth(2) == Some("30")), "accepted 30: {frame}");
    assert!(rows.iter().any(|r| r.trim_start().starts_with("need-n") && r.split_whitespace().nth(2) == Some("20")), "20 errors (10, then 10 again after the replay): {frame}");

    let script = ok(&server, &["completions", "bash"]);
    assert!(script.contains("_sluice") && script.contains("dlq") && script.contains("--window"), "a bash completion script");
    let help = ok(&server, &["send", "--help"]);
    assert!(help.contains("--batch-size") && help.contains("SLUICE_SERVER"), "{help}");
}
