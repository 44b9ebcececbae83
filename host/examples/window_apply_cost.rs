//! How much a batch's window deltas cost the Redis completion step: times
//! `complete_windowed` on batches shaped like the load benchmark's (8 entries
//! of 500 events, ~450 URL paths each, count + avg; plus one "online now"
//! delta with 500 user ids), with and without the deltas.
//!
//! `cargo run --release --example window_apply_cost [redis://127.0.0.1:6379]`

use std::time::Instant;

use sluice::domain::Event;
use sluice::store::redis::RedisStore;
use sluice::store::prelude::*;
use sluice::domain::{EntryResult, FieldAgg, PaneAgg, PaneDelta, QueueLimits, QueuedEvent};

fn event(n: u64) -> Event {
    Event { id: format!("e{n}"), kind: "v".into(), source: "b".into(), timestamp: 1_700_000_000_000, data: format!("{{\"n\":{n}}}") }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let prefix = format!("applycost-{}", std::process::id());
    let store = RedisStore::connect(&url, &prefix).await?;
    let modes: Vec<bool> = if std::env::var("ONLYWITH").is_ok() { vec![true] } else { vec![false, true, false, true] };
    for with_windows in modes {
        let mut total = std::time::Duration::ZERO;
        let rounds = 20;
        for round in 0..rounds {
            let mut results = Vec::new();
            for e in 0..8u64 {
                let events: Vec<QueuedEvent> = (0..500).map(|i| QueuedEvent::new(event(e * 1000 + i))).collect();
                store.enqueue("p", &events, 0, QueueLimits { max_depth: 10_000_000, max_bytes: u64::MAX }).await?;
            }
            let deliveries = store.read("p", "w", 8, 0).await?;
            for (e, d) in deliveries.iter().enumerate() {
                let outputs: Vec<Event> = d.events.iter().map(|q| q.event.clone()).collect();
                let mut deltas = Vec::new();
                if with_windows {
                    let groups: u64 = std::env::var("NGROUPS").ok().and_then(|v| v.parse().ok()).unwrap_or(450);
                    for g in 0..groups {
                        let path = (round as u64 * 7919 + e as u64 * 450 + g) % 10_000;
                        deltas.push(PaneDelta {
                            window: "views_per_path".into(),
                            pane: 1_700_000_000_000,
                            group: format!("\"/products/{path}\""),
                            agg: PaneAgg { count: 1, fields: vec![FieldAgg::default(), FieldAgg { n: 1, sum: 431.0, min: None, max: None, missing: 0 }] },
                            distinct: vec![vec![], vec![]],
                            dirty_at: Some(1_700_000_010_000),
                        });
                    }
                    if std::env::var("NOHLL").is_err() { deltas.push(PaneDelta {
                        window: "online_now".into(),
                        pane: 1_700_000_000_000,
                        group: "null".into(),
                        agg: PaneAgg { count: 500, fields: vec![FieldAgg { n: 500, ..Default::default() }] },
                        distinct: vec![(0..500).map(|i| format!("u{}", (e as u64 * 500 + i) * 7 % 100_000)).collect()],
                        dirty_at: Some(1_700_000_001_000),
                    }); }
                }
                results.push(EntryResult {
                    delivery_id: d.id.clone(),
                    entry_bytes: d.bytes,
                    finished: d.events.len() as u64,
                    outputs,
                    window_deltas: deltas,
                    max_event_ts: Some(1_700_000_000_000),
                    ..Default::default()
                });
            }
            let started = Instant::now();
            let report = store.complete_windowed("p", &results, Some(i64::MAX), 0).await?;
            total += started.elapsed();
            if std::env::var("VERBOSE").is_ok() { eprintln!("{with_windows} round {round}: {:?}", started.elapsed()); }
            assert_eq!(report.applied, 8);
        }
        println!(
            "{}: {:.1} ms per batch of 4000 events, {:.2} µs per event",
            if with_windows { "with window deltas   " } else { "without window deltas" },
            total.as_secs_f64() * 1000.0 / rounds as f64,
            total.as_secs_f64() * 1e6 / (rounds as f64 * 4000.0)
        );
    }
    store.delete_pipeline("p").await?;
    Ok(())
}
