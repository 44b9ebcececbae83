//! Spike alerts on Redis: one stream per pipeline, and a set per window
//! start of the groups already alerted (so each is raised once).

use async_trait::async_trait;

use super::windows::corrupt;
use super::*;
use crate::domain::{AlertRecord, Page};
use crate::store::Alerts;

impl RedisStore {
    pub(super) async fn alert(&self, pipeline: &str, alert: &AlertRecord, now_ms: i64, retention_ms: i64) -> StoreResult<bool> {
        let k = self.keys(pipeline);
        let alerted = format!("{}{}:alerted:{}", k.windows, alert.window, alert.start);
        let (k, alerted) = (&k, &alerted);
        let added: i64 = self
            .run(|mut c| async move {
                self.scripts
                    .put_alert
                    .key(&k.alerts)
                    .key(alerted)
                    .arg(&alert.group)
                    .arg(&alert.window)
                    .arg(alert.start)
                    .arg(&alert.json)
                    .arg(now_ms - retention_ms)
                    .arg(retention_ms)
                    .arg(now_ms.max(0))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(added == 1)
    }

    pub(super) async fn alerts_page(&self, pipeline: &str, cursor: &str, limit: usize) -> StoreResult<Page<AlertRecord>> {
        let key = self.keys(pipeline).alerts;
        let (entries, next_cursor) = self.xrange_page(&key, cursor, limit).await?;
        let mut items = Vec::with_capacity(entries.len());
        for e in &entries {
            let text = |name: &str| -> StoreResult<String> {
                e.get::<String>(name).ok_or_else(|| StoreError::Internal(format!("alert {} lacks `{name}`", e.id)))
            };
            items.push(AlertRecord {
                window: text("w")?,
                start: text("s")?.parse().map_err(|_| corrupt("alert start", &e.id))?,
                group: text("g")?,
                json: text("j")?,
            });
        }
        Ok(Page { items, next_cursor })
    }
}

#[async_trait]
impl Alerts for RedisStore {
    async fn put_alert(&self, pipeline: &str, alert: &AlertRecord, now_ms: i64, retention_ms: i64) -> StoreResult<bool> {
        self.alert(pipeline, alert, now_ms, retention_ms).await
    }

    async fn read_alerts(&self, pipeline: &str, cursor: &str, limit: usize) -> StoreResult<Page<AlertRecord>> {
        self.alerts_page(pipeline, cursor, limit).await
    }
}
