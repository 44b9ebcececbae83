//! Knowing the store: an evicting Redis is refused at start, `/readyz` says
//! which store and whether it keeps anything on disk, and a Redis that lost
//! everything under a running server is reported (`store_reset`) without
//! the pipelines being dropped, until `sluice catalog restore` puts the
//! catalog back.

use sluice_blackbox_tests as harness;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{free_port, sluice_bin, wait_for, Server, StoreKind};
use serde_json::json;
use sluice_testkit::{PrivateCluster, PrivateRedis};

#[test]
fn an_evicting_redis_is_refused_at_start() {
    let redis = PrivateRedis::start_with_args(&["--maxmemory-policy", "allkeys-lru"]);
    refused_for_eviction(&redis.url());
}

/// Starts `sluice serve` on `store` and checks it exits at once, naming
/// `maxmemory-policy` `allkeys-lru` and the fix.
fn refused_for_eviction(store: &str) {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(sluice_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--store", store, "--redis-prefix", "evict"])
        .arg("--data-dir")
        .arg(data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().ok();
            panic!("sluice serve kept running on a Redis with maxmemory-policy allkeys-lru");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "refused with a failure exit code: {stderr}");
    assert!(stderr.contains("maxmemory-policy") && stderr.contains("allkeys-lru") && stderr.contains("noeviction"), "{stderr}");
}

#[test]
fn readyz_says_which_store_and_whether_it_is_durable() {
    let memory_only = PrivateRedis::start();
    let server = Server::start(StoreKind::Redis { url: memory_only.url(), prefix: "ready".into() });
    assert_eq!(server.get("/readyz"), (200, json!({"status": "ready", "store": "redis", "durable": false})));
    drop(server);

    let aof = PrivateRedis::start_durable();
    let server = Server::start(StoreKind::Redis { url: aof.url(), prefix: "ready".into() });
    assert_eq!(server.get("/readyz"), (200, json!({"status": "ready", "store": "redis", "durable": true})));
    drop(server);

    let (store, _dir) = harness::embedded_store();
    let server = Server::start(store);
    assert_eq!(server.get("/readyz"), (200, json!({"status": "ready", "store": "embedded", "durable": true})));
}

/// On a Redis Cluster the settings of every master count, not those of the
/// node that happens to answer: one evicting master is refused at start,
/// and the store is durable only while every master keeps an append-only
/// file. The master changed is never the catalog's, so a check of only the
/// node the catalog lives on would miss it.
#[test]
fn on_a_cluster_every_master_is_checked() {
    let cluster = PrivateCluster::start();
    let catalog_master = cluster.master_port_of_slot(cluster.slot_of("{_catalog}"));
    let masters = cluster.master_ports();
    assert_eq!(masters.len(), 3);
    let other = *masters.iter().find(|p| **p != catalog_master).unwrap();

    cluster.config_set(other, "maxmemory-policy", "allkeys-lru");
    refused_for_eviction(&cluster.store_url());
    cluster.config_set(other, "maxmemory-policy", "noeviction");

    let store = StoreKind::Cluster { url: cluster.store_url(), prefix: "ready".into() };
    let server = Server::start(store);
    assert_eq!(server.get("/readyz"), (200, json!({"status": "ready", "store": "redis", "durable": false})));
    for port in &masters {
        cluster.config_set(*port, "appendonly", "yes");
    }
    assert_eq!(server.get("/readyz"), (200, json!({"status": "ready", "store": "redis", "durable": true})));
    cluster.config_set(other, "appendonly", "no");
    assert_eq!(server.get("/readyz"), (200, json!({"status": "ready", "store": "redis", "durable": false})));
}

fn output_ids(server: &Server, pipeline: &str) -> Vec<String> {
    server.outputs(pipeline).iter().map(|e| e["id"].as_str().unwrap_or_default().to_string()).collect()
}

#[test]
fn a_flushed_redis_is_a_store_reset_and_catalog_restore_brings_the_pipelines_back() {
    let redis = PrivateRedis::start();
    let server = Server::start(StoreKind::Redis { url: redis.url(), prefix: "reset".into() });
    server.upload("url-parts", "url_parts");
    server.put_pipeline("p", &json!({"stages": [{"name": "parts", "plugin": "url-parts"}]}));
    let (status, body) = server.ingest_ndjson("p", &[json!({"id": "before", "type": "view", "data": {"url": "https://a.example/x"}})]);
    assert_eq!(status, 202, "{body}");
    wait_for("the first event emitted", Duration::from_secs(30), || output_ids(&server, "p").contains(&"before".to_string()).then_some(()));
    let kept = tempfile::tempdir().unwrap();
    let (ok, out) = server.catalog("export", kept.path());
    assert!(ok, "{out}");

    redis.flush_all();
    let (status, body) = wait_for("readyz answers store_reset", Duration::from_secs(20), || {
        let (status, body) = server.get("/readyz");
        (status == 503).then_some((status, body))
    });
    assert_eq!((status, &body["error"]), (503, &json!("store_reset")), "{body}");
    // The pipeline was not dropped: this process keeps running it, ingest
    // still lands and the workers still process.
    std::thread::sleep(Duration::from_millis(1500)); // several catalog syncs
    let (status, body) = server.ingest_ndjson("p", &[json!({"id": "during", "type": "view", "data": {"url": "https://b.example/y"}})]);
    assert_eq!(status, 202, "ingest while the store is reset: {body}");
    wait_for("the event sent during the reset emitted", Duration::from_secs(30), || {
        output_ids(&server, "p").contains(&"during".to_string()).then_some(())
    });
    assert_eq!(server.get("/readyz").1["error"], json!("store_reset"), "still reset until the catalog is restored");

    let (ok, out) = server.catalog("restore", kept.path());
    assert!(ok, "{out}");
    wait_for("readyz ready again", Duration::from_secs(20), || (server.get("/readyz").0 == 200).then_some(()));
    let (status, body) = server.get("/v1/pipelines/p");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["spec"]["stages"][0]["version"], json!(1), "{body}");
    let (status, body) = server.ingest_ndjson("p", &[json!({"id": "after", "type": "view", "data": {"url": "https://c.example/z"}})]);
    assert_eq!(status, 202, "{body}");
    wait_for("an event after the restore emitted", Duration::from_secs(30), || {
        output_ids(&server, "p").contains(&"after".to_string()).then_some(())
    });
}

