//! A Redis Cluster master lost under load: two worker processes and one
//! ingest-only process (`--workers 0`) on a cluster of 3 masters and 3
//! replicas, all with `--redis-wait-replicas 1`, load through the 3-stage
//! chain bot-filter → url-parts → geo-enrich with a tumbling window; the
//! master owning the pipeline's slot is SIGKILLed and its replica takes
//! over; then the killed node is started again and rejoins as its replica.
//! Every event answered 202 ends in the output exactly once, the window
//! counts are exact, and while the slot has no master (and, with
//! `--redis-wait-replicas 1`, while its new master has no replica) ingest
//! answers 503, never 500; the producer retries a 503 with the same
//! `Idempotency-Key`.

use sluice_blackbox_tests as harness;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use harness::{wait_for, Server, StoreKind};
use serde_json::{json, Value};
use sluice_testkit::{unique_prefix, PrivateCluster};

const PIPELINE: &str = "failover";
/// Events per request.
const BATCH: usize = 100;
/// How long one request may be retried (503s, connection errors) before the
/// test gives up on it.
const RETRY_FOR: Duration = Duration::from_secs(60);

/// Event `i`: every 10th is a bot (bot-filter drops it: neither output nor
/// DLQ); its time falls in one of 10 one-second windows, out of order.
fn event(i: usize) -> Value {
    let ua = if i % 10 == 0 { "Googlebot/2.1" } else { "Mozilla/5.0" };
    let window = (i * 7) % 10;
    json!({"id": format!("f{i}"), "type": "view", "timestamp": 2_000_000 + window as i64 * 1000 + (i % 991) as i64,
           "data": {"url": format!("https://h.example/p/{}", i % 5), "ua": ua, "ip": format!("81.2.{}.7", i % 2)}})
}

fn is_bot(i: usize) -> bool {
    i % 10 == 0
}

fn spec() -> Value {
    json!({"max_queue_depth": 1000000, "watermark_idle_ms": 86400000,
        "stages": [
            {"name": "bots", "plugin": "bot-filter"},
            {"name": "parts", "plugin": "url-parts"},
            {"name": "geo", "plugin": "geo-enrich", "config": {"table": "geo", "default": "ZZ"}}
        ],
        "windows": [{"name": "per-second", "kind": "tumbling", "size_ms": 1000, "allowed_lateness_ms": 86400000,
                     "aggregates": [{"op": "count"}]}]})
}

/// What the producer saw.
#[derive(Default)]
struct Produced {
    /// Event numbers answered 202.
    accepted: Vec<usize>,
    /// Answers by status, retries included.
    statuses: HashMap<u16, usize>,
    /// Requests that failed at the HTTP level (no answer).
    no_answer: usize,
}

