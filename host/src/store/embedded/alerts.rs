//! Spike alerts on redb: appended once per (window, start, group), trimmed
//! by append time.

use async_trait::async_trait;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::*;
use crate::domain::{AlertRecord, Page};
use crate::store::Alerts;

/// An alert as ALERTS keeps it: the record plus when it was appended, which
/// is what retention trims by.
#[derive(Serialize, Deserialize)]
struct StoredAlert {
    window: String,
    start: i64,
    group: String,
    json: String,
    /// `now_ms` of the `put_alert` that appended it.
    at: i64,
}

#[async_trait]
impl Alerts for EmbeddedStore {
    async fn put_alert(&self, pipeline: &str, alert: &AlertRecord, now_ms: i64, retention_ms: i64) -> StoreResult<bool> {
        let stored = StoredAlert {
            window: alert.window.clone(),
            start: alert.start,
            group: alert.group.clone(),
            json: alert.json.clone(),
            at: now_ms,
        };
        let bytes = to_json(&stored)?;
        let p = pipeline.to_string();
        self.blocking(move |db| {
            let p = p.as_str();
            let txn = db.begin_write().map_err(db_err)?;
            let appended = {
                let mut alerts = txn.open_table(ALERTS).map_err(db_err)?;
                let mut keys = txn.open_table(ALERT_KEYS).map_err(db_err)?;
                // Trim first (oldest first, up to the first one still kept):
                // a trimmed alert no longer counts as raised.
                let cutoff = now_ms.saturating_sub(retention_ms);
                let mut old = Vec::new();
                for item in alerts.range((p, 0)..=(p, u64::MAX)).map_err(db_err)? {
                    let (key, value) = item.map_err(db_err)?;
                    let s = key.value().1;
                    let a: StoredAlert = serde_json::from_slice(value.value())
                        .map_err(|e| StoreError::Internal(format!("bad stored alert {s}: {e}")))?;
                    if a.at >= cutoff {
                        break;
                    }
                    old.push((s, a));
                }
                for (s, a) in &old {
                    alerts.remove((p, *s)).map_err(db_err)?;
                    let key = (p, a.window.as_str(), a.start, a.group.as_str());
                    if keys.get(key).map_err(db_err)?.map(|v| v.value()) == Some(*s) {
                        keys.remove(key).map_err(db_err)?;
                    }
                }
                let key = (p, stored.window.as_str(), stored.start, stored.group.as_str());
                if keys.get(key).map_err(db_err)?.is_some() {
                    false
                } else {
                    let mut meta = txn.open_table(META).map_err(db_err)?;
                    let mut seq = Seq::load(&meta)?;
                    let s = seq.take();
                    seq.save(&mut meta)?;
                    alerts.insert((p, s), bytes.as_slice()).map_err(db_err)?;
                    keys.insert(key, s).map_err(db_err)?;
                    true
                }
            };
            txn.commit().map_err(db_err)?;
            Ok(appended)
        })
        .await
    }

    async fn read_alerts(&self, pipeline: &str, cursor: &str, limit: usize) -> StoreResult<Page<AlertRecord>> {
        let (items, next_cursor) = self.page(ALERTS, pipeline, cursor, limit).await?;
        let items = items
            .iter()
            .map(|(s, bytes)| {
                let a: StoredAlert =
                    serde_json::from_slice(bytes).map_err(|e| StoreError::Internal(format!("bad stored alert {s}: {e}")))?;
                Ok(AlertRecord { window: a.window, start: a.start, group: a.group, json: a.json })
            })
            .collect::<StoreResult<_>>()?;
        Ok(Page { items, next_cursor })
    }
}
