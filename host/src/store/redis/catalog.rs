//! The catalog on Redis: plugins, pipeline specs (deleting a pipeline
//! deletes all its keys) and lookup tables, under `P:{_catalog}:`.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::*;
use crate::domain::{PluginVersion, PutPlugin};
use crate::store::{PipelineCatalog, PluginCatalog, TableCatalog};

#[async_trait]
impl PluginCatalog for RedisStore {
    async fn put_plugin(&self, name: &str, sha256: &str, bytes: &[u8], now_ms: i64) -> StoreResult<PutPlugin> {
        let (meta_key, sha_key, next_key, bytes_key) =
            (self.catalog("plugin-meta"), self.catalog("plugin-sha"), self.catalog("plugin-next"), self.catalog("plugin-bytes"));
        let (created, meta): (i64, String) = self
            .run(|mut c| async move {
                self.scripts
                    .put_plugin
                    .key(&meta_key)
                    .key(&sha_key)
                    .key(&next_key)
                    .key(&bytes_key)
                    .arg(name)
                    .arg(sha256)
                    .arg(bytes.len())
                    .arg(now_ms)
                    .arg(bytes)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let version: PluginVersion =
            serde_json::from_str(&meta).map_err(|e| StoreError::Internal(format!("bad plugin metadata: {e}")))?;
        Ok(PutPlugin { version, created: created == 1 })
    }

    async fn list_plugins(&self) -> StoreResult<Vec<PluginVersion>> {
        let key = self.catalog("plugin-meta");
        let all: Vec<String> = self.run(|mut c| async move { ::redis::cmd("HVALS").arg(&key).query_async(&mut c).await }).await?;
        let mut versions = all
            .iter()
            .map(|meta| serde_json::from_str::<PluginVersion>(meta))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Internal(format!("bad plugin metadata: {e}")))?;
        versions.sort_by(|a, b| a.name.cmp(&b.name).then(a.version.cmp(&b.version)));
        Ok(versions)
    }

    async fn plugin_bytes(&self, name: &str, version: u32) -> StoreResult<Option<Vec<u8>>> {
        let key = self.catalog("plugin-bytes");
        let field = format!("{name}/{version}");
        self.run(|mut c| async move { ::redis::cmd("HGET").arg(&key).arg(&field).query_async(&mut c).await }).await
    }

    async fn delete_plugin_version(&self, name: &str, version: u32) -> StoreResult<bool> {
        let (meta_key, sha_key, bytes_key) = (self.catalog("plugin-meta"), self.catalog("plugin-sha"), self.catalog("plugin-bytes"));
        let deleted: i64 = self
            .run(|mut c| async move {
                self.scripts
                    .delete_plugin
                    .key(&meta_key)
                    .key(&sha_key)
                    .key(&bytes_key)
                    .arg(name)
                    .arg(version)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(deleted == 1)
    }
}

#[async_trait]
impl PipelineCatalog for RedisStore {
    async fn put_pipeline(&self, id: &str, spec_json: &str) -> StoreResult<bool> {
        let (specs, version) = (self.catalog("pipelines"), self.catalog("pipelines-version"));
        let created: i64 = self
            .run(|mut c| async move {
                self.scripts.put_pipeline.key(&specs).key(&version).arg(id).arg(spec_json).invoke_async(&mut c).await
            })
            .await?;
        Ok(created == 1)
    }

    async fn get_pipeline(&self, id: &str) -> StoreResult<Option<String>> {
        let key = self.catalog("pipelines");
        self.run(|mut c| async move { ::redis::cmd("HGET").arg(&key).arg(id).query_async(&mut c).await }).await
    }

    async fn list_pipelines(&self) -> StoreResult<Vec<(String, String)>> {
        let key = self.catalog("pipelines");
        let all: BTreeMap<String, String> =
            self.run(|mut c| async move { ::redis::cmd("HGETALL").arg(&key).query_async(&mut c).await }).await?;
        Ok(all.into_iter().collect())
    }

    async fn delete_pipeline(&self, id: &str) -> StoreResult<bool> {
        let (specs, version) = (self.catalog("pipelines"), self.catalog("pipelines-version"));
        let existed: i64 = self
            .run(|mut c| async move {
                self.scripts.delete_pipeline.key(&specs).key(&version).arg(id).invoke_async(&mut c).await
            })
            .await?;
        // The pipeline's data lives in its own hash slot: a second step.
        let k = self.keys(id);
        let _: i64 = self
            .run(|mut c| async move {
                ::redis::cmd("UNLINK")
                    .arg(&k.queue)
                    .arg(&k.depth)
                    .arg(&k.bytes)
                    .arg(&k.counters)
                    .arg(&k.output)
                    .arg(&k.dlq)
                    .arg(&k.retry)
                    .arg(&k.clock)
                    .arg(&k.alerts)
                    .arg(&k.seen)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        self.delete_window_keys(id).await?;
        self.delete_keys_under(&self.keys(id).idempotency).await?;
        self.delete_sink_keys(id).await?;
        Ok(existed == 1)
    }

    async fn pipelines_version(&self) -> StoreResult<u64> {
        let key = self.catalog("pipelines-version");
        let v: Option<String> = self.run(|mut c| async move { ::redis::cmd("GET").arg(&key).query_async(&mut c).await }).await?;
        Ok(parse_u64(v))
    }
}

#[async_trait]
impl TableCatalog for RedisStore {
    async fn put_table(&self, name: &str, entries: &BTreeMap<String, String>) -> StoreResult<()> {
        let (tables, version) = (self.catalog("tables"), self.catalog("tables-version"));
        let json = to_json(entries)?;
        let _: () = self
            .run(|mut c| async move {
                ::redis::pipe().atomic().hset(&tables, name, &json).ignore().incr(&version, 1).ignore().query_async(&mut c).await
            })
            .await?;
        Ok(())
    }

    async fn get_table(&self, name: &str) -> StoreResult<Option<BTreeMap<String, String>>> {
        let key = self.catalog("tables");
        let json: Option<String> =
            self.run(|mut c| async move { ::redis::cmd("HGET").arg(&key).arg(name).query_async(&mut c).await }).await?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Internal(format!("bad table {name:?}: {e}"))))
            .transpose()
    }

    async fn list_tables(&self) -> StoreResult<Vec<(String, BTreeMap<String, String>)>> {
        let key = self.catalog("tables");
        let all: BTreeMap<String, String> =
            self.run(|mut c| async move { ::redis::cmd("HGETALL").arg(&key).query_async(&mut c).await }).await?;
        all.into_iter()
            .map(|(name, json)| match serde_json::from_str(&json) {
                Ok(table) => Ok((name, table)),
                Err(e) => Err(StoreError::Internal(format!("bad table {name:?}: {e}"))),
            })
            .collect()
    }

    async fn tables_version(&self) -> StoreResult<u64> {
        let key = self.catalog("tables-version");
        let v: Option<String> = self.run(|mut c| async move { ::redis::cmd("GET").arg(&key).query_async(&mut c).await }).await?;
        Ok(parse_u64(v))
    }
}
