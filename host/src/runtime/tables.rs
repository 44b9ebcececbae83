//! Lookup tables: owned by the host (the admin API fills them), read by
//! stages through `host.lookup`. The runtime only sees this trait; the engine
//! provides the implementation.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

/// Read-only access to the host's lookup tables.
pub trait LookupTables: Send + Sync {
    /// The value of `key` in `table`; `None` if either is absent.
    fn lookup(&self, table: &str, key: &str) -> Option<String>;
}

/// Tables in memory, replaced whole on update: readers never block writers
/// for long and always see a complete table.
#[derive(Default)]
pub struct MemoryTables {
    tables: RwLock<HashMap<String, Arc<HashMap<String, String>>>>,
}

impl MemoryTables {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces (or creates) a table.
    pub fn put(&self, name: &str, entries: HashMap<String, String>) {
        self.tables.write().insert(name.to_string(), Arc::new(entries));
    }

    /// A snapshot of a table.
    pub fn get(&self, name: &str) -> Option<Arc<HashMap<String, String>>> {
        self.tables.read().get(name).cloned()
    }
}

impl LookupTables for MemoryTables {
    fn lookup(&self, table: &str, key: &str) -> Option<String> {
        self.tables.read().get(table)?.get(key).cloned()
    }
}

/// No tables at all (for `sluice plugin test` without `--table`).
pub struct NoTables;

impl LookupTables for NoTables {
    fn lookup(&self, _table: &str, _key: &str) -> Option<String> {
        None
    }
}