/// Sends batches until `stop`, each with an `Idempotency-Key` of its own; a
/// 503 or a request that got no answer is sent again with the same key and
/// body until it is answered 202 (or anything else, which is recorded).
fn produce(server: &Server, stop: &AtomicBool, produced: &Mutex<Produced>) {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut next = 0usize;
    while !stop.load(Ordering::Relaxed) && next < 200_000 {
        let numbers: Vec<usize> = (next..next + BATCH).collect();
        next += BATCH;
        let body: String = numbers.iter().map(|&i| format!("{}\n", event(i))).collect();
        let key = format!("batch-{}", numbers[0]);
        let started = Instant::now();
        loop {
            let sent = client
                .post(server.url(&format!("/v1/pipelines/{PIPELINE}/events")))
                .header("content-type", "application/x-ndjson")
                .header("idempotency-key", &key)
                .body(body.clone())
                .send();
            let mut p = produced.lock().unwrap();
            match sent {
                Ok(r) => {
                    let status = r.status().as_u16();
                    *p.statuses.entry(status).or_default() += 1;
                    if status == 202 {
                        let answer: Value = r.json().unwrap();
                        assert_eq!(answer["accepted"], json!(BATCH), "{answer}");
                        p.accepted.extend(&numbers);
                        drop(p);
                        // ~2,000 events/s: enough load, a short check.
                        std::thread::sleep(Duration::from_millis(40));
                        break;
                    }
                    if status != 503 {
                        break;
                    }
                }
                Err(_) => p.no_answer += 1,
            }
            drop(p);
            assert!(started.elapsed() < RETRY_FOR, "batch {key} not accepted within {RETRY_FOR:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn a_master_lost_under_load_loses_nothing_answered() {
    let mut cluster = PrivateCluster::start();
    let store = StoreKind::Cluster { url: cluster.store_url(), prefix: unique_prefix("failover") };
    let wait = ["--redis-wait-replicas", "1"];
    let ingest = Server::start_with(store.clone(), None, &["--workers", "0", wait[0], wait[1]]);
    let workers: Vec<Server> = (0..2).map(|_| Server::start_with(store.clone(), None, &wait)).collect();
    for (name, krate) in [("bot-filter", "bot_filter"), ("url-parts", "url_parts"), ("geo-enrich", "geo_enrich")] {
        ingest.upload(name, krate);
    }
    let (status, body) = ingest.put_json("/v1/tables/geo", &json!({"81.2.0.0/24": "GB", "81.2.1.0/24": "FR"}));
    assert!(status == 200 || status == 201, "{status} {body}");
    ingest.put_pipeline(PIPELINE, &spec());

    let produced = Mutex::new(Produced::default());
    let stop = AtomicBool::new(false);
    let failover = std::thread::scope(|s| {
        s.spawn(|| produce(&ingest, &stop, &produced));
        std::thread::sleep(Duration::from_millis(1500));
        let accepted_before = produced.lock().unwrap().accepted.len();
        let failover = cluster.kill_master_of(&format!("{{{PIPELINE}}}"));
        // The promoted replica has no replica of its own: WAIT 1 cannot be
        // met and ingest answers 503 until the killed node is back as one.
        cluster.restart_killed(&failover);
        // Load goes on against the promoted replica, now replicated again.
        std::thread::sleep(Duration::from_millis(2000));
        stop.store(true, Ordering::Relaxed);
        (failover, accepted_before)
    });
    let (failover, accepted_before) = failover;
    let produced = produced.into_inner().unwrap();
    let accepted = &produced.accepted;
    assert!(accepted_before >= 1000, "only {accepted_before} events accepted before the failover");
    assert!(accepted.len() > accepted_before, "nothing accepted after the failover ({failover:?})");
    assert_eq!(produced.statuses.get(&500), None, "ingest answered 500 during the failover: {:?}", produced.statuses);
    let others: Vec<_> = produced.statuses.iter().filter(|(s, _)| ![202, 503].contains(*s)).collect();
    assert!(others.is_empty(), "answers other than 202 and 503: {others:?}");
    assert!(
        produced.statuses.get(&503).copied().unwrap_or(0) + produced.no_answer > 0,
        "no 503 while the slot had no master ({failover:?}): {:?}",
        produced.statuses
    );

    // Every accepted non-bot event is in the output exactly once; bots are
    // dropped by the first stage; nothing goes to the DLQ.
    let want: Vec<String> = accepted.iter().filter(|i| !is_bot(**i)).map(|i| format!("f{i}")).collect();
    let outputs = wait_for("every accepted event emitted", Duration::from_secs(90), || {
        let out = ingest.outputs(PIPELINE);
        (out.len() >= want.len()).then_some(out)
    });
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for e in &outputs {
        *seen.entry(e["id"].as_str().unwrap()).or_default() += 1;
        let country = if e["data"]["ip"] == json!("81.2.0.7") { "GB" } else { "FR" };
        assert_eq!(e["data"]["country"], json!(country), "{e}");
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "duplicated outputs after the failover: {:?}", &duplicated[..duplicated.len().min(5)]);
    let missing: Vec<_> = want.iter().filter(|id| !seen.contains_key(id.as_str())).collect();
    assert!(missing.is_empty(), "{} answered events lost in the failover, e.g. {:?}", missing.len(), &missing[..missing.len().min(5)]);
    assert_eq!(seen.len(), want.len(), "outputs hold events never answered 202");
    assert!(ingest.dlq(PIPELINE).is_empty());

    // Window counts: exactly the accepted non-bot events of each second.
    let total = accepted.len() as u64;
    wait_for("every accepted event processed", Duration::from_secs(60), || {
        (ingest.metrics(PIPELINE)["processed"].as_u64() == Some(total)).then_some(())
    });
    let mut counts: HashMap<i64, u64> = HashMap::new();
    for &i in accepted.iter().filter(|i| !is_bot(**i)) {
        *counts.entry(event(i)["timestamp"].as_i64().unwrap().div_euclid(1000) * 1000).or_default() += 1;
    }
    let (status, body) = ingest.get(&format!("/v1/pipelines/{PIPELINE}/windows/per-second"));
    assert_eq!(status, 200, "{body}");
    let got: HashMap<i64, u64> =
        body["results"].as_array().unwrap().iter().map(|r| (r["start"].as_i64().unwrap(), r["count"].as_u64().unwrap())).collect();
    assert_eq!(got, counts, "per-second counts after the failover ({total} accepted)");

    // Both worker processes took part.
    let calls = |s: &Server| s.metrics(PIPELINE)["stages"][0]["calls"].as_u64().unwrap_or(0);
    assert!(workers.iter().all(|w| calls(w) > 0), "work divided: {:?}", workers.iter().map(calls).collect::<Vec<_>>());
    eprintln!(
        "failover {failover:?}: {} events accepted ({accepted_before} before the kill), answers {:?}, {} without answer",
        accepted.len(),
        produced.statuses,
        produced.no_answer
    );
}
