//! The dashboard (`GET /`) in a real browser: Debian's chromium driven by
//! playwright-core (`tests/browser/dashboard.cjs`, run with `node`) against
//! a real `sluice serve`, once in open mode and once with an admin token.
//! The script picks the pipeline, ingests, waits for the counters, the
//! rate chart, the "now" figure and the window chart to move, opens a dead
//! letter, replays one from its button and sees the DLQ shrink, replays the
//! rest, purges after a confirmation, checks the plugins panel, and fails
//! on any console error. It leaves a screenshot in `target/`.
//!
//! Needs `scripts/browser-tools.sh` first (chromium and playwright-core
//! under `target/browser-tools`; `scripts/test.sh` runs it).

use std::process::Command;

use serde_json::json;
use sluice_blackbox_tests::{embedded_store, workspace, Server};

/// Starts a server (with `token` as its admin token, or open), gives it the
/// plugin and the pipeline the script works on, and runs the script.
fn run_browser_script(token: Option<&str>, screenshot: &str) {
    let tools = workspace().join("target/browser-tools/node_modules");
    assert!(tools.join("playwright-core").is_dir(), "{}: missing; run scripts/browser-tools.sh first", tools.display());
    let (store, _dir) = embedded_store();
    let server = Server::start_with(store, token, &[]);
    assert_eq!(server.upload("validator", "schema_check"), 1);
    server.put_pipeline(
        "shop",
        &json!({
            "stages": [{"name": "check", "plugin": "validator", "config": {"required": ["data.url", "data.user_id"]}}],
            "windows": [
                {"name": "online_now", "kind": "sliding", "size_ms": 300000, "slide_ms": 1000,
                 "aggregates": [{"op": "count_distinct", "field": "data.user_id"}]},
                {"name": "views_per_10s", "kind": "tumbling", "size_ms": 10000, "group_by": "data.url",
                 "aggregates": [{"op": "count"}]}
            ]
        }),
    );
    let screenshot = workspace().join("target").join(screenshot);
    let _ = std::fs::remove_file(&screenshot);
    let out = Command::new("node")
        .arg(workspace().join("tests/browser/dashboard.cjs"))
        .env("NODE_PATH", &tools)
        .env("SLUICE_URL", server.url(""))
        .env("SLUICE_TOKEN", token.unwrap_or(""))
        .env("SCREENSHOT", &screenshot)
        .output()
        .expect("node runs (scripts/browser-tools.sh installs it)");
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser script failed:\n{printed}");
    assert!(printed.contains("dashboard: all checks passed"), "{printed}");
    let png = std::fs::read(&screenshot).unwrap_or_else(|e| panic!("{}: {e}", screenshot.display()));
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} is not a screenshot", screenshot.display());
}

#[test]
fn dashboard_in_open_mode() {
    run_browser_script(None, "dashboard.png");
}

#[test]
fn dashboard_with_a_token() {
    run_browser_script(Some("dash-admin-secret"), "dashboard-token.png");
}
