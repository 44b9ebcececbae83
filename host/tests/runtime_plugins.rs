//! Every example and hostile plugin, loaded through the real runtime
//! (wasmtime, the real components built by scripts/build-plugins.sh).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice::domain::Event;
use sluice::runtime::{
    FailureKind, LookupTables, MemoryTables, NoTables, Outcome, Plugin, PluginError, Runtime, RuntimeConfig, StageLimits,
    StageRunner, StageSetupError, StageSpec,
};

fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let cache_dir = Some(workspace().join("target/sluice-test-cache"));
        Runtime::new(RuntimeConfig { cache_dir, ..RuntimeConfig::default() }).expect("runtime starts")
    })
}

fn wasm_bytes(crate_name: &str) -> Vec<u8> {
    let path = workspace().join(format!("target/wasm32-wasip2/release/{crate_name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run scripts/build-plugins.sh first", path.display()))
}

fn plugin(crate_name: &str) -> Arc<Plugin> {
    runtime().load(&wasm_bytes(crate_name)).unwrap_or_else(|e| panic!("{crate_name} refused: {e}"))
}

fn stage_with(crate_name: &str, config: Value, limits: StageLimits, tables: Arc<dyn LookupTables>) -> StageRunner {
    let spec = StageSpec {
        pipeline: "test".into(),
        stage: crate_name.replace('_', "-"),
        plugin_name: crate_name.replace('_', "-"),
        plugin_version: 1,
        config: config.to_string(),
        limits,
    };
    StageRunner::new(plugin(crate_name), spec, tables).unwrap_or_else(|e| panic!("{crate_name} setup: {e}"))
}

fn stage(crate_name: &str, config: Value) -> StageRunner {
    stage_with(crate_name, config, StageLimits::default(), Arc::new(NoTables))
}

fn event(id: &str, data: Value) -> Event {
    Event { id: id.into(), kind: "page_view".into(), source: "web".into(), timestamp: 1_700_000_000_000, data: data.to_string() }
}

fn data_of(event: &Event) -> Value {
    serde_json::from_str(&event.data).unwrap()
}

/// The single output of a one-event batch that must have been transformed.
fn emitted_one(runner: &StageRunner, e: Event) -> Event {
    let mut report = runner.process(1, &[e]);
    match report.results.remove(0).outcome {
        Outcome::Emitted(mut events) if events.len() == 1 => events.remove(0),
        other => panic!("expected one emitted event, got {other:?}"),
    }
}

fn failure(outcome: &Outcome) -> (FailureKind, &str) {
    match outcome {
        Outcome::Failed { kind, message } => (*kind, message.as_str()),
        other => panic!("expected a failure, got {other:?}"),
    }
}

// ---- realistic plugins --------------------------------------------------

