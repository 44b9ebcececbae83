//! A sink removed from the spec while DLQ replays wait for it: they go back
//! to the DLQ saying the sink no longer exists; replaying them then is
//! refused with the entries kept; once a sink of that name is back, a
//! replay delivers them. No accepted event is lost on the way.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use super::harness::{on_both_stores, wait_for, StoreKind};
use super::receiver::{Mode, Receiver};
use super::{assert_same_ids, chain_spec, ingest, output_ids, page_view, start, wait_delivered};

/// The event ids of the DLQ entries (each checked to be sink `hook`'s).
fn hook_dlq_ids(entries: &[Value]) -> BTreeSet<String> {
    for e in entries {
        assert_eq!((&e["error_kind"], &e["stage"]), (&json!("sink"), &json!("sink:hook")), "{e}");
    }
    entries.iter().map(|e| e["event"]["id"].as_str().unwrap().to_string()).collect()
}

fn replays_for_a_removed_sink_come_back_to_the_dlq(store: StoreKind) {
    let server = start(store);
    let hook = Receiver::start(Mode::Answer(400));
    let with_hook = chain_spec(json!([{"name": "hook", "kind": "http", "url": hook.url, "batch_max": 50}]));
    server.put_pipeline("web", &with_hook);
    ingest(&server, "web", &(0..100).map(page_view).collect::<Vec<_>>(), 100);
    let outputs = output_ids(&server, "web", 80);
    wait_for("80 refused events in the DLQ", Duration::from_secs(30), || (server.dlq("web").len() == 80).then_some(()));

    // Replayed while the receiver is down: they wait on the sink's redelivery list.
    hook.set(Mode::Answer(503));
    let (status, answer) = server.post_json("/v1/pipelines/web/dlq/replay", &json!({}));
    assert_eq!((status, &answer["replayed"]), (200, &json!(80)), "{answer}");
    assert!(server.dlq("web").is_empty());
    let tried = hook.requests();
    wait_for("a redelivery attempt", Duration::from_secs(20), || (hook.requests() > tried).then_some(()));

    // The sink leaves the spec: what waited comes back to the DLQ, saying why.
    server.put_pipeline("web", &chain_spec(json!([])));
    let back = wait_for("the waiting replays back in the DLQ", Duration::from_secs(30), || {
        let dlq = server.dlq("web");
        (dlq.len() >= 80).then_some(dlq)
    });
    assert_same_ids(&hook_dlq_ids(&back), &outputs, "every waiting event is back");
    assert_eq!(back.len(), 80, "each once");
    let error = back[0]["error"].as_str().unwrap();
    assert!(error.starts_with("sink `hook` no longer exists in the pipeline's spec"), "{error}");
    let (_, sinks) = server.get("/v1/pipelines/web/sinks");
    assert_eq!(sinks["sinks"], json!([]), "{sinks}");

    // A replay now is refused (counted as failed); the entries stay.
    let (status, answer) = server.post_json("/v1/pipelines/web/dlq/replay", &json!({}));
    assert_eq!((status, &answer["replayed"], &answer["failed"]), (200, &json!(0), &json!(80)), "{answer}");
    let kept = server.dlq("web");
    assert_same_ids(&hook_dlq_ids(&kept), &outputs, "still all there");
    assert!(kept.iter().all(|e| e["error"].as_str().unwrap().starts_with("sink `hook` no longer exists")), "{}", kept[0]);
    // The CLI says so too, and fails.
    let cli = std::process::Command::new(super::harness::sluice_bin())
        .args(["dlq", "replay", "web", "--stage", "sink:hook", "--server", &server.url("")])
        .env_remove("SLUICE_TOKEN")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&cli.stdout);
    assert_eq!(cli.status.code(), Some(1), "{said}");
    assert!(said.contains("0 entries replayed, 80 failed") && said.contains("no longer in the spec"), "{said}");
    let kept = server.dlq("web");
    assert_same_ids(&hook_dlq_ids(&kept), &outputs, "still all there after the CLI's replay");
    let one = kept[0]["dlq_id"].as_str().unwrap().to_string();
    let (status, answer) = server.post_json("/v1/pipelines/web/dlq/replay", &json!({"ids": [one]}));
    assert_eq!((status, &answer["replayed"], &answer["failed"]), (200, &json!(0), &json!(1)), "{answer}");
    assert_eq!(server.dlq("web").len(), 80);

    // The sink is back (its receiver fixed): a replay delivers everything.
    hook.set(Mode::Accept);
    server.put_pipeline("web", &with_hook);
    wait_for("the sink back to take replays", Duration::from_secs(30), || {
        let (_, answer) = server.post_json("/v1/pipelines/web/dlq/replay", &json!({}));
        (answer["replayed"] == json!(80)).then_some(())
    });
    wait_delivered(&server, "web", "hook", 80, Duration::from_secs(30));
    let got: BTreeSet<String> = hook.ids().into_iter().collect();
    assert_same_ids(&got, &outputs, "the receiver got every output");
    assert!(server.dlq("web").is_empty());
}
on_both_stores!(replays_for_a_removed_sink_come_back_to_the_dlq);
