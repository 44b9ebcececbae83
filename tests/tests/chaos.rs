//! The chaos soak's short run (the long one: `scripts/chaos.sh`): a few
//! rounds per store, faults taken in turn so each kind strikes at least
//! once, every round checked for lost, duplicated and misplaced events,
//! exact windows and an empty queue.

use sluice_blackbox_tests as harness;

use harness::chaos::faults::Fault;
use harness::chaos::{ChaosConfig, ChaosStore, Soak, Totals};

fn short_soak(store: ChaosStore, rounds: u32) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let config = ChaosConfig { seed: 7, load_ms: 1500, rate: 5000, cycle_faults: true, ..ChaosConfig::default() };
    let mut soak = Soak::start(store, config, log.path());
    let mut totals = Totals::default();
    for round in 1..=rounds {
        let report = soak.round(round).unwrap_or_else(|e| panic!("round {round}: {e}\nserver log:\n{}", std::fs::read_to_string(log.path()).unwrap_or_default()));
        assert!(report.is_clean(), "round {round} ({:?}): {:#?}", report.faults, report.problems());
        // The round did what it is for: load accepted, events dead-lettered
        // then replayed into the output.
        assert!(report.accepted >= 500, "round {round}: only {} accepted", report.accepted);
        assert!(report.before_replay.dlq > 10, "round {round}: {} in the DLQ", report.before_replay.dlq);
        // (Counted from the answers: a replay whose answer a fault cut off
        // is not counted, though the check found its events delivered.)
        assert!(report.replayed > 0, "round {round}: nothing replayed");
        totals.add(&report);
    }
    assert!(totals.is_clean(), "{totals:?}");
    for fault in Fault::all(store == ChaosStore::Redis) {
        assert!(totals.faults.contains_key(fault), "{} never struck: {:?}", fault.name(), totals.faults);
    }
    // Faults that break requests were met by retries with the same key.
    let retried = soak.stats.retried_batches.load(std::sync::atomic::Ordering::Relaxed);
    assert!(retried > 0, "no batch needed a retry: the faults missed the producers");
}

#[test]
fn chaos_short_embedded() {
    short_soak(ChaosStore::Embedded, 3);
}

#[test]
fn chaos_short_redis() {
    short_soak(ChaosStore::Redis, 4);
}
