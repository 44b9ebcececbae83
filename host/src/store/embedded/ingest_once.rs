//! Producer retries on redb (API.md v1.1): idempotency records and
//! de-duplication by event id. Every function here runs inside the
//! enqueue's write transaction, so what it writes commits with the queue
//! entry or not at all.

use redb::{ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::*;
use crate::domain::{EnqueueOutcome, IdempotencyRecord};

/// Most expired rows of each kind one enqueue purges, beyond one per id it
/// records: bounded, so an enqueue never turns into a long sweep, and more
/// than it adds, so the tables shrink back to the window.
const PURGE_BATCH: usize = 1000;

/// An idempotency record as stored (JSON).
#[derive(Serialize, Deserialize)]
struct StoredRecord {
    expires_at: i64,
    body_sha: String,
    duplicates: u64,
    answer: String,
}

fn parse_record(p: &str, key_sha: &str, bytes: &[u8]) -> StoreResult<StoredRecord> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Internal(format!("bad idempotency record {key_sha} of pipeline {p}: {e}")))
}

/// What a request with `record`'s key gets when a live record of that key
/// is stored (`None`: there is none, go on).
pub(super) fn stored_outcome(txn: &WriteTransaction, p: &str, record: &IdempotencyRecord, now_ms: i64) -> StoreResult<Option<EnqueueOutcome>> {
    let table = txn.open_table(IDEMPOTENCY).map_err(db_err)?;
    let Some(value) = table.get((p, record.key_sha.as_str())).map_err(db_err)? else { return Ok(None) };
    let stored = parse_record(p, &record.key_sha, value.value())?;
    if stored.expires_at <= now_ms {
        return Ok(None);
    }
    Ok(Some(if stored.body_sha == record.body_sha {
        EnqueueOutcome::Replayed { answer: stored.answer, duplicates: stored.duplicates }
    } else {
        EnqueueOutcome::KeyReused
    }))
}

/// Stores `record` with the duplicate count of its step (replacing an
/// expired one of the same key), expiring `ttl_ms` after `now_ms`.
pub(super) fn write_record(txn: &WriteTransaction, p: &str, record: &IdempotencyRecord, duplicates: u64, now_ms: i64) -> StoreResult<()> {
    let expires_at = now_ms.saturating_add(i64::try_from(record.ttl_ms).unwrap_or(i64::MAX));
    let stored = StoredRecord { expires_at, body_sha: record.body_sha.clone(), duplicates, answer: record.answer.clone() };
    let key = record.key_sha.as_str();
    txn.open_table(IDEMPOTENCY).map_err(db_err)?.insert((p, key), to_json(&stored)?.as_slice()).map_err(db_err)?;
    txn.open_table(IDEMPOTENCY_EXPIRY).map_err(db_err)?.insert((p, expires_at, key), ()).map_err(db_err)?;
    Ok(())
}

/// Splits `events` (id, queued event JSON) into the JSON of those to queue
/// and the number of duplicates: an id accepted less than `window_ms`
/// before `now_ms`, or earlier in `events`, is a duplicate. The kept ids
/// are recorded as accepted at `now_ms`.
pub(super) fn drop_seen(
    txn: &WriteTransaction,
    p: &str,
    events: Vec<(String, Vec<u8>)>,
    window_ms: u64,
    now_ms: i64,
) -> StoreResult<(Vec<Vec<u8>>, u64)> {
    let mut seen = txn.open_table(SEEN_IDS).map_err(db_err)?;
    let mut by_time = txn.open_table(SEEN_BY_TIME).map_err(db_err)?;
    let since = now_ms.saturating_sub(i64::try_from(window_ms).unwrap_or(i64::MAX));
    let (mut kept, mut duplicates) = (Vec::with_capacity(events.len()), 0u64);
    for (id, json) in events {
        let id = id.as_str();
        let before = seen.get((p, id)).map_err(db_err)?.map(|at| at.value());
        match before {
            Some(at) if at > since => duplicates += 1,
            _ => {
                if let Some(at) = before {
                    by_time.remove((p, at, id)).map_err(db_err)?;
                }
                seen.insert((p, id), now_ms).map_err(db_err)?;
                by_time.insert((p, now_ms, id), ()).map_err(db_err)?;
                kept.push(json);
            }
        }
    }
    Ok((kept, duplicates))
}

