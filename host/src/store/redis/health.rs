//! What Redis keeps and whether the catalog is still there: `PING`, the
//! persistence settings (`appendonly`, `save`), `maxmemory-policy`, and a
//! marker key under the catalog's hash tag (`P:{_catalog}:marker`, a random
//! token written when the store is first used). A Redis that restarted
//! empty or was flushed has no marker (or another process's new one): the
//! catalog this process knew vanished under it.

use async_trait::async_trait;

use super::*;
use crate::domain::StoreHealth;

/// Redis's settings as read with `CONFIG GET` (a managed Redis that renames
/// `CONFIG` gives none: see [`RedisStore::settings`]).
struct Settings {
    appendonly: String,
    save: String,
    eviction_policy: String,
}

impl RedisStore {
    /// One setting; `None` when Redis refuses (not when it does not answer).
    async fn config_get(&self, name: &'static str) -> StoreResult<Option<String>> {
        let reply: StoreResult<Vec<String>> =
            self.run(|mut c| async move { ::redis::cmd("CONFIG").arg("GET").arg(name).query_async(&mut c).await }).await;
        match reply {
            // RESP2: [name, value].
            Ok(pair) => Ok(pair.into_iter().nth(1)),
            Err(StoreError::Internal(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The persistence and eviction settings; `None` when Redis refuses
    /// `CONFIG GET`.
    async fn settings(&self) -> StoreResult<Option<Settings>> {
        let (Some(appendonly), Some(save), Some(eviction_policy)) =
            (self.config_get("appendonly").await?, self.config_get("save").await?, self.config_get("maxmemory-policy").await?)
        else {
            return Ok(None);
        };
        Ok(Some(Settings { appendonly, save, eviction_policy }))
    }
}

#[async_trait]
impl Health for RedisStore {
    async fn ping(&self) -> StoreResult<()> {
        let _: String = self.run(|mut c| async move { ::redis::cmd("PING").query_async(&mut c).await }).await?;
        Ok(())
    }

    async fn health(&self) -> StoreResult<StoreHealth> {
        let key = self.catalog("marker");
        let marker: Option<String> = self.run(|mut c| async move { ::redis::cmd("GET").arg(&key).query_async(&mut c).await }).await?;
        let catalog_intact = marker.is_some() && *self.catalog_token.lock() == marker;
        let health = match self.settings().await? {
            Some(s) => StoreHealth {
                kind: "redis",
                durable: s.appendonly == "yes" || !s.save.trim().is_empty(),
                persistence: format!("appendonly={} save={:?}", s.appendonly, s.save),
                eviction_policy: Some(s.eviction_policy),
                catalog_intact,
            },
            None => StoreHealth {
                kind: "redis",
                durable: false,
                persistence: "unknown: Redis refused CONFIG GET".into(),
                eviction_policy: None,
                catalog_intact,
            },
        };
        Ok(health)
    }

    async fn adopt_catalog(&self) -> StoreResult<()> {
        let key = self.catalog("marker");
        let fresh = uuid::Uuid::now_v7().simple().to_string();
        let token: Option<String> = self
            .run(|mut c| async move {
                let _: Option<String> = ::redis::cmd("SET").arg(&key).arg(&fresh).arg("NX").query_async(&mut c).await?;
                ::redis::cmd("GET").arg(&key).query_async(&mut c).await
            })
            .await?;
        *self.catalog_token.lock() = token;
        Ok(())
    }
}
