//! The catalog on redb: plugins, pipeline specs (deleting a pipeline deletes
//! all its data) and lookup tables.

use std::collections::BTreeMap;

use async_trait::async_trait;
use redb::ReadableTable;

use super::windows::delete_window_data;
use super::*;
use crate::domain::{PluginVersion, PutPlugin};
use crate::store::{PipelineCatalog, PluginCatalog, TableCatalog};

#[async_trait]
impl PluginCatalog for EmbeddedStore {
    async fn put_plugin(&self, name: &str, sha256: &str, bytes: &[u8], now_ms: i64) -> StoreResult<PutPlugin> {
        let (name, sha256, bytes) = (name.to_string(), sha256.to_string(), bytes.to_vec());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            let put = {
                let mut metas = txn.open_table(PLUGIN_META).map_err(db_err)?;
                let mut shas = txn.open_table(PLUGIN_SHA).map_err(db_err)?;
                let existing = shas.get((name.as_str(), sha256.as_str())).map_err(db_err)?.map(|v| v.value());
                let existing = match existing {
                    Some(v) => metas.get((name.as_str(), v)).map_err(db_err)?.map(|m| m.value().to_vec()),
                    None => None,
                };
                if let Some(meta) = existing {
                    let version: PluginVersion = serde_json::from_slice(&meta).map_err(json_err)?;
                    return Ok(PutPlugin { version, created: false });
                }
                let mut next = txn.open_table(PLUGIN_NEXT).map_err(db_err)?;
                let v = next.get(name.as_str()).map_err(db_err)?.map(|v| v.value()).unwrap_or(0) + 1;
                next.insert(name.as_str(), v).map_err(db_err)?;
                let version =
                    PluginVersion { name: name.clone(), version: v, sha256: sha256.clone(), size: bytes.len() as u64, uploaded_at: now_ms };
                metas.insert((name.as_str(), v), to_json(&version)?.as_slice()).map_err(db_err)?;
                shas.insert((name.as_str(), sha256.as_str()), v).map_err(db_err)?;
                txn.open_table(PLUGIN_BYTES).map_err(db_err)?.insert((name.as_str(), v), bytes.as_slice()).map_err(db_err)?;
                PutPlugin { version, created: true }
            };
            txn.commit().map_err(db_err)?;
            Ok(put)
        })
        .await
    }

    async fn list_plugins(&self) -> StoreResult<Vec<PluginVersion>> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let metas = txn.open_table(PLUGIN_META).map_err(db_err)?;
            let mut out = Vec::new();
            for item in metas.iter().map_err(db_err)? {
                let (_, meta) = item.map_err(db_err)?;
                out.push(serde_json::from_slice::<PluginVersion>(meta.value()).map_err(json_err)?);
            }
            Ok(out)
        })
        .await
    }

    async fn plugin_bytes(&self, name: &str, version: u32) -> StoreResult<Option<Vec<u8>>> {
        let name = name.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(PLUGIN_BYTES).map_err(db_err)?;
            Ok(t.get((name.as_str(), version)).map_err(db_err)?.map(|b| b.value().to_vec()))
        })
        .await
    }

    async fn delete_plugin_version(&self, name: &str, version: u32) -> StoreResult<bool> {
        let name = name.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut metas = txn.open_table(PLUGIN_META).map_err(db_err)?;
                let Some(meta) = metas.remove((name.as_str(), version)).map_err(db_err)?.map(|m| m.value().to_vec()) else {
                    return Ok(false);
                };
                let meta: PluginVersion = serde_json::from_slice(&meta).map_err(json_err)?;
                let mut shas = txn.open_table(PLUGIN_SHA).map_err(db_err)?;
                let key = (name.as_str(), meta.sha256.as_str());
                if shas.get(key).map_err(db_err)?.map(|v| v.value()) == Some(version) {
                    shas.remove(key).map_err(db_err)?;
                }
                txn.open_table(PLUGIN_BYTES).map_err(db_err)?.remove((name.as_str(), version)).map_err(db_err)?;
            }
            txn.commit().map_err(db_err)?;
            Ok(true)
        })
        .await
    }
}

