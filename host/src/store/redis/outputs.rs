//! The output stream on Redis: one stream entry per completed queue entry
//! with outputs (a JSON array), read in pages that may end inside an entry,
//! trimmed by age.

use async_trait::async_trait;

use super::*;
use crate::domain::{Event, Page};
use crate::store::{Outputs, SinkState};

/// A position in the output stream, whose entries hold a batch of events
/// each: after the first `taken` events of `entry` (`taken` 0: after all of
/// it). Written `<entry>` or `<entry>.<taken>`.
#[derive(Debug, PartialEq)]
struct OutputCursor {
    entry: String,
    taken: usize,
}

impl OutputCursor {
    /// `None` for the empty cursor (from the start).
    fn parse(cursor: &str) -> StoreResult<Option<OutputCursor>> {
        if cursor.is_empty() {
            return Ok(None);
        }
        let invalid = || invalid_cursor(cursor);
        let (entry, taken) = match cursor.split_once('.') {
            None => (cursor, 0),
            Some((entry, taken)) => (entry, taken.parse::<usize>().ok().filter(|t| *t > 0 && taken.bytes().all(|b| b.is_ascii_digit())).ok_or_else(invalid)?),
        };
        if !is_stream_id(entry) {
            return Err(invalid());
        }
        Ok(Some(OutputCursor { entry: entry.to_string(), taken }))
    }
}

impl std::fmt::Display for OutputCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.taken {
            0 => f.write_str(&self.entry),
            taken => write!(f, "{}.{taken}", self.entry),
        }
    }
}

#[async_trait]
impl Outputs for RedisStore {
    async fn read_output(&self, pipeline: &str, cursor: &str, limit: usize) -> StoreResult<Page<Event>> {
        let k = self.keys(pipeline);
        let position = OutputCursor::parse(cursor)?;
        let unchanged = if cursor.is_empty() { "0-0".to_string() } else { cursor.to_string() };
        if limit == 0 {
            return Ok(Page { items: Vec::new(), next_cursor: unchanged });
        }
        let mut start = match &position {
            None => "-".to_string(),
            Some(OutputCursor { entry, taken: 0 }) => match start_after(entry) {
                Some(start) => start,
                None => return Ok(Page { items: Vec::new(), next_cursor: unchanged }),
            },
            Some(OutputCursor { entry, .. }) => entry.clone(),
        };
        let output = &k.output;
        let mut items = Vec::new();
        let mut next_cursor = unchanged;
        // An entry holds anything from one event to a whole request's: read
        // a few entries, then twice as many each time, until the page is full.
        let mut count = 4usize;
        loop {
            let want = count.min(limit - items.len());
            let range_start = start.clone();
            let reply: StreamRangeReply = self
                .run(|mut c| async move {
                    ::redis::cmd("XRANGE").arg(output).arg(&range_start).arg("+").arg("COUNT").arg(want).query_async(&mut c).await
                })
                .await?;
            for entry in &reply.ids {
                if items.len() == limit {
                    // Full at an entry's end: the cursor is that entry's id.
                    break;
                }
                let events: Vec<Event> = json_field(entry, "e")?;
                let skip = match &position {
                    Some(p) if p.entry == entry.id => p.taken,
                    _ => 0,
                };
                for (index, event) in events.into_iter().enumerate().skip(skip) {
                    if items.len() == limit {
                        next_cursor = OutputCursor { entry: entry.id.clone(), taken: index }.to_string();
                        return Ok(Page { items, next_cursor });
                    }
                    items.push(event);
                }
                next_cursor = entry.id.clone();
            }
            if reply.ids.len() < want || items.len() == limit {
                break;
            }
            start = format!("({next_cursor}");
            count *= 2;
        }
        Ok(Page { items, next_cursor })
    }

    async fn trim_output(&self, pipeline: &str, before_ms: i64) -> StoreResult<u64> {
        let k = self.keys(pipeline);
        let output = &k.output;
        // Stream ids start with the append time (the Redis server's clock).
        let mut min_id = (before_ms.max(0) as u64, 0u64);
        // Never past what a sink of the output has not passed: an entry its
        // cursor is inside stays, and everything after its cursor. A sink
        // made after this read starts at the end, past anything this trim deletes.
        for (_, record) in self.sink_records(pipeline).await? {
            if record.from != "output" {
                continue;
            }
            let cursor = super::sinks::cursor_entry(&record.position.cursor);
            match cursor.and_then(|(entry, partly)| Some((stream_id_parts(entry)?, partly))) {
                Some((entry, true)) => min_id = min_id.min(entry),
                Some(((ms, seq), false)) => min_id = min_id.min((ms, seq.saturating_add(1))),
                None => return Ok(0), // a sink that has read nothing yet waits for everything
            }
        }
        let min_id = format!("{}-{}", min_id.0, min_id.1);
        let min_id = &min_id;
        self.run(|mut c| async move { ::redis::cmd("XTRIM").arg(output).arg("MINID").arg(min_id).query_async(&mut c).await })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::OutputCursor;

    #[test]
    fn output_cursors() {
        assert_eq!(OutputCursor::parse("").unwrap(), None);
        let at = |entry: &str, taken| Some(OutputCursor { entry: entry.into(), taken });
        assert_eq!(OutputCursor::parse("5-1").unwrap(), at("5-1", 0));
        assert_eq!(OutputCursor::parse("5-1.250").unwrap(), at("5-1", 250));
        assert_eq!(OutputCursor::parse("5-1.250").unwrap().unwrap().to_string(), "5-1.250");
        assert_eq!(OutputCursor::parse("5-1").unwrap().unwrap().to_string(), "5-1");
        for bad in ["x", "5-1.", "5-1.0", "5-1.-2", "5-1.+2", ".3", "5-1.2.3"] {
            assert!(OutputCursor::parse(bad).is_err(), "{bad}");
        }
    }
}
