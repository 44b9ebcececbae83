//! Loading a plugin: check the bytes are a component of the stage world that
//! imports only what the host grants, compile it once per content hash (in
//! memory and on disk, the disk copy verified: see [`super::cache`]), and
//! pre-instantiate it.

use sha2::{Digest, Sha256};
use wasmtime::component::{types::ComponentItem, Component, InstancePre, Linker};
use wasmtime::Engine;

use super::cache::VerifiedCache;
use super::report;
use super::imports::import_allowed;
use super::sandbox::StoreState;

/// A compiled, validated plugin, ready to instantiate.
pub struct Plugin {
    /// Hex SHA-256 of the component bytes: the plugin's identity.
    pub sha256: String,
    /// Size of the component bytes.
    pub size: usize,
    pub(crate) pre: InstancePre<StoreState>,
    /// Whether calls go to its `process-packed` (exported, and the runtime
    /// prefers it or there is no `process`; see
    /// [`super::RuntimeConfig::packed_batches`]).
    pub(crate) packed: bool,
}

impl Plugin {
    /// Whether batches go to the component's `process-packed`.
    pub fn calls_packed(&self) -> bool {
        self.packed
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("sha256", &self.sha256).field("size", &self.size).finish()
    }
}

/// Why bytes were refused as a plugin. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("not a WebAssembly binary: the bytes do not start with \\0asm")]
    NotWasm,
    #[error("this is a core WebAssembly module, not a component: build the plugin for the wasm32-wasip2 target (cargo build --release --target wasm32-wasip2)")]
    CoreModule,
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    #[error("the plugin imports `{0}`, which Sluice does not grant (a stage may import only sluice:stage/host (@0.2.0, or @0.1.0) and the WASI 0.2 interfaces of wasi:cli, io, clocks, filesystem, random and sockets; a JavaScript stage built with componentize-js must disable its http and fetch-event features)")]
    ForbiddenImport(String),
    #[error("the plugin does not implement the sluice:stage world: {0}")]
    WrongWorld(String),
    #[error("internal error loading the plugin: {0:#}")]
    Internal(anyhow::Error),
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks the binary header before handing the bytes to the compiler, so the
/// common mistakes get a specific answer.
fn check_header(bytes: &[u8]) -> Result<(), PluginError> {
    if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
        return Err(PluginError::NotWasm);
    }
    // Core modules have version 1 (layer 0); components have layer 1.
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(PluginError::CoreModule);
    }
    Ok(())
}

pub(crate) fn compile(engine: &Engine, cache: Option<&VerifiedCache>, bytes: &[u8], sha256: &str) -> Result<Component, PluginError> {
    check_header(bytes)?;
    if let Some(cache) = cache {
        match cache.read(sha256) {
            Ok(None) => {}
            // SAFETY: these bytes are exactly the ones whose MAC verified: an
            // artifact this host serialized for this component with this
            // engine (wasmtime checks the engine again).
            Ok(Some(artifact)) => match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(component) => return Ok(component),
                Err(e) => report::cache_problem(&cache.artifact_path(sha256), "ignoring unusable compiled-plugin cache entry", &e.to_string()),
            },
            Err(why) => report::cache_rejected(&cache.artifact_path(sha256), &why.to_string()),
        }
    }
    let component = Component::new(engine, bytes).map_err(|e| PluginError::Invalid(format!("{e:#}")))?;
    if let Some(cache) = cache {
        let written = component.serialize().map_err(anyhow::Error::from).and_then(|artifact| cache.write(sha256, &artifact));
        if let Err(e) = written {
            report::cache_problem(&cache.artifact_path(sha256), "could not cache compiled plugin", &format!("{e:#}"));
        }
    }
    Ok(component)
}

/// Checks imports and exports, then pre-instantiates.
pub(crate) fn prepare(
    engine: &Engine,
    linker: &Linker<StoreState>,
    component: &Component,
    sha256: String,
    size: usize,
    prefer_packed: bool,
) -> Result<Plugin, PluginError> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        if !import_allowed(name) {
            return Err(PluginError::ForbiddenImport(name.to_string()));
        }
    }
    let mut exports = std::collections::HashMap::new();
    for (name, item) in ty.exports(engine) {
        exports.insert(name.to_string(), item);
    }
    let is_func = |name: &str| -> Result<bool, PluginError> {
        match exports.get(name).map(|export| &export.ty) {
            Some(ComponentItem::ComponentFunc(_)) => Ok(true),
            Some(_) => Err(PluginError::WrongWorld(format!("export `{name}` is not a function"))),
            None => Ok(false),
        }
    };
    if !is_func("init")? {
        return Err(PluginError::WrongWorld("it exports no `init` function".into()));
    }
    // sluice:stage@0.2.0 exports `process-packed`; 0.1.0 `process`, and
    // `process-packed` in its later builds.
    let (has_packed, has_list) = (is_func("process-packed")?, is_func("process")?);
    if !has_packed && !has_list {
        return Err(PluginError::WrongWorld("it exports no `process-packed` function (nor the `process` of sluice:stage@0.1.0)".into()));
    }
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| PluginError::WrongWorld(format!("its imports cannot be satisfied: {e:#}")))?;
    let packed = has_packed && (prefer_packed || !has_list);
    Ok(Plugin { sha256, size, pre, packed })
}
