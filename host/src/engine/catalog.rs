//! The catalog as the API asks for it: plugins (validated and compiled
//! before they are stored, unloaded when deleted), pipeline specs (checked,
//! resolved, built and stored; cached typed) and lookup tables.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::spec::PipelineSpec;
use super::{Engine, EngineError, KnownSpec};
use crate::domain::{PluginVersion, PutPlugin};
use crate::domain::now_ms;
use crate::runtime::sha256_hex;
use crate::window::WindowSpec;

impl Engine {
    /// Stores `bytes` as the next version of plugin `name` once the runtime
    /// accepts them; identical bytes already stored under `name` are
    /// answered at once, without compiling them again.
    pub async fn upload_plugin(&self, name: &str, bytes: Vec<u8>) -> Result<PutPlugin, EngineError> {
        let sha256 = sha256_hex(&bytes);
        let existing = self.store.list_plugins().await?.into_iter().find(|v| v.name == name && v.sha256 == sha256);
        if let Some(version) = existing {
            return Ok(PutPlugin { version, created: false });
        }
        let runtime = self.runtime.clone();
        let (bytes, checked) = tokio::task::spawn_blocking(move || {
            let checked = runtime.load(&bytes).map(|_| ()).map_err(|e| e.to_string());
            (bytes, checked)
        })
        .await
        .map_err(|e| EngineError::Unreadable(format!("compiling the plugin failed unexpectedly: {e}")))?;
        checked.map_err(EngineError::InvalidPlugin)?;
        Ok(self.store.put_plugin(name, &sha256, &bytes, now_ms()).await?)
    }

    /// Every version of every plugin, by name then version.
    pub async fn plugins(&self) -> Result<Vec<PluginVersion>, EngineError> {
        Ok(self.store.list_plugins().await?)
    }

    /// The versions of plugin `name` (404 when there are none).
    pub async fn plugin_versions(&self, name: &str) -> Result<Vec<PluginVersion>, EngineError> {
        let versions: Vec<PluginVersion> = self.store.list_plugins().await?.into_iter().filter(|v| v.name == name).collect();
        if versions.is_empty() {
            return Err(EngineError::NotFound(format!("no plugin `{name}`")));
        }
        Ok(versions)
    }

    /// Deletes a plugin version no stored pipeline uses, and frees its
    /// compiled code unless the same bytes are stored under another version.
    pub async fn delete_plugin_version(&self, name: &str, version: u32) -> Result<(), EngineError> {
        for (id, spec) in self.pipeline_specs().await? {
            if spec.is_some_and(|s| s.stages.iter().any(|st| st.plugin == name && st.version == Some(version))) {
                return Err(EngineError::InUse(format!("plugin `{name}` version {version} is used by pipeline `{id}`")));
            }
        }
        let not_found = || EngineError::NotFound(format!("no plugin `{name}` version {version}"));
        let versions = self.store.list_plugins().await?;
        let sha256 = versions.iter().find(|v| v.name == name && v.version == version).map(|v| v.sha256.clone()).ok_or_else(not_found)?;
        if !self.store.delete_plugin_version(name, version).await? {
            return Err(not_found());
        }
        if !versions.iter().any(|v| v.sha256 == sha256 && !(v.name == name && v.version == version)) {
            self.runtime.unload(&sha256);
        }
        Ok(())
    }

    /// Validates `body`, resolves plugin versions, initialises every stage
    /// (a plugin rejecting its config refuses the spec), stores it and swaps
    /// it in. Answers whether it was created (vs replaced) and the stored spec.
    pub async fn put_pipeline(self: &Arc<Self>, id: &str, body: &[u8]) -> Result<(bool, Arc<PipelineSpec>), EngineError> {
        let mut spec = PipelineSpec::parse(body).map_err(EngineError::InvalidSpec)?;
        // Secrets come from this process's environment: a name that is not set is refused now.
        for (i, sink) in spec.sinks.iter().enumerate() {
            if let Some(missing) = sink.missing_env().first() {
                return Err(EngineError::InvalidSpec(format!(
                    "invalid pipeline spec at `sinks[{i}]` ({}): environment variable {missing} is not set in the server's environment",
                    sink.name
                )));
            }
            // Likewise a CA file this process cannot read.
            if let Some(Err(why)) = sink.ca_file.as_deref().map(crate::sinks::http::load_ca_file) {
                return Err(EngineError::InvalidSpec(format!("invalid pipeline spec at `sinks[{i}].ca_file`: {why}")));
            }
        }
        let plugins = self.store.list_plugins().await?;
        for (i, stage) in spec.stages.iter_mut().enumerate() {
            let versions: Vec<u32> = plugins.iter().filter(|p| p.name == stage.plugin).map(|p| p.version).collect();
            match stage.version {
                Some(v) if versions.contains(&v) => {}
                Some(v) => {
                    return Err(EngineError::InvalidSpec(format!("stages[{i}]: plugin `{}` has no version {v}", stage.plugin)));
                }
                None => {
                    let latest = versions.iter().max().ok_or_else(|| {
                        EngineError::InvalidSpec(format!(
                            "stages[{i}]: unknown plugin `{}` (upload it with PUT /v1/plugins/{})",
                            stage.plugin, stage.plugin
                        ))
                    })?;
                    stage.version = Some(*latest);
                }
            }
        }
        if let Some(stored) = self.store.get_pipeline(id).await? {
            if let Ok(stored) = self.known_spec(id, stored) {
                check_window_changes(&stored, &spec)?;
            }
        }
        let spec = Arc::new(spec);
        let pipeline = self.build(id, spec.clone()).await?;
        let json = serde_json::to_string(spec.as_ref()).map_err(|e| EngineError::InvalidSpec(format!("the spec cannot be stored: {e}")))?;
        let created = self.store.put_pipeline(id, &json).await?;
        self.specs.write().insert(id.to_string(), KnownSpec { json, spec: Ok(spec.clone()) });
        self.install(pipeline);
        Ok((created, spec))
    }

