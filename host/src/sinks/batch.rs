//! A batch as a sink sees it: its items (events, or window results), where
//! it sits in the source, and its key (the same on every retry).

use sha2::{Digest, Sha256};

use crate::domain::{Event, SinkPosition, WindowRecord};

/// One thing to deliver.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An output event, or one replayed from the DLQ.
    Event(Event),
    /// A window result record (one per closed window and per re-emit).
    Window(WindowRecord),
}

impl Item {
    /// The item's JSON text: an event with the ingest field names; a window
    /// result as the API answers it, with its `window` added.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Item::Event(event) => event.write_json(out),
            Item::Window(record) => {
                out.extend_from_slice(b"{\"window\":");
                crate::domain::write_json_str(out, &record.window);
                match record.json.trim_start().strip_prefix('{') {
                    Some(rest) if rest.trim_start().starts_with('}') => out.push(b'}'),
                    Some(rest) => {
                        out.push(b',');
                        out.extend_from_slice(rest.as_bytes());
                    }
                    None => out.push(b'}'),
                }
            }
        }
    }

    /// A stable id: the event's id, or for a window result a digest of the
    /// record (a re-emit with new values gets a new id; the same record
    /// read twice the same one).
    pub fn id(&self) -> String {
        match self {
            Item::Event(event) => event.id.clone(),
            Item::Window(record) => {
                let digest = Sha256::new().chain_update(record.window.as_bytes()).chain_update([0]).chain_update(record.json.as_bytes()).finalize();
                format!("w-{}", hex::encode(&digest[..16]))
            }
        }
    }

    /// The event, for the DLQ (a window result goes as an event of type
    /// `window_result` whose `data` is the record).
    pub fn into_event(self) -> Event {
        match self {
            Item::Event(event) => event,
            Item::Window(record) => {
                let id = Item::Window(record.clone()).id();
                let mut data = Vec::new();
                Item::Window(record.clone()).write_json(&mut data);
                Event { id, kind: "window_result".into(), source: format!("window:{}", record.window), timestamp: record.start, data: String::from_utf8_lossy(&data).into_owned() }
            }
        }
    }
}

/// Where a batch comes from, so the runner (and an exactly-once sink)
/// knows what delivering it moves.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// From the source: the position before the batch and after it.
    Source {
        /// Where the batch starts.
        from: SinkPosition,
        /// Where the next batch starts.
        to: SinkPosition,
    },
    /// From the sink's redelivery list (DLQ replays): its ids, in order.
    Replay {
        /// The redelivery-list ids of the batch's items.
        ids: Vec<String>,
    },
}

/// One delivery: the same value on every retry.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `<pipeline>:<sink>:<batch id>`, where the batch id names the
    /// batch's start and end in the source: identical on every retry (and
    /// after a restart that reads the same batch again).
    pub key: String,
    /// What to deliver, oldest first.
    pub items: Vec<Item>,
    /// Where it sits in the source.
    pub progress: Progress,
}

impl Batch {
    /// A batch read from the source between two positions.
    pub fn from_source(pipeline: &str, sink: &str, items: Vec<Item>, from: SinkPosition, to: SinkPosition) -> Batch {
        let key = format!("{pipeline}:{sink}:{}-{}", from.seq, to.seq);
        Batch { key, items, progress: Progress::Source { from, to } }
    }

    /// A batch of redelivered (replayed) events.
    pub fn from_replays(pipeline: &str, sink: &str, items: Vec<Item>, ids: Vec<String>) -> Batch {
        let key = format!("{pipeline}:{sink}:r{}-{}", ids.first().map_or("", |s| s.as_str()), ids.last().map_or("", |s| s.as_str()));
        Batch { key, items, progress: Progress::Replay { ids } }
    }

    /// The items as NDJSON, one line each.
    pub fn ndjson(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.items.len() * 256);
        for item in &self.items {
            item.write_json(&mut out);
            out.push(b'\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_and_keys() {
        let e = Event { id: "a".into(), kind: "v".into(), source: "s".into(), timestamp: 3, data: r#"{"x":1}"#.into() };
        let w = WindowRecord { window: "w".into(), start: 0, group: "\"g\"".into(), json: r#"{"group":"g","count":2}"#.into() };
        let from = SinkPosition { cursor: "1-0".into(), seq: 10 };
        let to = SinkPosition { cursor: "2-0".into(), seq: 12 };
        let batch = Batch::from_source("p", "s", vec![Item::Event(e), Item::Window(w.clone())], from, to);
        assert_eq!(batch.key, "p:s:10-12");
        let text = String::from_utf8(batch.ndjson()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["id"], "a");
        assert_eq!(lines[1], serde_json::json!({"window": "w", "group": "g", "count": 2}));
        assert_eq!(Item::Window(w.clone()).id(), Item::Window(w.clone()).id());
        let dead = Item::Window(w).into_event();
        assert_eq!(dead.kind, "window_result");
        assert!(serde_json::from_str::<serde_json::Value>(&dead.data).is_ok());
    }
}
