//! The client CLI where it meets the world: a server with tokens
//! (`--token`/`SLUICE_TOKEN`, right, wrong, missing, wrong role), a store
//! that stalls so ingest answers 503 with `Retry-After` (the batch is
//! retried after it under the same idempotency key and lands once), and a
//! terminal (`send`'s progress bar, drawn only there).

use sluice_blackbox_tests as harness;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{sluice_bin, wait_for, wasm_path, Server, StoreKind};
use serde_json::{json, Value};
use sluice_testkit::PrivateRedis;

const ADMIN: &str = "admin-token-for-the-cli";
const INGEST: &str = "ingest-token-for-the-cli";

/// How the CLI is given a token.
#[derive(Clone, Copy)]
enum Token<'a> {
    None,
    Flag(&'a str),
    Env(&'a str),
}

/// Runs `sluice ARGS` against `server` with `token`; answers (exit code, stdout, stderr).
fn cli(server: &Server, token: Token, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(sluice_bin());
    command.args(args).env("SLUICE_SERVER", server.url("")).env_remove("SLUICE_TOKEN").stdin(Stdio::null());
    match token {
        Token::None => {}
        Token::Flag(t) => {
            command.args(["--token", t]);
        }
        Token::Env(t) => {
            command.env("SLUICE_TOKEN", t);
        }
    }
    let out = command.output().expect("sluice runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// [`cli`], insisting on exit 0.
fn ok(server: &Server, token: Token, args: &[&str]) -> String {
    let (code, out, err) = cli(server, token, args);
    assert_eq!(code, 0, "sluice {args:?} failed:\n{out}\n{err}");
    out
}

/// [`cli`], insisting on a failure whose message has every one of `wanted`.
fn refused(server: &Server, token: Token, args: &[&str], wanted: &[&str]) {
    let (code, out, err) = cli(server, token, args);
    assert_ne!(code, 0, "sluice {args:?} succeeded:\n{out}\n{err}");
    assert!(wanted.iter().all(|w| err.contains(w)), "sluice {args:?}: the message lacks {wanted:?}:\n{err}");
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `n` NDJSON events with ids `<prefix><i>` in `path`.
fn write_events(path: &Path, prefix: &str, n: usize) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        writeln!(w, r#"{{"id":"{prefix}{i}","type":"view","data":{{"n":{i}}}}}"#).unwrap();
    }
    w.flush().unwrap();
}

/// How many times each output id came out.
fn output_counts(server: &Server, pipeline: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for event in server.outputs(pipeline) {
        *counts.entry(event["id"].as_str().unwrap_or_default().to_string()).or_default() += 1;
    }
    counts
}

#[test]
fn tokens_from_the_flag_or_the_environment_and_clear_refusals() {
    let (store, dir) = harness::embedded_store();
    let server = Server::start_with(store, Some(ADMIN), &["--ingest-token", INGEST]);
    let bots = wasm_path("bot_filter");
    let bots = bots.to_str().unwrap();

    // Admin commands with the admin token, from the flag or the environment.
    assert!(ok(&server, Token::Flag(ADMIN), &["plugin", "push", "bots", bots]).contains("plugin bots version 1 uploaded"));
    let spec = dir.path().join("p.json");
    std::fs::write(&spec, r#"{"id": "p", "stages": [{"name": "drop-bots", "plugin": "bots"}]}"#).unwrap();
    assert!(ok(&server, Token::Env(ADMIN), &["apply", "-f", spec.to_str().unwrap()]).starts_with("pipeline p created"));
    let listed = ok(&server, Token::Env(ADMIN), &["pipelines"]);
    assert!(listed.lines().any(|l| l.starts_with("p ")), "{listed}");

    // Ingest with the ingest token (flag) or the admin token (environment).
    let events = dir.path().join("e.ndjson");
    write_events(&events, "t", 10);
    let events = events.to_str().unwrap();
    let summary = json_of(&ok(&server, Token::Flag(INGEST), &["send", "p", events, "--json"]));
    assert_eq!(summary["accepted"], 10, "{summary}");
    let more = dir.path().join("more.ndjson");
    write_events(&more, "u", 5);
    let summary = json_of(&ok(&server, Token::Env(ADMIN), &["send", "p", more.to_str().unwrap(), "--json"]));
    assert_eq!(summary["accepted"], 5, "{summary}");
    wait_for("15 processed", Duration::from_secs(20), || (json_of(&ok(&server, Token::Env(ADMIN), &["get", "p", "--json"]))["metrics"]["processed"] == 15).then_some(()));

    // Missing or wrong: 401 with a hint; the ingest token on an admin command: 403.
    let unauthorized = ["401", "--token or SLUICE_TOKEN"];
    refused(&server, Token::None, &["pipelines"], &unauthorized);
    refused(&server, Token::Flag("wrong"), &["pipelines"], &unauthorized);
    refused(&server, Token::Env("wrong"), &["dlq", "ls", "p"], &unauthorized);
    refused(&server, Token::None, &["send", "p", events], &unauthorized);
    refused(&server, Token::Flag("wrong"), &["plugin", "push", "bots", bots], &unauthorized);
    refused(&server, Token::Flag(INGEST), &["pipelines"], &["403", "an ingest token only sends events"]);
    refused(&server, Token::Env(INGEST), &["apply", "-f", spec.to_str().unwrap()], &["403"]);
    // Nothing the refused commands sent landed.
    let metrics = json_of(&ok(&server, Token::Flag(ADMIN), &["get", "p", "--json"]))["metrics"].clone();
    assert_eq!(metrics["accepted"], 15, "{metrics}");
}

/// Redis stalls (`DEBUG SLEEP`) while `send` posts: the server answers 503
/// with `Retry-After: 2` (the enqueue's outcome unknown), the CLI waits that
/// long and retries each batch with its key; Redis ran the first tries
/// anyway, and every event lands exactly once.
#[test]
fn send_retries_a_503_after_retry_after_with_the_same_key() {
    const N: usize = 600;
    let redis = PrivateRedis::start_with_args(&["--enable-debug-command", "local"]);
    let server = Server::start(StoreKind::Redis { url: redis.url(), prefix: "cli503".into() });
    server.upload("bots", "bot_filter");
    server.put_pipeline("p", &json!({"stages": [{"name": "drop-bots", "plugin": "bots"}]}));
    // Running before Redis stalls, so each POST's only store step is its enqueue.
    assert_eq!(server.ingest_ndjson("p", &[json!({"id": "warm", "type": "t"})]).0, 202);
    wait_for("the warm-up event out", Duration::from_secs(30), || (server.outputs("p").len() == 1).then_some(()));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("e.ndjson");
    write_events(&file, "r", N);

    let (summary, took) = std::thread::scope(|scope| {
        let sleeper = scope.spawn(|| redis.debug_sleep(3));
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        let out = ok(&server, Token::None, &["send", "p", file.to_str().unwrap(), "--json", "--batch-size", "200", "--concurrency", "3"]);
        let took = started.elapsed();
        sleeper.join().unwrap();
        (json_of(&out), took)
    });
    assert!(summary["retries"]["503"].as_u64().unwrap() >= 1, "no 503 met: {summary}");
    assert_eq!((&summary["accepted"], &summary["rejected"], &summary["requests"]), (&json!(N), &json!(0), &json!(3)), "{summary}");
    // ~2 s until the server gives up on the stalled enqueue, then Retry-After's 2 s.
    assert!(took >= Duration::from_millis(3_500), "the retry waited Retry-After: {took:?}");

    let counts = wait_for("every event out", Duration::from_secs(60), || {
        let counts = output_counts(&server, "p");
        (counts.len() > N).then_some(counts)
    });
    assert!((0..N).all(|i| counts.get(&format!("r{i}")) == Some(&1)), "each event exactly once");
    assert_eq!(counts.values().sum::<usize>(), N + 1, "nothing else");
    assert_eq!(server.metrics("p")["accepted"], json!(N + 1), "each batch accepted once");
}

/// Under a pseudo-terminal (util-linux `script`) `send` draws its progress
/// bar with events/s and an ETA; with output to a pipe it draws nothing.
#[test]
fn send_draws_a_progress_bar_only_on_a_terminal() {
    const N: usize = 200_000;
    let (store, dir) = harness::embedded_store();
    let server = Server::start(store);
    server.upload("bots", "bot_filter");
    server.put_pipeline("p", &json!({"stages": [{"name": "drop-bots", "plugin": "bots"}]}));
    let file = dir.path().join("e.ndjson");
    write_events(&file, "b", N);
    let command = format!(
        "{} send p {} --server {} --batch-size 500 --concurrency 1",
        sluice_bin().display(),
        file.display(),
        server.url("")
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("SLUICE_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("util-linux `script` runs (the test needs it for a pseudo-terminal)");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "send under a terminal failed:\n{screen}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(screen.contains(&format!("sent {N} events")), "the summary: {screen}");
    let drawn: Vec<&str> = screen.split(['\r', '\n']).filter(|frame| frame.contains("events/s") && frame.contains("ETA")).collect();
    assert!(!drawn.is_empty(), "no frame with events/s and ETA:\n{screen}");
    assert!(drawn.iter().any(|frame| frame.contains('%') && frame.contains("MiB")), "a frame shows the share and bytes read: {drawn:?}");

    // To a pipe: the same run draws no bar.
    let (code, out, err) = cli(&server, Token::None, &["send", "p", file.to_str().unwrap(), "--batch-size", "5000"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!err.contains("ETA") && !out.contains("ETA"), "no bar without a terminal:\n{err}");
}