    /// The stored spec of pipeline `id` (404 if there is none); while the
    /// store lost its catalog, the spec of a pipeline this process still
    /// runs from its last known catalog.
    pub async fn pipeline_spec(&self, id: &str) -> Result<Arc<PipelineSpec>, EngineError> {
        match self.store.get_pipeline(id).await? {
            Some(json) => self.known_spec(id, json),
            None => match self.running(id).filter(|_| self.catalog_reset()) {
                Some(kept) => Ok(kept.spec.clone()),
                None => Err(EngineError::NotFound(format!("no pipeline `{id}`"))),
            },
        }
    }

    /// Every stored pipeline, by id, with its spec (`None`: stored text this
    /// process cannot read).
    pub async fn pipeline_specs(&self) -> Result<Vec<(String, Option<Arc<PipelineSpec>>)>, EngineError> {
        let stored = self.store.list_pipelines().await?;
        Ok(stored.into_iter().map(|(id, json)| { let spec = self.known_spec(&id, json).ok(); (id, spec) }).collect())
    }

    /// Stops the pipeline here and deletes it (and its data) from the store.
    pub async fn delete_pipeline(&self, id: &str) -> Result<(), EngineError> {
        self.stop(id).await;
        self.specs.write().remove(id);
        if self.store.delete_pipeline(id).await? {
            Ok(())
        } else {
            Err(EngineError::NotFound(format!("no pipeline `{id}`")))
        }
    }

    /// Replaces a lookup table, here at once and elsewhere within a sync interval.
    pub async fn put_table(&self, name: &str, entries: BTreeMap<String, String>) -> Result<(), EngineError> {
        self.store.put_table(name, &entries).await?;
        self.tables.put(name, entries.into_iter().collect());
        Ok(())
    }

    /// The component bytes of plugin `name` version `version` (404 if there
    /// is no such version): what `sluice catalog export` keeps.
    pub async fn plugin_wasm(&self, name: &str, version: u32) -> Result<Vec<u8>, EngineError> {
        self.store.plugin_bytes(name, version).await?.ok_or_else(|| EngineError::NotFound(format!("no plugin `{name}` version {version}")))
    }

    /// Every lookup table's name and size, by name (to list them, e.g. for
    /// `sluice catalog export`).
    pub async fn table_sizes(&self) -> Result<Vec<(String, usize)>, EngineError> {
        let mut tables: Vec<(String, usize)> = self.store.list_tables().await?.into_iter().map(|(name, t)| (name, t.len())).collect();
        tables.sort();
        Ok(tables)
    }

    /// A lookup table as stored (404 if there is none).
    pub async fn table(&self, name: &str) -> Result<BTreeMap<String, String>, EngineError> {
        self.store.get_table(name).await?.ok_or_else(|| EngineError::NotFound(format!("no table `{name}`")))
    }
}

/// A window kept under the same name must keep its shape, grouping and
/// aggregates (its stored panes were built with them); lateness, retention
/// and the spike rule may change. A new name starts a fresh window.
fn check_window_changes(stored: &PipelineSpec, new: &PipelineSpec) -> Result<(), EngineError> {
    for (i, window) in new.windows.iter().enumerate() {
        let Some(old) = stored.windows.iter().find(|w| w.name == window.name) else { continue };
        let shape = |w: &WindowSpec| (w.kind, w.size_ms, w.slide_ms, w.gap_ms, w.group_by.clone(), w.aggregates.clone());
        if shape(old) != shape(window) {
            return Err(EngineError::InvalidSpec(format!(
                "invalid pipeline spec at `windows[{i}]`: window `{}` already exists with another kind, size, slide, gap, \
                 group_by or aggregates; give the changed window a new name (its state starts fresh)",
                window.name
            )));
        }
    }
    Ok(())
}
