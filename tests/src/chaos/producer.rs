//! Producers as a careful client would write them: every batch carries an
//! `Idempotency-Key` and is sent again with the same key and body after a
//! 503, a 429 or a broken connection, until it is answered 202. So every
//! event sent is accepted exactly once, whatever happened to the server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;

/// How long one batch may be retried before the soak gives up on it.
const BATCH_DEADLINE: Duration = Duration::from_secs(120);
/// The longest a producer waits between two tries, whatever `Retry-After` says.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What the producers saw, summed over a soak.
#[derive(Default)]
pub struct SendStats {
    /// Requests sent, first tries and retries.
    pub requests: AtomicU64,
    /// Answers 503 (store unavailable; the outcome unknown).
    pub answers_503: AtomicU64,
    /// Answers 429 (backpressure).
    pub answers_429: AtomicU64,
    /// Requests that got no answer (the server died or was not up).
    pub connection_errors: AtomicU64,
    /// Batches answered 202 only after at least one retry.
    pub retried_batches: AtomicU64,
}

/// A producer's client for one server address.
pub struct Producer<'a> {
    client: Client,
    base: String,
    stats: &'a SendStats,
    /// Whether batches carry their key (off only to show what the soak
    /// finds without them: duplicates).
    with_keys: bool,
}

impl<'a> Producer<'a> {
    /// A producer for the server at `base` (`http://127.0.0.1:<port>`).
    pub fn new(base: String, stats: &'a SendStats, with_keys: bool) -> Producer<'a> {
        let client = Client::builder().timeout(Duration::from_secs(15)).build().expect("an HTTP client");
        Producer { client, base, stats, with_keys }
    }

    /// Sends `events` to `pipeline` as NDJSON under `key` until answered
    /// 202; answers the accepted answer, or why it could not be sent (an
    /// answer no retry can change, or [`BATCH_DEADLINE`] passed).
    pub fn send(&self, pipeline: &str, key: &str, events: &[Value]) -> Result<Value, String> {
        let body: String = events.iter().map(|e| format!("{e}\n")).collect();
        let url = format!("{}/v1/pipelines/{pipeline}/events", self.base);
        let started = Instant::now();
        let mut tries = 0u32;
        loop {
            tries += 1;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let mut request = self.client.post(&url).header("content-type", "application/x-ndjson").body(body.clone());
            if self.with_keys {
                request = request.header("idempotency-key", key);
            }
            let sent = request.send();
            let wait = match sent {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = response.text().unwrap_or_default();
                    match status {
                        202 => {
                            if tries > 1 {
                                self.stats.retried_batches.fetch_add(1, Ordering::Relaxed);
                            }
                            return serde_json::from_str(&text).map_err(|e| format!("batch {key}: 202 with a body that is not JSON ({e}): {text}"));
                        }
                        503 => {
                            self.stats.answers_503.fetch_add(1, Ordering::Relaxed);
                            retry_after.unwrap_or(MAX_BACKOFF)
                        }
                        429 => {
                            self.stats.answers_429.fetch_add(1, Ordering::Relaxed);
                            retry_after.unwrap_or(MAX_BACKOFF)
                        }
                        _ => return Err(format!("batch {key}: answered {status} (try {tries}): {text}")),
                    }
                }
                Err(_) => {
                    self.stats.connection_errors.fetch_add(1, Ordering::Relaxed);
                    Duration::from_millis(50)
                }
            };
            if started.elapsed() > BATCH_DEADLINE {
                return Err(format!("batch {key}: not accepted after {tries} tries in {BATCH_DEADLINE:?}"));
            }
            std::thread::sleep(wait.min(MAX_BACKOFF));
        }
    }
}

/// Checks a 202 answer: every event accepted, with the ids that were sent.
pub fn check_accepted(key: &str, events: &[Value], answer: &Value) -> Result<(), String> {
    let ids = answer["ids"].as_array().ok_or_else(|| format!("batch {key}: no ids in {answer}"))?;
    let sent: Vec<&Value> = events.iter().map(|e| &e["id"]).collect();
    if answer["accepted"].as_u64() != Some(events.len() as u64) || ids.iter().collect::<Vec<_>>() != sent {
        return Err(format!("batch {key}: {} events sent, answered {answer}", events.len()));
    }
    Ok(())
}
