//! What the stores report about themselves: their data (a bad pane row),
//! their durability, and a catalog that vanished or came back.

use super::InternalEvent;

/// A stored pane row could not be read (not a number where one belongs, a
/// sum that is not finite): it is read as missing, so one bad row cannot
/// make every later read of the window fail.
pub struct BadPaneRowSkipped<'a> {
    pub window: &'a str,
    pub pane: i64,
    pub group: &'a str,
    pub reason: &'a str,
}

impl InternalEvent for BadPaneRowSkipped<'_> {
    fn emit(self) {
        tracing::error!(
            target: "sluice::store",
            window = self.window,
            pane = self.pane,
            group = self.group,
            "stored pane row skipped (read as missing): {}",
            self.reason
        );
        metrics::counter!("sluice_store_bad_pane_rows_total").increment(1);
    }
}

/// At start: the store does not keep what it acknowledges across its own
/// restart (a Redis with neither AOF nor RDB snapshots). Everything works,
/// but a Redis restart loses queues, DLQs, windows and the catalog.
pub struct StoreNotDurable<'a> {
    pub store: &'a str,
    /// The store's persistence settings as it reported them.
    pub persistence: &'a str,
}

impl InternalEvent for StoreNotDurable<'_> {
    fn emit(self) {
        tracing::warn!(target: "sluice::store", store = self.store, persistence = self.persistence,
            "the store keeps nothing on disk: a Redis restart loses every queue, DLQ, window and the catalog \
             (turn on AOF: `CONFIG SET appendonly yes` and `appendonly yes` in redis.conf); /readyz reports durable: false");
    }
}

/// `--redis-wait-replicas` asks for more replicas than a master has now:
/// every enqueue and completion on that master will be refused (503 on
/// ingest) until enough replicas are connected. Emitted at start.
pub struct TooFewReplicas<'a> {
    pub store: &'a str,
    pub wanted: u32,
    /// The fewest replicas any master has.
    pub fewest: u32,
}

impl InternalEvent for TooFewReplicas<'_> {
    fn emit(self) {
        tracing::warn!(target: "sluice::store", store = self.store, wanted = self.wanted, fewest = self.fewest,
            "--redis-wait-replicas asks for more replicas than a Redis master has connected: ingest answers 503 and \
             completions are retried on that master until enough replicas are connected");
    }
}

/// The catalog this process knew vanished from the store (a Redis that
/// restarted empty or was flushed): emitted once per reset. The process
/// keeps running its last known pipelines; `/readyz` answers `store_reset`
/// until the catalog is back (`sluice catalog restore`).
pub struct CatalogReset<'a> {
    /// Pipelines this process keeps running from its last known catalog.
    pub kept_pipelines: &'a [String],
}

impl InternalEvent for CatalogReset<'_> {
    fn emit(self) {
        tracing::error!(target: "sluice::store", kept_pipelines = ?self.kept_pipelines,
            "the store lost its catalog (a Redis restarted empty or flushed?): keeping the last known pipelines running; \
             restore it with `sluice catalog restore DIR` (from a `sluice catalog export`); /readyz answers store_reset until then");
        metrics::counter!("sluice_store_resets_total").increment(1);
    }
}

/// The store holds every pipeline of the last known catalog again (after a
/// reset): the process follows the store again.
pub struct CatalogRestored;

impl InternalEvent for CatalogRestored {
    fn emit(self) {
        tracing::info!(target: "sluice::store", "the store's catalog is back: following it again");
    }
}
