//! Catalog records: what the store answers about uploaded plugins.

use serde::{Deserialize, Serialize};

/// One stored plugin version (API.md's plugin listing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginVersion {
    /// The plugin's name (`[a-z0-9-]`).
    pub name: String,
    /// 1, 2, ... per name; never reused.
    pub version: u32,
    /// Of the component bytes; the same bytes uploaded again answer this version.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// ms since the epoch.
    pub uploaded_at: i64,
}

/// Where an uploaded plugin landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutPlugin {
    /// The version stored (or found).
    pub version: PluginVersion,
    /// false when identical bytes were already stored under this name.
    pub created: bool,
}
