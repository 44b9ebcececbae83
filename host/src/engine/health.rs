//! Readiness and the catalog's survival: what `/readyz` answers, and what
//! the engine does when the store loses the catalog under it (a Redis that
//! restarted empty or was flushed).
//!
//! The store keeps a marker with its catalog (see `store::Health`). While
//! the marker this process adopted is gone, the catalog is *reset*: the
//! engine keeps its last known specs and running pipelines (the sync stops
//! nothing), logs it once, and `/readyz` answers `store_reset`. The reset
//! ends when the store holds every pipeline of the last known catalog again
//! (an operator ran `sluice catalog restore`): the engine adopts the
//! store's marker and follows the store again.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::{Engine, EngineError};
use crate::domain::StoreHealth;
use crate::internal_events::{emit, CatalogReset, CatalogRestored};
use crate::store::StoreError;

/// What `/readyz` answers when the store answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Serving: which store, and whether it keeps what it acknowledged
    /// across its own restart.
    Ready {
        /// `redis` or `embedded`.
        store: &'static str,
        /// False for a Redis with no persistence.
        durable: bool,
    },
    /// The catalog vanished under this process; it runs its last known
    /// pipelines until the catalog is restored.
    StoreReset,
}

impl Engine {
    /// Readiness for `/readyz`: the store's kind and durability, or the
    /// catalog reset; an error when the store does not answer.
    pub async fn readiness(&self) -> Result<Readiness, EngineError> {
        let health = self.check_catalog().await?;
        Ok(if health.catalog_intact { Readiness::Ready { store: health.kind, durable: health.durable } } else { Readiness::StoreReset })
    }

    /// Whether the catalog was found reset and not restored yet (the sync
    /// keeps checking while it is).
    pub(super) fn catalog_reset(&self) -> bool {
        self.catalog_reset.load(Ordering::Relaxed)
    }

    /// The store's health, `catalog_intact` as this engine sees it: a
    /// vanished marker is a reset until every pipeline this process knows
    /// is stored again, and then the store's marker is adopted. Logs a
    /// reset once, and its end.
    pub(super) async fn check_catalog(&self) -> Result<StoreHealth, StoreError> {
        let mut health = self.store.health().await?;
        if !health.catalog_intact {
            let stored: HashSet<String> = self.store.list_pipelines().await?.into_iter().map(|(id, _)| id).collect();
            let back = self.specs.read().keys().all(|id| stored.contains(id));
            if back {
                self.store.adopt_catalog().await?;
                health.catalog_intact = true;
            } else if !self.catalog_reset.swap(true, Ordering::Relaxed) {
                let kept: Vec<String> = self.pipelines.read().keys().cloned().collect();
                emit(CatalogReset { kept_pipelines: &kept });
            }
        }
        if health.catalog_intact && self.catalog_reset.swap(false, Ordering::Relaxed) {
            emit(CatalogRestored);
        }
        Ok(health)
    }
}