#[async_trait]
impl PipelineCatalog for EmbeddedStore {
    async fn put_pipeline(&self, id: &str, spec_json: &str) -> StoreResult<bool> {
        let (id, spec) = (id.to_string(), spec_json.to_string());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            let created = txn.open_table(PIPELINES).map_err(db_err)?.insert(id.as_str(), spec.as_str()).map_err(db_err)?.is_none();
            bump(&txn, "pipelines_version")?;
            txn.commit().map_err(db_err)?;
            Ok(created)
        })
        .await
    }

    async fn get_pipeline(&self, id: &str) -> StoreResult<Option<String>> {
        let id = id.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(PIPELINES).map_err(db_err)?;
            Ok(t.get(id.as_str()).map_err(db_err)?.map(|s| s.value().to_string()))
        })
        .await
    }

    async fn list_pipelines(&self) -> StoreResult<Vec<(String, String)>> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(PIPELINES).map_err(db_err)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(db_err)? {
                let (id, spec) = item.map_err(db_err)?;
                out.push((id.value().to_string(), spec.value().to_string()));
            }
            Ok(out)
        })
        .await
    }

    async fn delete_pipeline(&self, id: &str) -> StoreResult<bool> {
        let p = id.to_string();
        let existed = self
            .blocking(move |db| {
                let p = p.as_str();
                let txn = db.begin_write().map_err(db_err)?;
                let existed = txn.open_table(PIPELINES).map_err(db_err)?.remove(p).map_err(db_err)?.is_some();
                if existed {
                    bump(&txn, "pipelines_version")?;
                }
                for table in [QUEUE, OUTPUT, DLQ] {
                    txn.open_table(table).map_err(db_err)?.retain_in((p, 0)..=(p, u64::MAX), |_, _| false).map_err(db_err)?;
                }
                txn.open_table(OUTPUT_MARKS).map_err(db_err)?.retain_in((p, i64::MIN)..=(p, i64::MAX), |_, _| false).map_err(db_err)?;
                txn.open_table(RETRY)
                    .map_err(db_err)?
                    .retain_in((p, i64::MIN, 0)..=(p, i64::MAX, u64::MAX), |_, _| false)
                    .map_err(db_err)?;
                {
                    let mut counters = txn.open_table(COUNTERS).map_err(db_err)?;
                    for name in COUNTER_NAMES {
                        counters.remove((p, name)).map_err(db_err)?;
                    }
                }
                delete_window_data(&txn, p)?;
                super::ingest_once::delete_all(&txn, p)?;
                super::sinks::delete_all(&txn, p)?;
                txn.commit().map_err(db_err)?;
                Ok(existed)
            })
            .await?;
        let state = self.state(id);
        state.mem.lock().pending.clear();
        state.gate.lock().until = 0;
        state.sink_leases.lock().clear();
        Ok(existed)
    }

    async fn pipelines_version(&self) -> StoreResult<u64> {
        self.blocking(|db| read_u64(db, "pipelines_version")).await
    }
}

#[async_trait]
impl TableCatalog for EmbeddedStore {
    async fn put_table(&self, name: &str, entries: &BTreeMap<String, String>) -> StoreResult<()> {
        let name = name.to_string();
        let json = serde_json::to_string(entries).map_err(|e| StoreError::Internal(format!("cannot serialize: {e}")))?;
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            txn.open_table(TABLES).map_err(db_err)?.insert(name.as_str(), json.as_str()).map_err(db_err)?;
            bump(&txn, "tables_version")?;
            txn.commit().map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn get_table(&self, name: &str) -> StoreResult<Option<BTreeMap<String, String>>> {
        let name = name.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(TABLES).map_err(db_err)?;
            let Some(json) = t.get(name.as_str()).map_err(db_err)? else { return Ok(None) };
            Ok(Some(serde_json::from_str(json.value()).map_err(json_err)?))
        })
        .await
    }

    async fn list_tables(&self) -> StoreResult<Vec<(String, BTreeMap<String, String>)>> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(TABLES).map_err(db_err)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(db_err)? {
                let (name, json) = item.map_err(db_err)?;
                out.push((name.value().to_string(), serde_json::from_str(json.value()).map_err(json_err)?));
            }
            Ok(out)
        })
        .await
    }

    async fn tables_version(&self) -> StoreResult<u64> {
        self.blocking(|db| read_u64(db, "tables_version")).await
    }
}