/// `--redis-wait-replicas 1` on a Redis without replicas: the server warns
/// at start that the setting cannot be met, and ingest answers 503
/// `store_unavailable` (the write is on the master, the replica count is
/// not met), never 202 and never 500.
#[test]
fn wait_replicas_without_replicas_warns_and_answers_503() {
    let redis = PrivateRedis::start();
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("serve.log");
    let mut child = Command::new(sluice_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--store", &redis.url(), "--redis-prefix", "warn"])
        .args(["--redis-wait-replicas", "1", "--data-dir"])
        .arg(data.path())
        .env("SLUICE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let warned = wait_for("the warning about --redis-wait-replicas", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("--redis-wait-replicas asks for more replicas").then_some(text)
    });
    child.kill().ok();
    child.wait().ok();
    // The log colours field names: drop the escape sequences first.
    let plain: String = warned.split('\x1b').map(|part| part.split_once('m').filter(|_| part.starts_with('[')).map_or(part, |(_, rest)| rest)).collect();
    assert!(plain.contains("wanted=1") && plain.contains("fewest=0"), "{plain}");

    let server = Server::start_with(StoreKind::Redis { url: redis.url(), prefix: "wait".into() }, None, &["--redis-wait-replicas", "1"]);
    server.upload("bot-filter", "bot_filter");
    server.put_pipeline("p", &json!({"stages": [{"name": "b", "plugin": "bot-filter"}]}));
    let (status, body) = server.ingest_ndjson("p", &[json!({"id": "a", "type": "t", "data": {}})]);
    assert_eq!((status, &body["error"]), (503, &json!("store_unavailable")), "{body}");
}
