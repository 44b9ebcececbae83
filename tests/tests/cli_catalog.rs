//! `sluice catalog export` / `restore`: a server's plugins (every version),
//! pipeline specs and tables as plain files, put back into another server.

use sluice_blackbox_tests as harness;

use std::process::Command;

use harness::{sluice_bin, Server};
use serde_json::{json, Value};

/// The plugin list without `uploaded_at` (a restore uploads anew).
fn plugins(server: &Server) -> Value {
    let (status, mut body) = server.get("/v1/plugins");
    assert_eq!(status, 200, "{body}");
    for plugin in body["plugins"].as_array_mut().unwrap() {
        for version in plugin["versions"].as_array_mut().unwrap() {
            version.as_object_mut().unwrap().remove("uploaded_at");
        }
    }
    body
}

#[test]
fn export_then_restore_into_a_fresh_server_gives_the_same_catalog() {
    let (store, _dir) = harness::embedded_store();
    let source = Server::start(store);
    assert_eq!(source.upload("parts", "url_parts"), 1);
    assert_eq!(source.upload("parts", "schema_check"), 2);
    assert_eq!(source.upload("redact", "pii_redact"), 1);
    let (status, body) = source.put_json("/v1/tables/countries", &json!({"fr": "France", "de": "Germany"}));
    assert_eq!(status, 200, "{body}");
    source.put_pipeline("first", &json!({"stages": [{"name": "a", "plugin": "parts", "version": 1}, {"name": "b", "plugin": "redact"}]}));
    source.put_pipeline("second", &json!({"stages": [{"name": "check", "plugin": "parts", "config": {"required": ["data.n"]}}]}));

    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = source.catalog("export", dir.path());
    assert!(ok, "{out}");
    for file in ["plugins/parts/1.wasm", "plugins/parts/2.wasm", "plugins/parts/2.json", "plugins/redact/1.wasm", "pipelines/first.json", "pipelines/second.json", "tables/countries.json"] {
        assert!(dir.path().join(file).is_file(), "{file} exported:\n{out}");
    }

    let (store, _dir2) = harness::embedded_store();
    let target = Server::start(store);
    let (ok, out) = target.catalog("restore", dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("plugin parts version 2: uploaded") && out.contains("pipeline second: put"), "{out}");
    assert_eq!(plugins(&target), plugins(&source));
    assert_eq!(target.get("/v1/pipelines"), source.get("/v1/pipelines"));
    assert_eq!(target.get("/v1/tables/countries"), source.get("/v1/tables/countries"));
    assert_eq!(target.get("/v1/tables"), (200, json!({"tables": [{"name": "countries", "size": 2}]})));

    // Again: nothing to upload, the same catalog.
    let (ok, out) = target.catalog("restore", dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("plugin parts version 1: already there"), "{out}");
    assert_eq!(plugins(&target), plugins(&source));

    // A server whose `parts` version 1 is other bytes cannot take it: said
    // clearly, non-zero exit.
    let (store, _dir3) = harness::embedded_store();
    let other = Server::start(store);
    other.upload("parts", "bot_filter");
    let (ok, out) = other.catalog("restore", dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("plugin `parts` version 1") && out.contains("other bytes"), "{out}");
    let (_, tables) = other.get("/v1/tables");
    assert_eq!(tables, json!({"tables": []}), "a restore that cannot be done changes nothing");

    // A version that comes after one the export lacks cannot be numbered
    // the same: refused before anything is uploaded.
    std::fs::remove_file(dir.path().join("plugins/parts/1.wasm")).unwrap();
    std::fs::remove_file(dir.path().join("plugins/parts/1.json")).unwrap();
    let (store, _dir4) = harness::embedded_store();
    let fresh = Server::start(store);
    let (ok, out) = fresh.catalog("restore", dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("plugin `parts` version 2 cannot be reproduced"), "{out}");
    assert_eq!(fresh.get("/v1/plugins").1, json!({"plugins": []}), "nothing uploaded: {out}");
}

#[test]
fn a_server_that_cannot_be_reached_is_a_clear_failure() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(sluice_bin())
        .args(["catalog", "export"])
        .arg(dir.path())
        .args(["--server", &format!("http://127.0.0.1:{}", harness::free_port())])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("cannot reach the server"), "{text}");
}
