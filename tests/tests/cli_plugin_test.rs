//! `sluice plugin test`, run as a real process.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn wasm(name: &str) -> String {
    let path = sluice_blackbox_tests::wasm_path(name);
    assert!(path.exists(), "{}: run scripts/build-plugins.sh first", path.display());
    path.to_string_lossy().into_owned()
}

fn sluice(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(sluice_blackbox_tests::sluice_bin())
        .args(args)
        .env("SLUICE_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn prints_each_outcome_with_its_fuel() {
    let events = concat!(
        r#"{"id":"a","type":"view","data":{"ua":"Mozilla/5.0"}}"#, "\n",
        "\n",
        r#"{"id":"b","type":"view","data":{"ua":"Googlebot"}}"#, "\n",
    );
    let out = sluice(&["plugin", "test", &wasm("bot_filter")], events);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("line 1 id=a fuel=") && lines[0].ends_with("kept (unchanged)"), "{stdout}");
    assert!(lines[1].starts_with("line 3 id=b fuel=") && lines[1].ends_with("dropped"), "{stdout}");
    let fuel: u64 = lines[0].split("fuel=").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(fuel > 0 && fuel < 1_000_000, "fuel {fuel}");
    assert!(lines[2].starts_with("2 events: 1 kept, 0 transformed/fanned out, 1 dropped, 0 failed"), "{stdout}");
}

#[test]
fn failures_exit_2_and_show_the_classification() {
    let out = sluice(&["plugin", "test", &wasm("schema_check"), "--config", r#"{"required":["data.url"]}"#], r#"{"type":"v","data":{}}"#);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).contains("FAILED rejected: missing required fields: data.url"), "{}", text(&out.stdout));
}

#[test]
fn clear_errors_for_bad_input() {
    let missing = sluice(&["plugin", "test", "/nonexistent/x.wasm"], "");
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("cannot read plugin file /nonexistent/x.wasm"), "{}", text(&missing.stderr));

    let not_component = std::env::temp_dir().join(format!("sluice-core-{}.wasm", std::process::id()));
    std::fs::write(&not_component, b"\0asm\x01\0\0\0").unwrap();
    let out = sluice(&["plugin", "test", not_component.to_str().unwrap()], "");
    assert!(text(&out.stderr).contains("core WebAssembly module, not a component"), "{}", text(&out.stderr));
    std::fs::remove_file(&not_component).ok();

    let bad_config = sluice(&["plugin", "test", &wasm("bot_filter"), "--config", r#"{"patterns": "bot"}"#], "");
    assert_eq!(bad_config.status.code(), Some(1));
    assert!(text(&bad_config.stderr).contains("rejected its config: invalid config"), "{}", text(&bad_config.stderr));

    let not_json = sluice(&["plugin", "test", &wasm("bot_filter"), "--config", "{oops"], "");
    assert!(text(&not_json.stderr).contains("--config is not valid JSON"), "{}", text(&not_json.stderr));

    let bad_ndjson = sluice(&["plugin", "test", &wasm("bot_filter")], "{\"type\":\"v\"}\n{\"type\":\"v\"\n");
    assert_eq!(bad_ndjson.status.code(), Some(1));
    assert!(text(&bad_ndjson.stderr).contains("events line 2 is not valid JSON"), "{}", text(&bad_ndjson.stderr));

    let bad_event = sluice(&["plugin", "test", &wasm("bot_filter")], "{\"type\":\"v\"}\n{\"id\":\"x\"}\n");
    assert!(text(&bad_event.stderr).contains("events line 2: `type` is required"), "{}", text(&bad_event.stderr));
}
