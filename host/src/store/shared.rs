//! Rules both backends follow, written once: which DLQ ids a selector names,
//! how many replayed events go into one queue entry, the JSON arrays a queue
//! entry and an output batch are stored as, and what a bad cursor answers.

use std::collections::HashSet;

use super::{StoreError, StoreResult};
use crate::domain::{EntryResult, Event, QueuedEvent};

/// Most events put into one queue entry by a DLQ replay (a replay of many
/// entries becomes several queue entries, so no worker gets one huge batch).
pub const REPLAY_CHUNK: usize = 500;

/// The ids of a `DlqSelector::Ids`, each once, in the order first given: a
/// repeated id is replayed or deleted once and not counted as failed.
pub fn unique_ids(ids: &[String]) -> Vec<&str> {
    let mut seen = HashSet::new();
    ids.iter().map(String::as_str).filter(|id| seen.insert(*id)).collect()
}

/// The error for a cursor the store did not hand out.
pub fn invalid_cursor(cursor: &str) -> StoreError {
    StoreError::InvalidCursor(cursor.to_string())
}

/// `[a,b,...]` from items each written as JSON by `write`; `size_hint` is
/// the expected length of one item's JSON.
pub fn json_array<T>(items: &[T], size_hint: impl Fn(&T) -> usize, mut write: impl FnMut(&T, &mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.iter().map(&size_hint).sum::<usize>() + items.len() + 2);
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(item, &mut out);
    }
    out.push(b']');
    out
}

/// Refuses results whose window deltas carry a number that is not finite
/// (checked before a completion writes anything): the error names the
/// entry, window, pane, group and field.
pub fn check_finite(results: &[EntryResult]) -> StoreResult<()> {
    for r in results {
        for d in &r.window_deltas {
            if let Some((i, part)) = d.agg.non_finite() {
                return Err(StoreError::Internal(format!(
                    "entry {}: window {:?} pane {} group {} aggregate {i} has a {part} that is not finite; nothing was written",
                    r.delivery_id, d.window, d.pane, d.group
                )));
            }
        }
    }
    Ok(())
}

/// A fresh random token for a new sink record ([`crate::domain::SinkRecord::epoch`]).
pub fn new_epoch() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// What a queue entry holds: its events as one JSON array.
pub fn queue_json(events: &[QueuedEvent]) -> Vec<u8> {
    json_array(events, |q| q.event.byte_size() + 96, QueuedEvent::write_json)
}

/// One queued event's JSON, as it appears inside [`queue_json`]'s array
/// (de-duplication joins the chunk from the events it keeps).
pub fn event_json(event: &QueuedEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(event.event.byte_size() + 96);
    event.write_json(&mut out);
    out
}

/// A batch of outputs as one JSON array (a Redis output stream entry).
pub fn output_json(events: &[Event]) -> Vec<u8> {
    json_array(events, |e| e.byte_size() + 64, Event::write_json)
}

/// Items already serialized, joined into one JSON array.
pub fn join_json(parts: &[Vec<u8>]) -> Vec<u8> {
    json_array(parts, Vec::len, |part, out| out.extend_from_slice(part))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ReplayStart;

    #[test]
    fn queued_json_matches_serde() {
        let event = |id: &str| Event { id: id.into(), kind: "v".into(), source: "s".into(), timestamp: 3, data: r#"{"a":"\u00e9"}"#.into() };
        let events = vec![
            QueuedEvent::new(event("a")),
            QueuedEvent { event: event("b\"c"), start_stage: Some("st\\age".into()), attempt: 4, first_failed_at: Some(-7) },
            QueuedEvent { event: event("d"), start_stage: None, attempt: 2, first_failed_at: Some(12) },
            QueuedEvent { event: event("e"), start_stage: Some(ReplayStart::Window("w\"1".into())), attempt: 1, first_failed_at: None },
        ];
        let fast = queue_json(&events);
        assert_eq!(String::from_utf8(fast.clone()).unwrap(), serde_json::to_string(&events).unwrap());
        assert_eq!(serde_json::from_slice::<Vec<QueuedEvent>>(&fast).unwrap(), events);
        assert_eq!(queue_json(&[]), b"[]");
    }

    #[test]
    fn arrays_and_ids() {
        let e = Event { id: "a".into(), kind: "v".into(), source: "".into(), timestamp: 1, data: "{}".into() };
        assert_eq!(String::from_utf8(output_json(&[e.clone(), e.clone()])).unwrap(), serde_json::to_string(&[&e, &e]).unwrap());
        assert_eq!(join_json(&[b"1".to_vec(), b"{}".to_vec()]), b"[1,{}]");
        let ids: Vec<String> = ["b", "a", "b", "c", "a"].iter().map(|s| s.to_string()).collect();
        assert_eq!(unique_ids(&ids), ["b", "a", "c"]);
    }
}