/// A time index (pipeline, ms, name) → (): takes up to `max` of pipeline
/// `p`'s rows at or before `upto` out of it, answering them as (ms, name).
fn take_until(index: &mut Table<(&'static str, i64, &'static str), ()>, p: &str, upto: i64, max: usize) -> StoreResult<Vec<(i64, String)>> {
    let mut due = Vec::new();
    for item in index.range((p, i64::MIN, "")..(p, upto.saturating_add(1), "")).map_err(db_err)?.take(max) {
        let (key, _) = item.map_err(db_err)?;
        let (_, at, name) = key.value();
        due.push((at, name.to_string()));
    }
    for (at, name) in &due {
        index.remove((p, *at, name.as_str())).map_err(db_err)?;
    }
    Ok(due)
}

/// Deletes up to `PURGE_BATCH + extra` ids accepted `window_ms` or more
/// before `now_ms` (every id, with no window: de-duplication was turned
/// off) and up to `PURGE_BATCH` expired records. Answers whether it deleted
/// anything.
pub(super) fn purge_expired(txn: &WriteTransaction, p: &str, window_ms: u64, now_ms: i64, extra: usize) -> StoreResult<bool> {
    let cutoff = now_ms.saturating_sub(i64::try_from(window_ms).unwrap_or(i64::MAX));
    let old = take_until(&mut txn.open_table(SEEN_BY_TIME).map_err(db_err)?, p, cutoff, PURGE_BATCH + extra)?;
    let mut seen = txn.open_table(SEEN_IDS).map_err(db_err)?;
    for (_, id) in &old {
        seen.remove((p, id.as_str())).map_err(db_err)?;
    }

    let expired = take_until(&mut txn.open_table(IDEMPOTENCY_EXPIRY).map_err(db_err)?, p, now_ms, PURGE_BATCH)?;
    let mut records = txn.open_table(IDEMPOTENCY).map_err(db_err)?;
    for (_, key_sha) in &expired {
        // The key may have been stored again since (a newer expiry): keep that.
        let stored = records.get((p, key_sha.as_str())).map_err(db_err)?.map(|v| parse_record(p, key_sha, v.value()).map(|r| r.expires_at));
        if matches!(stored, Some(Err(_))) || matches!(stored, Some(Ok(until)) if until <= now_ms) {
            records.remove((p, key_sha.as_str())).map_err(db_err)?;
        }
    }
    Ok(!old.is_empty() || !expired.is_empty())
}

/// Deletes every record and id of pipeline `p` (the pipeline is deleted).
pub(super) fn delete_all(txn: &WriteTransaction, p: &str) -> StoreResult<()> {
    // Every key (p, ...) sorts below (p + "\0", ...), the next pipeline id there can be.
    let next = format!("{p}\0");
    let next = next.as_str();
    txn.open_table(IDEMPOTENCY).map_err(db_err)?.retain_in((p, "")..(next, ""), |_, _| false).map_err(db_err)?;
    txn.open_table(SEEN_IDS).map_err(db_err)?.retain_in((p, "")..(next, ""), |_, _| false).map_err(db_err)?;
    txn.open_table(IDEMPOTENCY_EXPIRY).map_err(db_err)?.retain_in((p, i64::MIN, "")..(next, i64::MIN, ""), |_, _| false).map_err(db_err)?;
    txn.open_table(SEEN_BY_TIME).map_err(db_err)?.retain_in((p, i64::MIN, "")..(next, i64::MIN, ""), |_, _| false).map_err(db_err)?;
    Ok(())
}
