//! `sluice bench --sink postgres|http|nats`: the 3-stage pipeline with one
//! sink, driven at full speed (the highest rate the sink sustains: past
//! `max_sink_lag` ingest answers 429, so the input settles at what the
//! sink delivers), then at half that rate for event-to-delivery latency
//! (from the producer's `sent_at` to the row's insert time, the receiver's
//! arrival, or the time JetStream took the message in).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::output_tail::{sent_ats, OutputTail};
use super::{chain_spec, load, setup, start_server, BenchArgs};
use crate::domain::now_ms;

/// Deliveries seen by the bench's own HTTP receiver: count and latency of
/// those that arrived inside the measured window.
#[derive(Clone)]
struct Seen {
    window: Arc<Mutex<(i64, i64)>>,
    count: Arc<AtomicU64>,
    latency_ms: Arc<Mutex<Histogram<u64>>>,
}

impl Seen {
    fn new() -> anyhow::Result<Seen> {
        Ok(Seen { window: Arc::new(Mutex::new((i64::MAX, i64::MAX))), count: Arc::default(), latency_ms: Arc::new(Mutex::new(Histogram::new_with_bounds(1, 600_000, 3)?)) })
    }

    /// Counts a delivered body's events (their `sent_at`s) arriving now.
    fn record(&self, body: &[u8]) {
        let now = now_ms();
        let (from, to) = *self.window.lock();
        if now < from || now >= to {
            return;
        }
        let mut hist = self.latency_ms.lock();
        let mut n = 0;
        for sent_at in sent_ats(body) {
            hist.saturating_record((now - sent_at).max(1) as u64);
            n += 1;
        }
        self.count.fetch_add(n, Ordering::Relaxed);
    }

    fn measure(&self, from: i64, to: i64) {
        *self.window.lock() = (from, to);
        self.count.store(0, Ordering::Relaxed);
        self.latency_ms.lock().reset();
    }
}

/// The destination of one bench run.
enum Destination {
    Http { seen: Seen, url: String },
    /// Read back from the stream after the run (see [`nats_result`]).
    Nats { stream: String, subject: String, url: String },
    Postgres { url: String, table: String },
}

impl Destination {
    async fn make(kind: &str, args: &BenchArgs) -> anyhow::Result<Destination> {
        let tag = format!("{}_{}", std::process::id(), now_ms());
        Ok(match kind {
            "http" => {
                let seen = Seen::new()?;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let url = format!("http://{}/in", listener.local_addr()?);
                let state = seen.clone();
                let app = axum::Router::new().route(
                    "/in",
                    axum::routing::post(move |body: axum::body::Bytes| {
                        let state = state.clone();
                        async move {
                            state.record(&body);
                            axum::http::StatusCode::OK
                        }
                    }),
                );
                tokio::spawn(async move { axum::serve(listener, app).await });
                Destination::Http { seen, url }
            }
            "nats" => {
                let (stream, subject) = (format!("BENCH_{tag}"), format!("bench.{tag}"));
                let url = args.sink_url.clone().unwrap_or_else(|| "nats://127.0.0.1:4222".into());
                let client = async_nats::connect(url.as_str()).await.context("connecting to NATS")?;
                // A stream as a user would make it: file storage, the default duplicate window.
                async_nats::jetstream::new(client)
                    .create_stream(async_nats::jetstream::stream::Config { name: stream.clone(), subjects: vec![subject.clone()], ..Default::default() })
                    .await
                    .map_err(|e| anyhow::anyhow!("making stream {stream}: {e}"))?;
                Destination::Nats { stream, subject, url }
            }
            "postgres" => {
                let url = args.sink_url.clone().unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
                let table = format!("bench_sink_{tag}");
                pg(&url, &format!(
                    "CREATE TABLE {table} (id text, sent_at bigint, payload jsonb, \
                     delivered_at bigint NOT NULL DEFAULT (extract(epoch from clock_timestamp()) * 1000)::bigint)"
                ))
                .await?;
                Destination::Postgres { url, table }
            }
            other => anyhow::bail!("--sink {other:?}: one of postgres, http, nats"),
        })
    }

    fn spec(&self) -> Value {
        match self {
            Destination::Http { url, .. } => json!({"name": "out", "kind": "http", "url": url}),
            Destination::Nats { subject, url, .. } => json!({"name": "out", "kind": "nats", "url": url, "subject": subject}),
            Destination::Postgres { url, table } => json!({"name": "out", "kind": "postgres", "url": url, "table": table, "batch_max": 5000,
                "columns": {"id": "id", "sent_at": "data.sent_at", "payload": "data"}}),
        }
    }

    fn measure(&self, from: i64, to: i64) {
        if let Destination::Http { seen, .. } = self {
            seen.measure(from, to);
        }
    }