#[test]
fn bot_filter_drops_configured_patterns_case_insensitively() {
    let default = stage("bot_filter", json!({}));
    let events = vec![
        event("a", json!({"ua": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"})),
        event("b", json!({"ua": "Mozilla/5.0 (compatible; GoogleBot/2.1)"})),
        event("c", json!({"ua": "Baiduspider"})),
        event("d", json!({"url": "https://x.example/"})),
    ];
    let outcomes: Vec<Outcome> = default.process(1, &events).results.into_iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, vec![Outcome::Keep, Outcome::Drop, Outcome::Drop, Outcome::Keep]);

    let custom = stage("bot_filter", json!({"patterns": ["HeadlessChrome"]}));
    let outcomes: Vec<Outcome> = custom
        .process(1, &[event("a", json!({"ua": "Mozilla headlesschrome/119"})), event("b", json!({"ua": "Googlebot"}))])
        .results
        .into_iter()
        .map(|r| r.outcome)
        .collect();
    assert_eq!(outcomes, vec![Outcome::Drop, Outcome::Keep]);
}

#[test]
fn plugin_init_rejection_carries_the_plugin_message() {
    let spec = StageSpec {
        pipeline: "p".into(),
        stage: "s".into(),
        plugin_name: "bot-filter".into(),
        plugin_version: 1,
        config: json!({"patterns": [""]}).to_string(),
        limits: StageLimits::default(),
    };
    match StageRunner::new(plugin("bot_filter"), spec.clone(), Arc::new(NoTables)) {
        Err(StageSetupError::InitRejected { message, .. }) => assert!(message.contains("empty string"), "{message}"),
        other => panic!("expected InitRejected, got {:?}", other.err()),
    }
    let typo = StageSpec { config: json!({"patern": ["x"]}).to_string(), ..spec };
    match StageRunner::new(plugin("bot_filter"), typo, Arc::new(NoTables)) {
        Err(StageSetupError::InitRejected { message, .. }) => assert!(message.contains("unknown field `patern`"), "{message}"),
        other => panic!("expected InitRejected, got {:?}", other.err()),
    }
}

#[test]
fn url_parts_adds_host_path_and_query_and_names_bad_urls() {
    let runner = stage("url_parts", json!({}));
    let out = emitted_one(&runner, event("a", json!({"url": "https://Shop.Example.com:8443/cart/add?sku=A%2F1&qty=2&gift", "ms": 5})));
    assert_eq!(out.id, "a");
    assert_eq!(
        data_of(&out),
        json!({"url": "https://Shop.Example.com:8443/cart/add?sku=A%2F1&qty=2&gift", "ms": 5,
               "host": "shop.example.com", "path": "/cart/add", "query": {"sku": "A/1", "qty": "2", "gift": ""}})
    );
    let report = runner.process(1, &[event("b", json!({"url": "::not a url::"}))]);
    let (kind, message) = failure(&report.results[0].outcome);
    assert_eq!(kind, FailureKind::Rejected);
    assert!(message.contains("::not a url::"), "{message}");
}

#[test]
fn pii_redact_hashes_or_masks_the_configured_fields() {
    let hash = stage("pii_redact", json!({"fields": ["data.email", "data.user.phone"], "mode": "hash", "salt": "pepper"}));
    let out = emitted_one(&hash, event("a", json!({"email": "jane@example.com", "user": {"phone": "555-0100"}, "keep": 1})));
    let data = data_of(&out);
    use sha2::Digest;
    let expected = hex::encode(sha2::Sha256::digest(b"pepperjane@example.com"));
    assert_eq!(data["email"], json!(expected));
    assert_eq!(data["user"]["phone"].as_str().unwrap().len(), 64);
    assert_eq!(data["keep"], json!(1));

    let mask = stage("pii_redact", json!({"fields": ["data.email"], "mode": "mask"}));
    let out = emitted_one(&mask, event("b", json!({"email": "jane@example.com"})));
    assert_eq!(data_of(&out), json!({"email": "j***@example.com"}));
    // Nothing to redact: the event passes unchanged, not copied back.
    assert_eq!(mask.process(1, &[event("c", json!({"other": 1}))]).results[0].outcome, Outcome::Keep);
}

#[test]
fn geo_enrich_reads_the_host_table() {
    let tables = Arc::new(MemoryTables::new());
    tables.put("geo", HashMap::from([("81.2.69.0/24".to_string(), "GB".to_string())]));
    let runner = stage_with("geo_enrich", json!({}), StageLimits::default(), tables.clone());
    let out = emitted_one(&runner, event("a", json!({"ip": "81.2.69.142"})));
    assert_eq!(data_of(&out)["country"], json!("GB"));
    // A table update is visible to the next call, without a restart.
    tables.put("geo", HashMap::from([("81.2.69.0/24".to_string(), "IE".to_string())]));
    let out = emitted_one(&runner, event("b", json!({"ip": "81.2.69.7"})));
    assert_eq!(data_of(&out)["country"], json!("IE"));
    assert_eq!(runner.process(1, &[event("c", json!({"ip": "10.0.0.1"}))]).results[0].outcome, Outcome::Keep);
}

#[test]
fn split_items_fans_out_one_event_per_item() {
    let runner = stage("split_items", json!({}));
    let report = runner.process(1, &[event("order-7", json!({"items": [{"sku": "a"}, {"sku": "b"}, 3], "shop": "s1"}))]);
    let Outcome::Emitted(events) = &report.results[0].outcome else { panic!("{:?}", report.results[0]) };
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, vec!["order-7:0", "order-7:1", "order-7:2"]);
    assert_eq!(data_of(&events[1]), json!({"item": {"sku": "b"}, "shop": "s1"}));
    assert!(events.iter().all(|e| e.kind == "page_view" && e.timestamp == 1_700_000_000_000));
    let report = runner.process(1, &[event("x", json!({"items": 5}))]);
    let (kind, message) = failure(&report.results[0].outcome);
    assert_eq!(kind, FailureKind::Rejected);
    assert!(message.contains("array"), "{message}");
}

#[test]
fn schema_check_names_every_missing_field() {
    let runner = stage("schema_check", json!({"required": ["data.url", "data.user_id", "data.ms"]}));
    let report = runner.process(1, &[event("a", json!({"url": "u", "user_id": "x", "ms": 3})), event("b", json!({"url": "u"}))]);
    assert_eq!(report.results[0].outcome, Outcome::Keep);
    let (kind, message) = failure(&report.results[1].outcome);
    assert_eq!(kind, FailureKind::Rejected);
    assert_eq!(message, "missing required fields: data.user_id, data.ms");
}

#[test]
fn flaky_is_retryable_until_the_attempt_reaches_fail_attempts() {
    let runner = stage("flaky", json!({}));
    let e = event("a", json!({"fail_attempts": 3}));
    for attempt in 1..3 {
        let (kind, _) = failure(&runner.process(attempt, std::slice::from_ref(&e)).results[0].outcome);
        assert_eq!(kind, FailureKind::Retryable, "attempt {attempt}");
    }
    assert_eq!(runner.process(3, &[e]).results[0].outcome, Outcome::Keep);
}

// ---- hostile plugins ----------------------------------------------------

/// Runs one hostile event, checks its classification and that the runner
/// then processes a normal event through a fresh instance.
fn assert_stopped(runner: &StageRunner, poison: Event, kind: FailureKind, within: Duration) -> String {
    let started = Instant::now();
    let report = runner.process(1, &[poison]);
    let elapsed = started.elapsed();
    let (got, message) = failure(&report.results[0].outcome);
    assert_eq!(got, kind, "message: {message}");
    assert!(elapsed < within, "took {elapsed:?}, budget {within:?}");
    assert_eq!(report.traps, 1);
    message.to_string()
}

#[test]
fn spin_is_stopped_by_fuel_and_by_the_deadline() {
    let fuel = stage_with("spin", json!({}), StageLimits { fuel: 5_000_000, ..Default::default() }, Arc::new(NoTables));
    let message = assert_stopped(&fuel, event("s", json!({})), FailureKind::Fuel, Duration::from_secs(2));
    assert!(message.contains("5000000"), "{message}");
    let report = fuel.process(1, &[event("s2", json!({}))]);
    assert_eq!(report.results[0].fuel, 5_000_000, "the budget is per event and fully used");

    let limits = StageLimits { fuel: 10_000_000_000, timeout_ms: 100, ..Default::default() };
    let deadline = stage_with("spin", json!({}), limits, Arc::new(NoTables));
    let message = assert_stopped(&deadline, event("s", json!({})), FailureKind::Timeout, Duration::from_millis(1500));
    assert!(message.contains("100 ms"), "{message}");
}

/// A stage parked in a blocking WASI wait (where epoch interruption cannot
/// reach it) is cut at its deadline like one that spins, and the stage goes
/// on with the next events on fresh instances.
#[test]
fn sleeper_is_cut_at_the_deadline_whether_it_sleeps_or_polls() {
    let limits = StageLimits { fuel: 10_000_000_000, timeout_ms: 200, ..Default::default() };
    for mode in ["sleep", "poll"] {
        let runner = stage_with("sleeper", json!({"mode": mode, "ms": 3_600_000}), limits.clone(), Arc::new(NoTables));
        let started = Instant::now();
        let message = assert_stopped(&runner, event("z", json!({})), FailureKind::Timeout, Duration::from_secs(1));
        eprintln!("sleeper {mode}: one event failed with timeout in {:?}", started.elapsed());
        assert!(message.contains("200 ms"), "{mode}: {message}");

        let started = Instant::now();
        let report = runner.process(1, &[event("a", json!({})), event("b", json!({})), event("c", json!({}))]);
        eprintln!("sleeper {mode}: three events failed with timeout in {:?}", started.elapsed());
        for (i, result) in report.results.iter().enumerate() {
            assert_eq!(failure(&result.outcome).0, FailureKind::Timeout, "{mode}: event {i}");
        }
        assert_eq!(report.traps, 3, "{mode}");
        assert!(started.elapsed() < Duration::from_secs(3), "{mode}: took {:?}", started.elapsed());
    }
}

/// Waits that end before the deadline end as asked: a short sleep, and a
/// read of stdin (closed, so it answers at once).
#[test]
fn sleeper_waits_that_fit_the_deadline_pass() {
    let limits = StageLimits { timeout_ms: 200, ..Default::default() };
    for config in [json!({"mode": "sleep", "ms": 5}), json!({"mode": "read"})] {
        let runner = stage_with("sleeper", config.clone(), limits.clone(), Arc::new(NoTables));
        let started = Instant::now();
        let report = runner.process(1, &[event("a", json!({})), event("b", json!({}))]);
        assert_eq!(report.results.iter().map(|r| &r.outcome).collect::<Vec<_>>(), vec![&Outcome::Keep, &Outcome::Keep], "{config}");
        assert!(started.elapsed() < Duration::from_secs(1), "{config}: took {:?}", started.elapsed());
    }
}

#[test]
fn hog_is_stopped_by_the_memory_cap() {
    let limits = StageLimits { fuel: 10_000_000_000, memory_mb: 32, timeout_ms: 10_000, ..Default::default() };
    let runner = stage_with("hog", json!({}), limits, Arc::new(NoTables));
    let message = assert_stopped(&runner, event("h", json!({})), FailureKind::Memory, Duration::from_secs(5));
    assert!(message.contains("32 MiB"), "{message}");
}

#[test]
fn deep_is_stopped_by_the_stack_limit() {
    let runner = stage("deep", json!({}));
    assert_stopped(&runner, event("d", json!({})), FailureKind::Stack, Duration::from_secs(2));
    // Bounded recursion in the same plugin works on a fresh instance.
    let out = emitted_one(&runner, event("ok", json!({"depth": 10})));
    assert!(data_of(&out)["dive"].is_u64());
}

#[test]
fn panic_is_classified_with_the_guest_message_and_the_next_event_passes() {
    let runner = stage("panic", json!({}));
    let message = assert_stopped(&runner, event("p", json!({"panic": true})), FailureKind::Panic, Duration::from_secs(2));
    assert!(message.contains("data.panic was true"), "{message}");
    assert_eq!(runner.process(1, &[event("ok", json!({"panic": false}))]).results[0].outcome, Outcome::Keep);
}

#[test]
fn bomb_is_stopped_by_the_output_cap() {
    let runner = stage_with("bomb", json!({}), StageLimits { max_outputs: 500, ..Default::default() }, Arc::new(NoTables));
    let message = assert_stopped(&runner, event("b", json!({})), FailureKind::OutputLimit, Duration::from_secs(2));
    assert!(message.contains("500"), "{message}");
}

#[test]
fn escape_gets_only_errors_for_files_and_sockets() {
    // A real listener, so a connection would succeed if the sandbox let it out.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let file = std::env::temp_dir().join(format!("sluice-escape-{}", std::process::id()));
    std::fs::write(&file, "secret").unwrap();
    let runner = stage("escape", json!({"path": file.to_str().unwrap(), "addr": addr}));
    let out = emitted_one(&runner, event("e", json!({})));
    let data = data_of(&out);
    assert!(data["file"].as_str().unwrap().starts_with("error:"), "{data}");
    assert!(data["socket"].as_str().unwrap().starts_with("error:"), "{data}");
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "nothing may have connected");
    std::fs::remove_file(file).ok();
}

