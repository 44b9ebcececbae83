//! The load bench's reader: tails a pipeline's outputs the way a
//! downstream consumer would and hands back each event's `sent_at`, cheaply
//! enough to keep up with the pipeline on the same cores.

use super::ServerUnderTest;

/// Where the reader tails the outputs from: on Redis the output stream
/// itself, as a downstream consumer would (README: "Reading outputs"); on
/// the embedded store `GET …/output`, the only way out of that process.
#[derive(Clone)]
pub(super) enum OutputTail {
    Http { base: String },
    Redis { url: String, stream: String },
}

impl OutputTail {
    pub(super) fn of(server: &ServerUnderTest, pipeline: &str) -> OutputTail {
        match &server.redis {
            Some((url, prefix)) => OutputTail::Redis { url: url.clone(), stream: format!("{prefix}:{{{pipeline}}}:output") },
            None => OutputTail::Http { base: server.base.clone() },
        }
    }
}

/// The `sent_at` members in a JSON array of output events, in order (a
/// scan, not a parse: the reader must keep up with the pipeline on the same
/// cores; the bench's events have one each).
pub(super) fn sent_ats(events_json: &[u8]) -> impl Iterator<Item = i64> + '_ {
    memchr::memmem::find_iter(events_json, b"\"sent_at\":").filter_map(|at| {
        let digits = &events_json[at + 10..];
        let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
        std::str::from_utf8(&digits[..len]).ok()?.parse().ok()
    })
}

/// The events of one `GET …/output` page, only as far as the reader needs them.
#[derive(serde::Deserialize)]
struct OutputPage {
    entries: Vec<OutputEntry>,
    next_cursor: String,
}

#[derive(serde::Deserialize)]
struct OutputEntry {
    event: SentEvent,
}

#[derive(serde::Deserialize)]
struct SentEvent {
    data: SentData,
}

#[derive(serde::Deserialize)]
struct SentData {
    sent_at: Option<i64>,
}

/// Reads the next outputs after `cursor`: their `sent_at`s (or `None`) and
/// the new cursor.
pub(super) async fn read_outputs(
    tail: &OutputTail,
    client: &reqwest::Client,
    redis: &mut Option<crate::store::redis::Conn>,
    cursor: &mut String,
) -> anyhow::Result<Vec<Option<i64>>> {
    match tail {
        OutputTail::Http { base } => {
            let page: OutputPage = client.get(format!("{base}/v1/pipelines/bench/output?limit=1000&cursor={cursor}")).send().await?.json().await?;
            *cursor = page.next_cursor;
            Ok(page.entries.into_iter().map(|e| e.event.data.sent_at).collect())
        }
        OutputTail::Redis { url, stream } => {
            if redis.is_none() {
                *redis = Some(crate::store::redis::connect_url(url).await?);
            }
            let conn = redis.as_mut().expect("connected above");
            let from = if cursor.is_empty() { "0-0" } else { cursor.as_str() };
            let reply: ::redis::Value = ::redis::cmd("XREAD")
                .arg("COUNT")
                .arg(20) // entries of up to 500 events each
                .arg("BLOCK")
                .arg(100)
                .arg("STREAMS")
                .arg(stream)
                .arg(from)
                .query_async(conn)
                .await?;
            // [[stream, [[id, [field, value, ...]], ...]]] or nil.
            use ::redis::Value as V;
            let mut sent = Vec::new();
            let V::Array(streams) = reply else { return Ok(sent) };
            for s in streams {
                let V::Array(mut parts) = s else { continue };
                let Some(V::Array(entries)) = parts.pop() else { continue };
                for entry in entries {
                    let V::Array(mut entry) = entry else { continue };
                    let fields = entry.pop();
                    if let Some(V::BulkString(id)) = entry.pop() {
                        *cursor = String::from_utf8_lossy(&id).into_owned();
                    }
                    // Fields `n` (count) and `e` (a JSON array of the events).
                    let Some(V::Array(fields)) = fields else { continue };
                    if let Some(V::BulkString(json)) = fields.get(3) {
                        let n = match fields.get(1) {
                            Some(V::BulkString(n)) => std::str::from_utf8(n).ok().and_then(|n| n.parse().ok()).unwrap_or(0),
                            _ => 0,
                        };
                        let before = sent.len();
                        sent.extend(sent_ats(json).map(Some).take(n));
                        sent.resize(before + n, None);
                    }
                }
            }
            Ok(sent)
        }
    }
}


#[cfg(test)]
mod tests {
    #[test]
    fn finds_each_sent_at_in_order() {
        let batch = br#"[{"id":"a","data":{"url":"u","sent_at":12}},{"id":"b","data":{"sent_at":345,"x":"sent_at"}}]"#;
        assert_eq!(super::sent_ats(batch).collect::<Vec<_>>(), vec![12, 345]);
        assert_eq!(super::sent_ats(b"[]").count(), 0);
    }
}
