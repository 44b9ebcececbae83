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
/// `CONFIG` gives none: see [`RedisStore::settings`]); on a cluster, taken
/// over every master: durable only if every master is, and an evicting
/// policy if any master has one.
struct Settings {
    appendonly: String,
    save: String,
    eviction_policy: String,
}

impl Settings {
    fn durable(&self) -> bool {
        self.appendonly == "yes" || !self.save.trim().is_empty()
    }
}

impl RedisStore {
    /// One setting on every master; `None` when Redis refuses (not when it
    /// does not answer).
    async fn config_get(&self, name: &'static str) -> StoreResult<Option<Vec<String>>> {
        let reply: StoreResult<Vec<(String, Value)>> = self
            .run(|mut c| async move {
                let cmd = ::redis::cmd("CONFIG").arg("GET").arg(name).clone();
                c.on_every_master(&cmd).await
            })
            .await;
        match reply {
            Ok(per_master) => {
                let mut values = Vec::with_capacity(per_master.len());
                for (node, value) in per_master {
                    // RESP2: [name, value].
                    let pair: Vec<String> = ::redis::from_owned_redis_value(value)
                        .map_err(|e| StoreError::Internal(format!("CONFIG GET {name} on {node}: {e}")))?;
                    match pair.into_iter().nth(1) {
                        Some(v) => values.push(v),
                        None => return Ok(None),
                    }
                }
                Ok(Some(values))
            }
            Err(StoreError::Internal(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The fewest replicas any master has connected now (`INFO
    /// replication`: `connected_slaves`), to warn at start when
    /// `--redis-wait-replicas` cannot be met.
    pub async fn fewest_replicas(&self) -> StoreResult<u32> {
        let per_master: Vec<(String, Value)> = self
            .run(|mut c| async move {
                let cmd = ::redis::cmd("INFO").arg("replication").clone();
                c.on_every_master(&cmd).await
            })
            .await?;
        let mut fewest = u32::MAX;
        for (node, reply) in per_master {
            let text: String =
                ::redis::from_owned_redis_value(reply).map_err(|e| StoreError::Internal(format!("INFO replication of {node}: {e}")))?;
            let connected = text.lines().find_map(|l| l.strip_prefix("connected_slaves:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            fewest = fewest.min(connected);
        }
        Ok(if fewest == u32::MAX { 0 } else { fewest })
    }

    /// The persistence and eviction settings (the weakest master's on a
    /// cluster); `None` when Redis refuses `CONFIG GET`.
    async fn settings(&self) -> StoreResult<Option<Settings>> {
        let (Some(appendonly), Some(save), Some(policies)) =
            (self.config_get("appendonly").await?, self.config_get("save").await?, self.config_get("maxmemory-policy").await?)
        else {
            return Ok(None);
        };
        let masters: Vec<Settings> = appendonly
            .into_iter()
            .zip(save)
            .zip(policies)
            .map(|((appendonly, save), eviction_policy)| Settings { appendonly, save, eviction_policy })
            .collect();
        // Persistence from a master that keeps nothing (if any), the policy
        // from one that evicts (if any).
        let persistence = masters.iter().find(|s| !s.durable()).or(masters.first());
        let policy = masters.iter().find(|s| s.eviction_policy != "noeviction").or(masters.first());
        Ok(persistence.zip(policy).map(|(p, e)| Settings {
            appendonly: p.appendonly.clone(),
            save: p.save.clone(),
            eviction_policy: e.eviction_policy.clone(),
        }))
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
                durable: s.durable(),
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
