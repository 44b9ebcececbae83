//! `GET /openapi.json` against the real server, on both stores: the
//! document is valid OpenAPI 3.1 (openapi-spec-validator), names exactly
//! the routes the server has, and schemathesis finds no answer that
//! breaks it: no 5xx (a 503 would be a store down, which these runs do not
//! cause), every status code, content type, header and body as documented,
//! tokens required where the document says so.
//!
//! Needs `scripts/openapi-tools.sh` first (the venv under
//! `target/openapi-tools`; `scripts/test.sh` runs it). The runs are seeded
//! and bounded: `SLUICE_OPENAPI_EXAMPLES` (default 100 per operation and
//! phase) and `SLUICE_FUZZ_SEED` choose them.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_blackbox_tests::{on_both_stores, wait_for, workspace, Server, StoreKind};

const TOKEN: &str = "openapi-admin-secret";

/// A program of the venv, or a failure saying how to make it.
fn tool(name: &str) -> PathBuf {
    let path = workspace().join("target/openapi-tools/venv/bin").join(name);
    assert!(path.is_file(), "{}: missing; run scripts/openapi-tools.sh first (scripts/test.sh runs it)", path.display());
    path
}

/// A plugin, a pipeline with windows, outputs, DLQ entries and a table, so
/// the fuzzer's requests reach real handlers and not only 404s.
fn set_up(server: &Server) {
    assert_eq!(server.upload("check", "schema_check"), 1);
    server.put_pipeline(
        "web",
        &json!({
            "stages": [{"name": "check", "plugin": "check", "config": {"required": ["data.url"]}}],
            "windows": [
                {"name": "views", "kind": "tumbling", "size_ms": 60000, "group_by": "data.url",
                 "aggregates": [{"op": "count"}, {"op": "avg", "field": "data.ms"}],
                 "spike": {"factor": 3.0, "baseline_windows": 2}},
                {"name": "online", "kind": "sliding", "size_ms": 300000, "slide_ms": 1000,
                 "aggregates": [{"op": "count_distinct", "field": "data.user"}]}
            ]
        }),
    );
    let events: Vec<Value> = (0..40)
        .map(|i| if i % 4 == 0 { json!({"type": "view", "data": {"ms": i}}) } else { json!({"type": "view", "data": {"url": format!("/p{}", i % 3), "ms": i, "user": i % 5}}) })
        .collect();
    let (status, body) = server.ingest_ndjson("web", &events);
    assert_eq!(status, 202, "{body}");
    wait_for("the set-up events to be processed", Duration::from_secs(30), || (server.metrics("web")["processed"].as_u64() == Some(40)).then_some(()));
    assert_eq!(server.dlq("web").len(), 10, "every fourth event lacks data.url");
    let (status, body) = server.put_json("/v1/tables/hosts", &json!({"a": "b"}));
    assert_eq!(status, 200, "{body}");
}

/// `GET /openapi.json` with no token.
fn fetch_document(server: &Server) -> Value {
    let response = server.client().get(server.url("/openapi.json")).send().expect("GET /openapi.json");
    assert_eq!(response.status().as_u16(), 200, "the document needs no token");
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().expect("the document is JSON")
}

/// openapi-spec-validator on the document as served.
fn validate(document: &Value, dir: &std::path::Path) {
    assert_eq!(document["openapi"], "3.1.0");
    let file = dir.join("openapi.json");
    std::fs::write(&file, document.to_string()).unwrap();
    let out = Command::new(tool("openapi-spec-validator")).arg("--schema").arg("3.1.0").arg(&file).output().expect("openapi-spec-validator runs");
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && printed.contains("OK"), "the document is not valid OpenAPI 3.1:\n{printed}");
}

/// The documented operations, as (method, path).
fn operations(document: &Value) -> Vec<(String, String)> {
    let paths = document["paths"].as_object().expect("paths");
    paths.iter().flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |method| (method.to_uppercase(), path.clone()))).collect()
}

/// Every documented operation reaches a handler (not the fallback, not
/// 405), and every other method on a documented path is 405: the server
/// has no route the document leaves out on those paths. (The routers add
/// routes only through `utoipa_axum::routes!`, which also writes the
/// document; `host/src/api/openapi.rs` tests that no route bypasses it.)
fn check_routes(server: &Server, document: &Value) {
    let ops = operations(document);
    for needed in [("GET", "/healthz"), ("POST", "/v1/pipelines/{id}/events"), ("PUT", "/v1/plugins/{name}"), ("GET", "/openapi.json"), ("GET", "/v1/pipelines/{id}/windows/{window}/live")] {
        assert!(ops.contains(&(needed.0.to_string(), needed.1.to_string())), "{needed:?} is not documented");
    }
    assert!(ops.len() >= 28, "{} operations documented: {ops:?}", ops.len());
    // Parameters naming nothing that exists: no request changes the set-up.
    let concrete = |path: &str| path.replace("{id}", "no-such").replace("{window}", "no-such").replace("{name}", "no-such").replace("{version}", "7");
    for (method, path) in &ops {
        let (status, body, _) = server.raw(method.parse().unwrap(), &concrete(path), Some("application/json"), b"{}".to_vec());
        assert_ne!(status, 405, "{method} {path} is documented but the server has no such route: {body}");
        let fallback = body["message"].as_str().is_some_and(|m| m.contains("no such endpoint"));
        assert!(!fallback, "{method} {path} is documented but reaches the fallback: {body}");
    }
    let documented_paths: std::collections::BTreeSet<&String> = ops.iter().map(|(_, p)| p).collect();
    for path in documented_paths {
        for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
            if !ops.contains(&(method.to_string(), path.clone())) {
                let (status, body, _) = server.raw(method.parse().unwrap(), &concrete(path), Some("application/json"), b"{}".to_vec());
                assert_eq!(status, 405, "{method} {path} is not documented, yet the server routes it: {body}");
                assert_eq!(body["error"], "method_not_allowed", "a 405 is a JSON error too: {body}");
            }
        }
    }
}