#[test]
fn a_poison_event_in_the_middle_of_a_batch_fails_alone() {
    let runner = stage("panic", json!({}));
    let events: Vec<Event> = (0..9).map(|i| event(&format!("e{i}"), json!({"panic": i == 4 || i == 7, "i": i}))).collect();
    let report = runner.process(1, &events);
    assert_eq!(report.results.len(), 9);
    for (i, result) in report.results.iter().enumerate() {
        if i == 4 || i == 7 {
            assert_eq!(failure(&result.outcome).0, FailureKind::Panic, "event {i}");
        } else {
            assert_eq!(result.outcome, Outcome::Keep, "event {i}");
        }
    }
    assert_eq!(report.traps, 2);
    // The trapped call, then each side of each poison event on its own.
    assert_eq!(report.calls, 5);
}

/// Isolating poison events costs calls (and work) linear in the batch, on a
/// lent batch as on a borrowed one, however many events trap.
#[test]
fn trap_isolation_is_linear_in_the_batch() {
    let runner = stage("panic", json!({}));
    let events: Vec<Event> = (0..512).map(|i| event(&format!("e{i}"), json!({"panic": i % 2 == 1, "i": i}))).collect();
    let poison = 256;
    let borrowed = runner.process(1, &events);
    let mut lent = events.clone();
    let started = Instant::now();
    let report = runner.process_lent(1, &mut lent);
    eprintln!("512 events, 256 traps: {} calls in {:?}", report.calls, started.elapsed());
    for report in [&borrowed, &report] {
        assert_eq!(report.results.len(), 512);
        for (i, result) in report.results.iter().enumerate() {
            if i % 2 == 1 {
                assert_eq!(failure(&result.outcome).0, FailureKind::Panic, "event {i}");
            } else {
                assert_eq!(result.outcome, Outcome::Keep, "event {i}");
            }
        }
        assert_eq!(report.traps, poison);
        assert!(report.calls <= 2 * poison + 1, "{} calls", report.calls);
    }
    assert_eq!(lent, events, "kept and failed inputs are left whole");
}

