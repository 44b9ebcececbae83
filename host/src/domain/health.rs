//! What a store says about itself: which backend, whether it keeps what it
//! acknowledged across its own restart, whether it may evict keys, and
//! whether the catalog this process started with is still there.

/// A store's answer to a health probe (`/readyz`, the start-up check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHealth {
    /// `redis` or `embedded` (API.md's `/readyz` `store`).
    pub kind: &'static str,
    /// The store keeps what it acknowledged across its own restart (false
    /// for a Redis with neither AOF nor RDB snapshots, or whose settings
    /// cannot be read).
    pub durable: bool,
    /// How the store persists, in its own words (e.g. `appendonly=no
    /// save=""`), for the log.
    pub persistence: String,
    /// Redis's `maxmemory-policy` (`None`: not a Redis, or unreadable).
    pub eviction_policy: Option<String>,
    /// The catalog this process adopted is still there: false when the
    /// store lost it (a Redis restarted empty, flushed, or another catalog
    /// written since).
    pub catalog_intact: bool,
}

impl StoreHealth {
    /// Whether the store may drop keys on its own under memory pressure
    /// (anything but Redis's `noeviction`): queues, counters, the DLQ or the
    /// catalog could vanish silently, so the server refuses it.
    pub fn evicting(&self) -> bool {
        self.eviction_policy.as_deref().is_some_and(|policy| policy != "noeviction")
    }
}
