//! The output stream on redb: paged reads, and trimming by append time
//! (OUTPUT_MARKS).

use async_trait::async_trait;
use redb::ReadableTable;

use super::*;
use crate::domain::{Event, Page};
use crate::store::Outputs;

#[async_trait]
impl Outputs for EmbeddedStore {
    async fn read_output(&self, pipeline: &str, cursor: &str, limit: usize) -> StoreResult<Page<Event>> {
        let (items, next_cursor) = self.page(OUTPUT, pipeline, cursor, limit).await?;
        let items = items.iter().map(|(_, bytes)| serde_json::from_slice(bytes).map_err(json_err)).collect::<StoreResult<_>>()?;
        Ok(Page { items, next_cursor })
    }

    async fn trim_output(&self, pipeline: &str, before_ms: i64) -> StoreResult<u64> {
        let p = pipeline.to_string();
        self.blocking(move |db| {
            let p = p.as_str();
            let txn = db.begin_write().map_err(db_err)?;
            let deleted = {
                let mut marks = txn.open_table(OUTPUT_MARKS).map_err(db_err)?;
                // Seconds that ended by `before_ms`: every output in them is older.
                let done = (p, i64::MIN)..=(p, before_ms.saturating_sub(1000));
                let mut newest = None;
                for item in marks.range(done.clone()).map_err(db_err)? {
                    let (_, seq) = item.map_err(db_err)?;
                    newest = newest.max(Some(seq.value()));
                }
                let Some(mut newest) = newest else { return Ok(0) };
                // Never past what a sink of the output has not passed; marks
                // of seconds not wholly deleted stay for a later trim.
                if let Some(floor) = super::sinks::output_floor(&txn, p)? {
                    if floor == 0 {
                        return Ok(0);
                    }
                    newest = newest.min(floor - 1);
                }
                marks.retain_in(done, |_, seq| seq > newest).map_err(db_err)?;
                let mut output = txn.open_table(OUTPUT).map_err(db_err)?;
                let mut deleted = 0u64;
                output
                    .retain_in((p, 0)..=(p, newest), |_, _| {
                        deleted += 1;
                        false
                    })
                    .map_err(db_err)?;
                deleted
            };
            txn.commit().map_err(db_err)?;
            Ok(deleted)
        })
        .await
    }
}