/// What every answer must pass: no 5xx; status code, content type, headers
/// and body as documented; a route that needs a token refuses a request
/// without one (`ignored_auth`); an undocumented method is a 405 with an
/// `Allow` header; a missing required header is refused. Left out:
/// `negative_data_rejection` (ingest answers 202 with per-event rejections
/// by design, API.md) and `positive_data_acceptance` (specs, cursors and
/// plugin bytes are checked beyond what a schema can say). An exploratory
/// run with them found the DLQ selection bug that
/// `host/src/api/pipelines.rs` now has a regression test for.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,\
    response_schema_conformance,ignored_auth,unsupported_method,allow_header_conformance,missing_required_header";

/// The live feed, which schemathesis leaves out: its answer's status and
/// content type as documented, for a window that exists and one that does not.
fn check_live_feed(server: &Server, document: &Value) {
    let path = "/v1/pipelines/{id}/windows/{window}/live";
    let responses = &document["paths"][path]["get"]["responses"];
    assert!(responses["200"]["content"].get("text/event-stream").is_some(), "{responses}");
    let response = server.client().get(server.url("/v1/pipelines/web/windows/views/live")).bearer_auth(TOKEN).send().expect("the live feed opens");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    drop(response);
    let (status, body, headers) = server.raw(reqwest::Method::GET, "/v1/pipelines/web/windows/nope/live", None, Vec::new());
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")), "{body}");
    assert_eq!(headers["content-type"], "application/json");
    assert!(responses["404"]["content"].get("application/json").is_some(), "{responses}");
}

/// schemathesis against the live server (with the admin token) on the
/// operations `methods` selects: every operation but the live feed
/// (Server-Sent Events never end, and a fuzzer's request would wait for its
/// timeout), each with up to `SLUICE_OPENAPI_EXAMPLES` generated requests,
/// valid and invalid. `tests/openapi/schemathesis.toml` points the reads
/// and writes at the set-up's names, `tests/openapi/hooks.py` teaches
/// schemathesis `application/wasm`.
fn fuzz(server: &Server, dir: &std::path::Path, methods: (&str, &str)) {
    let examples = std::env::var("SLUICE_OPENAPI_EXAMPLES").unwrap_or_else(|_| "100".into());
    let seed = std::env::var("SLUICE_FUZZ_SEED").unwrap_or_else(|_| "14".into());
    let config = workspace().join("tests/openapi");
    let out = Command::new(tool("schemathesis"))
        .arg("--config-file")
        .arg(config.join("schemathesis.toml"))
        .arg("run")
        .arg(server.url("/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--checks", CHECKS])
        .args(["--max-examples", &examples, "--seed", &seed, "--request-timeout", "20", "--workers", "2"])
        .args(["--phases", "examples,coverage,fuzzing", "--exclude-path-regex", "/live$", "--suppress-health-check", "all"])
        .args([methods.0, methods.1])
        .env("PYTHONPATH", &config)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("NO_COLOR", "1")
        .current_dir(dir)
        .output()
        .expect("schemathesis runs");
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found answers that break the document:\n{printed}");
    // "Test cases:" then "<n> generated, <n> passed[, <m> skipped]" (a
    // failure says "found …" instead of "passed"; a case is skipped when a
    // check has nothing to try on it, e.g. no required header).
    let cases = printed.lines().skip_while(|l| !l.starts_with("Test cases:")).nth(1).unwrap_or_default().trim();
    eprintln!("schemathesis {methods:?}: {cases}");
    let parts: Vec<&str> = cases.split(", ").collect();
    let count = |part: Option<&&str>, word: &str| part.and_then(|p| p.strip_suffix(word)).and_then(|n| n.trim().parse::<u64>().ok());
    let (generated, passed) = (count(parts.first(), " generated"), count(parts.get(1), " passed"));
    assert!(
        generated.is_some() && generated == passed && parts.iter().skip(2).all(|p| p.ends_with(" skipped")),
        "not every generated request passed ({cases}):\n{printed}"
    );
    assert!(generated.unwrap_or(0) >= 100, "schemathesis ran too few requests to mean anything ({cases}):\n{printed}");
}

fn openapi_document_holds(store: StoreKind) {
    let server = Server::start_with(store, Some(TOKEN), &[]);
    set_up(&server);
    let dir = tempfile::tempdir().unwrap();
    let document = fetch_document(&server);
    validate(&document, dir.path());
    check_routes(&server, &document);
    check_live_feed(&server, &document);
    // Reads and writes first, on the set-up; then the deletes (which may
    // delete what the fuzzer finds named in earlier answers).
    fuzz(&server, dir.path(), ("--exclude-method", "DELETE"));
    assert_eq!(server.get("/v1/pipelines/web").0, 200, "the reads and writes left the set-up in place");
    fuzz(&server, dir.path(), ("--include-method", "DELETE"));
    assert_eq!(server.get("/healthz").0, 200, "the server survived the run");
}

on_both_stores!(openapi_document_holds);
