//! Secrets from the environment (API.md, "Sinks"): a sink whose `url_env`
//! and `headers_env` name variables set on `sluice serve` delivers to that
//! URL with those headers, while the API (the spec, the sinks, the metrics,
//! Prometheus) and the server's log never show the values; a spec naming a
//! variable that is not set is refused with 400 naming the variable only.

use std::time::Duration;

use serde_json::json;

use super::harness::{on_both_stores, wait_for, Server, StoreKind};
use super::receiver::{Mode, Receiver};
use super::{chain_spec, ingest, output_ids, page_view, sink_status, wait_delivered};

/// Values no response or log line may hold: a password and a path in the
/// URL, and a header.
const URL_PASSWORD: &str = "pw-secret-31c7";
const URL_SECRET: &str = "url-secret-7f3a9c";
const HEADER_SECRET: &str = "key-header-secret-5d21e8";

/// Whether `text` holds any of the secrets.
fn shows_a_secret(text: &str) -> bool {
    [URL_PASSWORD, URL_SECRET, HEADER_SECRET].iter().any(|secret| text.contains(secret))
}

/// Everything at trace level but the WASM compiler (millions of lines of
/// machine code when a plugin is compiled, and no secret there).
const TRACE: &str = "trace,cranelift_codegen=warn,cranelift_frontend=warn,wasmtime_internal_cranelift=warn,wasmtime=warn,wasmtime_environ=warn";

fn secrets_from_the_environment_are_used_and_never_shown(store: StoreKind) {
    let hook = Receiver::start(Mode::Answer(503));
    let secret_url = format!("{}/{URL_SECRET}", hook.url.replacen("http://", &format!("http://sink:{URL_PASSWORD}@"), 1));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    // The most verbose log there is: a secret in any line would show.
    let env = [("SLUICE_LOG", TRACE), ("SLUICE_TEST_HOOK_URL", secret_url.as_str()), ("SLUICE_TEST_HOOK_KEY", HEADER_SECRET)];
    let server = Server::start_with_env(store, &env, &log);
    server.upload("bot-filter", "bot_filter");
    server.upload("url-parts", "url_parts");
    server.upload("pii-redact", "pii_redact");
    let sink = json!({"name": "hook", "kind": "http", "url_env": "SLUICE_TEST_HOOK_URL",
                      "headers_env": {"X-Api-Key": "SLUICE_TEST_HOOK_KEY"}, "batch_max": 100});
    server.put_pipeline("web", &chain_spec(json!([sink])));
    ingest(&server, "web", &(0..250).map(page_view).collect::<Vec<_>>(), 250);
    output_ids(&server, "web", 200);
    // Refused first (an error recorded and logged), then accepted.
    wait_for("a refused delivery", Duration::from_secs(20), || (hook.requests() >= 2).then_some(()));
    let failing = sink_status(&server, "web", "hook");
    assert!(failing["last_error"].as_str().is_some_and(|e| e.contains("503")), "{failing}");
    hook.set(Mode::Accept);
    wait_delivered(&server, "web", "hook", 200, Duration::from_secs(60));
    assert_eq!(hook.ids().len(), 200, "delivered to the URL from the environment");
    assert_eq!(hook.header("x-api-key").as_deref(), Some(HEADER_SECRET), "the header from the environment");
    assert!(hook.header("authorization").is_some_and(|auth| auth.starts_with("Basic ")), "the URL's credentials, as basic auth");

    let answers = [
        ("the spec", server.get("/v1/pipelines/web").1.to_string()),
        ("the sinks", server.get("/v1/pipelines/web/sinks").1.to_string()),
        ("the metrics", server.metrics("web").to_string()),
        ("Prometheus", server.client().get(server.url("/metrics")).send().unwrap().text().unwrap()),
        ("the failing sink", failing.to_string()),
    ];
    let (_, spec) = &answers[0];
    assert!(spec.contains("SLUICE_TEST_HOOK_URL") && spec.contains("SLUICE_TEST_HOOK_KEY"), "the spec names the variables: {spec}");
    for (what, text) in &answers {
        assert!(!shows_a_secret(text), "{what} shows a secret: {text}");
    }

    // A spec naming variables that are not set: 400 naming the first of them, no value.
    let unset = json!({"name": "hook", "kind": "http", "url_env": "SLUICE_TEST_HOOK_URL",
                       "headers_env": {"Authorization": "SLUICE_TEST_SURELY_UNSET_AUTH", "X-Api-Key": "SLUICE_TEST_HOOK_KEY"}});
    let (status, body) = server.put_json("/v1/pipelines/other", &chain_spec(json!([unset])));
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("SLUICE_TEST_SURELY_UNSET_AUTH"), "{body}");
    assert!(!shows_a_secret(&body.to_string()), "{body}");
    assert_eq!(server.get("/v1/pipelines/other").0, 404, "nothing stored");

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("hook") && logged.contains("503"), "the log has the sink's retries (else this check proves nothing):\n{}", tail(&logged));
    for (n, line) in logged.lines().enumerate() {
        assert!(!shows_a_secret(line), "log line {} shows a secret: {line}", n + 1);
    }
}
on_both_stores!(secrets_from_the_environment_are_used_and_never_shown);

/// The last lines of a log, for a failure message.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
