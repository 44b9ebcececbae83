//! The catalog capabilities: plugins, pipeline specs, lookup tables.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::{PluginVersion, PutPlugin};

/// Uploaded plugin components, by name and version.
#[async_trait]
pub trait PluginCatalog: Send + Sync {
    /// Stores a plugin's bytes as the next version of `name`, unless the same
    /// bytes (same `sha256`) are already a version of it: then answers that.
    async fn put_plugin(&self, name: &str, sha256: &str, bytes: &[u8], now_ms: i64) -> StoreResult<PutPlugin>;
    /// Every version of every plugin, by name then version.
    async fn list_plugins(&self) -> StoreResult<Vec<PluginVersion>>;
    /// The component bytes of one version, if stored.
    async fn plugin_bytes(&self, name: &str, version: u32) -> StoreResult<Option<Vec<u8>>>;
    /// false if there was no such version.
    async fn delete_plugin_version(&self, name: &str, version: u32) -> StoreResult<bool>;
}

/// Pipeline specs, and deleting a pipeline with all its data.
#[async_trait]
pub trait PipelineCatalog: Send + Sync {
    /// Stores a pipeline spec (JSON text); true if it was created, false if replaced.
    async fn put_pipeline(&self, id: &str, spec_json: &str) -> StoreResult<bool>;
    /// The spec JSON of one pipeline, if stored.
    async fn get_pipeline(&self, id: &str) -> StoreResult<Option<String>>;
    /// (id, spec JSON), by id.
    async fn list_pipelines(&self) -> StoreResult<Vec<(String, String)>>;
    /// Deletes the spec and all of the pipeline's data; false if unknown.
    async fn delete_pipeline(&self, id: &str) -> StoreResult<bool>;
    /// A number that changes whenever any pipeline spec changes (engines in
    /// other processes poll it to pick up new specs).
    async fn pipelines_version(&self) -> StoreResult<u64>;
}

/// Lookup tables stages read (`lookup` in the WIT world).
#[async_trait]
pub trait TableCatalog: Send + Sync {
    /// Replaces a lookup table whole.
    async fn put_table(&self, name: &str, entries: &BTreeMap<String, String>) -> StoreResult<()>;
    /// One table's entries, if stored.
    async fn get_table(&self, name: &str) -> StoreResult<Option<BTreeMap<String, String>>>;
    /// Every table with its entries, by name.
    async fn list_tables(&self) -> StoreResult<Vec<(String, BTreeMap<String, String>)>>;
    /// A number that changes whenever any table changes.
    async fn tables_version(&self) -> StoreResult<u64>;
}