#[test]
fn stages_run_in_parallel_threads() {
    let runner = Arc::new(stage("url_parts", json!({})));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let runner = runner.clone();
            std::thread::spawn(move || {
                for round in 0..20 {
                    let events: Vec<Event> =
                        (0..32).map(|i| event(&format!("{t}-{round}-{i}"), json!({"url": format!("https://h{t}.example/p{i}")}))).collect();
                    let report = runner.process(1, &events);
                    for (i, result) in report.results.iter().enumerate() {
                        let Outcome::Emitted(out) = &result.outcome else { panic!("{result:?}") };
                        assert_eq!(data_of(&out[0])["path"], json!(format!("/p{i}")));
                        assert_eq!(data_of(&out[0])["host"], json!(format!("h{t}.example")));
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
}

// ---- loading ------------------------------------------------------------

#[test]
fn loader_refuses_what_is_not_a_stage_component() {
    let rt = runtime();
    assert!(matches!(rt.load(b"hello world, not wasm"), Err(PluginError::NotWasm)));
    let core_module = b"\0asm\x01\0\0\0";
    let err = rt.load(core_module).unwrap_err();
    assert!(matches!(err, PluginError::CoreModule));
    assert!(err.to_string().contains("wasm32-wasip2"), "{err}");
    let mut truncated = wasm_bytes("bot_filter");
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(rt.load(&truncated), Err(PluginError::Invalid(_))));
}

#[test]
fn loader_names_a_forbidden_import() {
    let err = runtime().load(&wasm_bytes("forbidden_import")).unwrap_err();
    assert!(matches!(err, PluginError::ForbiddenImport(ref name) if name.starts_with("evil:net/fetch")), "{err}");
    assert!(err.to_string().contains("evil:net/fetch"), "{err}");
}

#[test]
fn compiled_plugins_are_cached_by_content_hash() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = wasm_bytes("flaky");
    let first = Runtime::new(RuntimeConfig { cache_dir: Some(dir.path().into()), ..Default::default() }).unwrap();
    let a = first.load(&bytes).unwrap();
    assert!(Arc::ptr_eq(&a, &first.load(&bytes).unwrap()), "same bytes, same compiled plugin");
    let cached = dir.path().join(format!("{}.cwasm", a.sha256));
    assert!(cached.exists());
    // A new runtime (a restarted host) loads from the cache file.
    let second = Runtime::new(RuntimeConfig { cache_dir: Some(dir.path().into()), ..Default::default() }).unwrap();
    let started = Instant::now();
    let b = second.load(&bytes).unwrap();
    assert_eq!(a.sha256, b.sha256);
    assert!(started.elapsed() < Duration::from_secs(1), "cache load took {:?}", started.elapsed());
}

/// The compiled cache is native code: an artifact is loaded only when its
/// MAC (bound to the component's hash and the engine) verifies.
#[test]
fn a_tampered_or_foreign_compiled_artifact_is_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = || Runtime::new(RuntimeConfig { cache_dir: Some(dir.path().into()), ..Default::default() }).unwrap();
    let (flaky, bot) = (wasm_bytes("flaky"), wasm_bytes("bot_filter"));
    let first = runtime();
    let (a, b) = (first.load(&flaky).unwrap(), first.load(&bot).unwrap());
    let artifact = |sha: &str| dir.path().join(format!("{sha}.cwasm"));
    let mac = |sha: &str| dir.path().join(format!("{sha}.cwasm.mac"));
    assert!(mac(&a.sha256).exists(), "every artifact has its MAC");
    let good = std::fs::read(artifact(&a.sha256)).unwrap();
    let modified = |sha: &str| std::fs::metadata(artifact(sha)).unwrap().modified().unwrap();

    // A valid artifact is reused: loaded, not compiled and written again.
    let before = modified(&a.sha256);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(runtime().load(&flaky).unwrap().sha256, a.sha256);
    assert_eq!(modified(&a.sha256), before, "a valid artifact is not rewritten");

    // Bytes flipped: rejected, the plugin compiled again (and the entry rewritten).
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    std::fs::write(artifact(&a.sha256), &flipped).unwrap();
    let reloaded = runtime().load(&flaky).unwrap();
    assert_eq!(reloaded.sha256, a.sha256);
    assert_eq!(std::fs::read(artifact(&a.sha256)).unwrap().len(), good.len());
    assert_ne!(std::fs::read(artifact(&a.sha256)).unwrap(), flipped, "the tampered artifact was replaced");

    // Another plugin's artifact (with its own valid MAC) renamed: rejected.
    std::fs::copy(artifact(&b.sha256), artifact(&a.sha256)).unwrap();
    std::fs::copy(mac(&b.sha256), mac(&a.sha256)).unwrap();
    let foreign = std::fs::read(artifact(&b.sha256)).unwrap();
    let reloaded = runtime().load(&flaky).unwrap();
    assert_eq!(reloaded.sha256, a.sha256);
    assert_ne!(std::fs::read(artifact(&a.sha256)).unwrap(), foreign, "the foreign artifact was not kept");

    // No MAC at all (an artifact dropped in by someone else): rejected too.
    std::fs::remove_file(mac(&a.sha256)).unwrap();
    std::fs::write(artifact(&a.sha256), &foreign).unwrap();
    runtime().load(&flaky).unwrap();
    assert!(mac(&a.sha256).exists(), "compiled again and cached with a MAC");
    assert_ne!(std::fs::read(artifact(&a.sha256)).unwrap(), foreign);
}

#[test]
fn an_invalid_output_event_is_refused_and_attributed() {
    let runner = stage("bad_output", json!({}));
    let report = runner.process(1, &[event("ok-1", json!({})), event("b", json!({"bad": true})), event("ok-2", json!({}))]);
    assert_eq!(report.results[0].outcome, Outcome::Keep);
    let (kind, message) = failure(&report.results[1].outcome);
    assert_eq!(kind, FailureKind::Trap);
    assert!(message.contains("invalid event") && message.contains("not valid JSON"), "{message}");
    assert_eq!(report.results[2].outcome, Outcome::Keep);

    // The same through `emit-data` (the input with new data).
    let report = runner.process(1, &[event("ok-1", json!({})), event("d", json!({"bad": "data"})), event("ok-2", json!({}))]);
    assert_eq!(report.results[0].outcome, Outcome::Keep);
    let (kind, message) = failure(&report.results[1].outcome);
    assert_eq!(kind, FailureKind::Trap);
    assert!(message.contains("invalid data for input 1") && message.contains("not valid JSON"), "{message}");
    assert_eq!(report.results[2].outcome, Outcome::Keep);
}

/// A lent batch gives the same results; an input that became outputs lends
/// them its strings, the others are left as they were.
#[test]
fn a_lent_batch_moves_only_what_became_outputs() {
    let runner = stage("url_parts", json!({}));
    let events = vec![event("a", json!({"url": "https://h.example/p?x=1"})), event("b", json!({"url": "::"})), event("c", json!({"url": "https://h.example/"}))];
    let borrowed = runner.process(1, &events);
    let mut lent = events.clone();
    let report = runner.process_lent(1, &mut lent);
    assert_eq!(report.results.iter().map(|r| &r.outcome).collect::<Vec<_>>(), borrowed.results.iter().map(|r| &r.outcome).collect::<Vec<_>>());
    let Outcome::Emitted(outputs) = &report.results[0].outcome else { panic!("{:?}", report.results[0].outcome) };
    assert_eq!((outputs[0].id.as_str(), outputs[0].kind.as_str(), outputs[0].source.as_str()), ("a", "page_view", "web"));
    assert!(matches!(report.results[1].outcome, Outcome::Failed { .. }));
    assert_eq!(lent[1], events[1], "a failed input stays whole (it goes to the DLQ)");
}

/// A component built against the earlier `sluice:stage@0.1.0`
/// (`legacy-url-parts`: url-parts with the SDK's `stage-0-1` feature, which
/// imports `sluice:stage/host@0.1.0` and exports `process` next to
/// `process-packed`) is still accepted, and both ways a batch crosses into
/// it (`process-packed`, and the `list<event>` of `process`) give the same
/// outcomes and outputs as the 0.2.0 build of the same stage: transforms
/// (`emit-data`), errors and non-ASCII strings in one batch. A 0.2.0
/// component exports no `process`, so it is called packed either way.
#[test]
fn a_stage_0_1_0_component_still_runs_on_both_paths() {
    let list_runtime = Runtime::new(RuntimeConfig { packed_batches: false, ..RuntimeConfig::default() }).unwrap();
    let spec = |name: &str| StageSpec {
        pipeline: "test".into(),
        stage: name.into(),
        plugin_name: name.into(),
        plugin_version: 1,
        config: "{}".into(),
        limits: StageLimits::default(),
    };
    let events = vec![
        event("a", json!({"url": "https://shop.example.com/p/1?q=x&page=2"})),
        event("b", json!({"url": "not a url"})),
        Event { id: "c\u{e9}".into(), kind: "k\"".into(), source: "".into(), timestamp: -5, data: r#"{"url":"http://h/é"}"#.into() },
        event("d", json!({"other": 1})),
    ];
    let wasm = wasm_bytes("legacy_url_parts");
    let imports_0_1 = sluice::runtime::HOST_INTERFACES[1];
    assert!(String::from_utf8_lossy(&wasm).contains(imports_0_1), "legacy-url-parts must import {imports_0_1}");
    let legacy_packed = runtime().load(&wasm).expect("a sluice:stage@0.1.0 component is accepted");
    let legacy_list = list_runtime.load(&wasm).unwrap();
    assert!(legacy_packed.calls_packed() && !legacy_list.calls_packed());
    let current_list = list_runtime.load(&wasm_bytes("url_parts")).unwrap();
    assert!(current_list.calls_packed(), "a 0.2.0 component has only process-packed");
    let outcomes = |plugin: Arc<Plugin>| {
        let runner = StageRunner::new(plugin, spec("url-parts"), Arc::new(NoTables)).unwrap();
        let report = runner.process(1, &events);
        assert!(report.results.iter().all(|r| r.fuel > 0), "{:?}", report.results);
        report.results.into_iter().map(|r| r.outcome).collect::<Vec<_>>()
    };
    let reference = outcomes(plugin("url_parts"));
    assert!(matches!(reference[0], Outcome::Emitted(_)) && matches!(reference[1], Outcome::Failed { .. }) && reference[3] == Outcome::Keep);
    assert_eq!(outcomes(legacy_packed), reference, "0.1.0 component, packed");
    assert_eq!(outcomes(legacy_list), reference, "0.1.0 component, list<event>");
    assert_eq!(outcomes(current_list), reference, "0.2.0 component under packed_batches = false");
}
