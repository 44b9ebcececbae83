//! `sluice plugin new NAME --lang rust|python|js`, run as a user would: the
//! generated project builds with its own `build.sh`, its unit tests pass,
//! and the component passes `sluice plugin test` as generated, the second
//! run reusing the compiled component from the cache the first one wrote.
//!
//! The Python and JavaScript builds use the toolchains of
//! `scripts/sdk-tools.sh` (run by `scripts/build-sdk-plugins.sh`); the Rust
//! one builds in the workspace's target directory, offline, so only the new
//! crate compiles.

use sluice_blackbox_tests as harness;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use harness::{sluice_bin, workspace};

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what} failed ({}):\n{}", out.status, text(&out));
    out
}

/// Makes, builds and tests a project in `lang`; `unit_test` runs its own
/// tests; `setup` prepares the project and `envs` are set for its build and
/// tests.
fn new_project_builds_and_passes(lang: &str, unit_test: &[&str], setup: impl FnOnce(&Path), envs: &[(&str, &std::ffi::OsStr)]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let name = format!("demo-{lang}");
    let out = run_ok(Command::new(sluice_bin()).args(["plugin", "new", &name, "--lang", lang, "--dir"]).arg(&dir), "plugin new");
    assert!(text(&out).contains("./build.sh"), "{}", text(&out));
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let commands: Vec<&str> = readme.lines().skip_while(|l| !l.starts_with("```sh")).skip(1).take_while(|l| !l.starts_with("```")).collect();
    assert_eq!(commands.len(), 3, "a README of three commands: {readme}");
    assert!(commands[0].starts_with("./build.sh") && commands[1].starts_with("sluice plugin test") && commands[2].starts_with("curl -XPUT"));

    setup(&dir);
    run_ok(Command::new(dir.join("build.sh")).envs(envs.iter().copied()), &format!("{lang} build.sh"));
    let wasm = dir.join(format!("{name}.wasm"));
    assert!(wasm.is_file(), "{} built", wasm.display());
    run_ok(Command::new(unit_test[0]).args(&unit_test[1..]).envs(envs.iter().copied()).current_dir(&dir), &format!("{lang} unit tests"));

    // As the README says, twice: the second run loads the compiled component.
    let cache = tmp.path().join("compiled");
    let plugin_test = || {
        let started = Instant::now();
        let out = run_ok(
            Command::new(sluice_bin())
                .args(["plugin", "test"])
                .arg(&wasm)
                .args(["--events", "events.ndjson", "--config", r#"{"tag":"hello"}"#, "--cache-dir"])
                .arg(&cache)
                .current_dir(&dir),
            "plugin test",
        );
        (text(&out), started.elapsed())
    };
    let (first, first_took) = plugin_test();
    assert!(first.contains("line 2 id=2") && first.contains("dropped"), "{first}");
    assert!(first.contains(r#""tagged_by":"hello""#) && first.contains("3 events: 0 kept, 2 transformed/fanned out, 1 dropped, 0 failed"), "{first}");
    assert!(first.contains("compiled, and cached in"), "{first}");
    let (second, second_took) = plugin_test();
    assert!(second.contains("loaded the compiled component from"), "{second}");
    assert!(second.contains(r#""note":"Zoë","tagged_by":"hello""#), "{second}");
    assert!(second_took < first_took, "the second run ({second_took:?}) reuses the first's compile ({first_took:?})");
}

#[test]
fn python_project() {
    let python = workspace().join("target/sdk-tools/venv/bin/python");
    assert!(python.is_file(), "{}: run scripts/sdk-tools.sh first", python.display());
    new_project_builds_and_passes("python", &[python.to_str().unwrap(), "-m", "pytest", "-q", "-p", "no:cacheprovider"], |_| {}, &[]);
}

#[test]
fn js_project() {
    new_project_builds_and_passes("js", &["node", "--test"], |_| {}, &[]);
}

#[test]
fn rust_project() {
    // The workspace's lock and target directory: the SDK and its
    // dependencies are built already, at the same versions.
    let target = workspace().join("target");
    let envs = [("CARGO_TARGET_DIR", target.as_os_str()), ("CARGO_NET_OFFLINE", std::ffi::OsStr::new("true"))];
    let lock = |dir: &Path| {
        std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    };
    new_project_builds_and_passes("rust", &["cargo", "test", "--release", "-q"], lock, &envs);
}