    /// Events delivered in `[from, to)` and their event-to-delivery p50/p99 (ms).
    async fn result(&self, from: i64, to: i64) -> anyhow::Result<(u64, u64, u64)> {
        match self {
            Destination::Http { seen, .. } => {
                let hist = seen.latency_ms.lock();
                Ok((seen.count.load(Ordering::Relaxed), hist.value_at_quantile(0.5), hist.value_at_quantile(0.99)))
            }
            Destination::Nats { stream, url, .. } => nats_result(url, stream, from, to).await,
            Destination::Postgres { url, table } => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                let row = client
                    .query_one(
                        &format!(
                            "SELECT count(*), coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY delivered_at - sent_at), 0), \
                             coalesce(percentile_disc(0.99) WITHIN GROUP (ORDER BY delivered_at - sent_at), 0) \
                             FROM {table} WHERE delivered_at >= $1 AND delivered_at < $2"
                        ),
                        &[&from, &to],
                    )
                    .await?;
                let (n, p50, p99): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
                Ok((n as u64, p50.max(0) as u64, p99.max(0) as u64))
            }
        }
    }

    async fn clean_up(&self) {
        match self {
            Destination::Postgres { url, table } => {
                let _ = pg(url, &format!("DROP TABLE IF EXISTS {table}")).await;
            }
            Destination::Nats { stream, url, .. } => {
                if let Ok(client) = async_nats::connect(url.as_str()).await {
                    let _ = async_nats::jetstream::new(client).delete_stream(stream).await;
                }
            }
            Destination::Http { .. } => {}
        }
    }
}

/// Messages JetStream took into `stream` in `[from, to)` (by the stream's
/// own timestamp of each) and their event-to-delivery p50/p99 (ms). Read
/// back after the run, so measuring costs the server nothing while the
/// sink runs (a live subscriber would have NATS send every message twice).
async fn nats_result(url: &str, stream: &str, from: i64, to: i64) -> anyhow::Result<(u64, u64, u64)> {
    use async_nats::jetstream::consumer::{pull, AckPolicy};
    let client = async_nats::connect(url).await.context("connecting to NATS")?;
    let mut stream = async_nats::jetstream::new(client).get_stream(stream).await.map_err(|e| anyhow::anyhow!("finding stream {stream}: {e}"))?;
    let last = stream.info().await.map_err(|e| anyhow::anyhow!("reading the stream's state: {e}"))?.state.last_sequence;
    let mut latency_ms = Histogram::<u64>::new_with_bounds(1, 600_000, 3)?;
    let mut n = 0;
    if last == 0 {
        return Ok((0, 0, 0));
    }
    let consumer = stream
        .create_consumer(pull::Config { ack_policy: AckPolicy::None, ..Default::default() })
        .await
        .map_err(|e| anyhow::anyhow!("making a consumer: {e}"))?;
    let mut messages = consumer.stream().max_messages_per_batch(10_000).messages().await.map_err(|e| anyhow::anyhow!("reading the stream: {e}"))?;
    // Bounded: one message per stream sequence up to `last`.
    for _ in 0..last {
        let message = match tokio::time::timeout(Duration::from_secs(10), messages.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(e))) => anyhow::bail!("reading the stream: {e}"),
            Ok(None) | Err(_) => anyhow::bail!("the stream's messages stopped before sequence {last}"),
        };
        let info = message.info().map_err(|e| anyhow::anyhow!("a message without its stream metadata: {e}"))?;
        let at = (info.published.unix_timestamp_nanos() / 1_000_000) as i64;
        if at >= from && at < to {
            for sent_at in sent_ats(&message.payload) {
                latency_ms.saturating_record((at - sent_at).max(1) as u64);
                n += 1;
            }
        }
        if info.stream_sequence >= last {
            break;
        }
    }
    Ok((n, latency_ms.value_at_quantile(0.5), latency_ms.value_at_quantile(0.99)))
}

async fn pg(url: &str, sql: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.context("connecting to Postgres")?;
    tokio::spawn(connection);
    client.batch_execute(sql).await.with_context(|| sql.to_string())?;
    Ok(())
}

/// One run at `rate` (0: full speed): events/s delivered and the latency.
fn run_once(rt: &tokio::runtime::Runtime, args: &BenchArgs, kind: &str, rate: u64) -> anyhow::Result<(f64, u64, u64, f64)> {
    let server = start_server(&args.store)?;
    let destination = rt.block_on(Destination::make(kind, args))?;
    let mut spec = chain_spec(1_000_000);
    spec["sinks"] = json!([destination.spec()]);
    spec["output_retention_ms"] = json!(60_000);
    setup(&server.base, &args.plugins, "bench", &spec)?;
    // `load` measures after a 2 s warm-up for `duration` s: the same window here.
    let from = now_ms() + 2_000;
    let to = from + args.duration as i64 * 1000;
    destination.measure(from, to);
    let loaded = rt.block_on(load(&server.base, OutputTail::of(&server, "bench"), args, rate))?;
    // Deliveries inside the window may be committed a moment after it.
    std::thread::sleep(Duration::from_secs(1));
    let (n, p50, p99) = rt.block_on(destination.result(from, to))?;
    rt.block_on(destination.clean_up());
    Ok((n as f64 / args.duration as f64, p50, p99, loaded.events_per_s))
}

/// The sink bench (see the module doc).
pub fn run(rt: &tokio::runtime::Runtime, args: &BenchArgs, kind: &str) -> anyhow::Result<()> {
    eprintln!("{kind} sink: full speed ...");
    let (max, _, _, input) = run_once(rt, args, kind, 0)?;
    println!("{kind} sink, full speed: {max:>8.0} events/s delivered ({input:.0} events/s accepted, bots filtered before the sink)");
    let half = ((max / 2.0) as u64).max(1);
    // The bench's input rate counts the ~9% bots the first stage drops.
    let input_rate = (half as f64 / 0.909) as u64;
    eprintln!("{kind} sink: half rate ({half} events/s delivered) ...");
    let (got, p50, p99, _) = run_once(rt, args, kind, input_rate)?;
    println!("{kind} sink, at {got:.0} events/s delivered: event-to-delivery p50 {p50} ms, p99 {p99} ms");
    Ok(())
}
