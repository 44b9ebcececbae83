//! `sluice catalog export DIR` / `sluice catalog restore DIR`: a running
//! server's catalog (plugins, pipeline specs, lookup tables) as plain files,
//! so it can be kept in version control and put back, e.g. into a Redis that
//! restarted empty (`/readyz` answers `store_reset` until then).
//!
//! Talks to the server over its HTTP admin API only. The layout of `DIR`:
//!
//! | path | what |
//! | --- | --- |
//! | `plugins/<name>/<version>.wasm` | the component bytes |
//! | `plugins/<name>/<version>.json` | `{"name", "version", "sha256", "size", "uploaded_at"}` |
//! | `pipelines/<id>.json` | the stored spec (stage versions resolved) |
//! | `tables/<name>.json` | the table: a JSON object of strings |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::{Api, ServerArgs};
use crate::runtime::sha256_hex;

/// `catalog export` / `catalog restore`.
#[derive(clap::Subcommand, Debug)]
pub enum CatalogCommand {
    /// Write the server's plugins, pipeline specs and tables into DIR (its
    /// `plugins/`, `pipelines/` and `tables/` are replaced).
    Export {
        /// The directory to write (made if missing).
        dir: PathBuf,
    },
    /// Upload DIR's plugins (keeping their version numbers), then tables,
    /// then pipelines to the server.
    Restore {
        /// A directory written by `sluice catalog export`.
        dir: PathBuf,
    },
}

/// One plugin version's metadata, as the API lists it and the export keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PluginMeta {
    name: String,
    version: u32,
    sha256: String,
    size: u64,
    #[serde(default)]
    uploaded_at: Value,
}

/// Runs a catalog command; the answer is the exit code.
pub fn run(command: CatalogCommand, server: &ServerArgs) -> anyhow::Result<i32> {
    // Uploads compile the plugin before they answer: allow for it.
    let api = Api::new(server, Duration::from_secs(300))?;
    match command {
        CatalogCommand::Export { dir } => export(&api, &dir),
        CatalogCommand::Restore { dir } => restore(&api, &dir),
    }?;
    Ok(0)
}

/// What the catalog needs of the server beyond [`Api`]'s basics.
trait PluginVersions {
    /// The server's versions of plugin `name` (none on 404).
    fn plugin_versions(&self, name: &str) -> anyhow::Result<Vec<PluginMeta>>;
}

impl PluginVersions for Api {
    fn plugin_versions(&self, name: &str) -> anyhow::Result<Vec<PluginMeta>> {
        let path = format!("/v1/plugins/{name}");
        let what = format!("GET {path}");
        let Some(entry) = self.json_opt(&path)? else {
            return Ok(Vec::new());
        };
        let versions = entry.get("versions").and_then(Value::as_array).with_context(|| format!("{what}: the answer lists no versions"))?;
        versions
            .iter()
            .map(|v| {
                let mut v = v.clone();
                v["name"] = Value::String(name.to_string());
                serde_json::from_value(v).with_context(|| format!("{what}: unexpected answer"))
            })
            .collect()
    }
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn pretty(value: &impl Serialize) -> anyhow::Result<Vec<u8>> {
    let mut text = serde_json::to_vec_pretty(value)?;
    text.push(b'\n');
    Ok(text)
}

fn export(api: &Api, dir: &Path) -> anyhow::Result<()> {
    #[derive(Deserialize)]
    struct Plugins {
        plugins: Vec<Named>,
    }
    #[derive(Deserialize)]
    struct Named {
        name: String,
    }
    #[derive(Deserialize)]
    struct Pipelines {
        pipelines: Vec<IdSpec>,
    }
    #[derive(Deserialize)]
    struct IdSpec {
        id: String,
        spec: Value,
    }
    #[derive(Deserialize)]
    struct Tables {
        tables: Vec<Named>,
    }
    // Read everything first: nothing in DIR changes if the server fails us.
    let mut plugins = Vec::new();
    for named in api.json::<Plugins>("/v1/plugins")?.plugins {
        for meta in api.plugin_versions(&named.name)? {
            let bytes = api.bytes(&format!("/v1/plugins/{}/versions/{}/wasm", meta.name, meta.version))?;
            if sha256_hex(&bytes) != meta.sha256 {
                bail!("plugin `{}` version {}: the bytes downloaded do not match its sha256 {}", meta.name, meta.version, meta.sha256);
            }
            plugins.push((meta, bytes));
        }
    }
    let pipelines = api.json::<Pipelines>("/v1/pipelines")?.pipelines;
    let mut tables = Vec::new();
    for named in api.json::<Tables>("/v1/tables")?.tables {
        let table: BTreeMap<String, String> = api.json(&format!("/v1/tables/{}", named.name))?;
        tables.push((named.name, table));
    }

    for sub in ["plugins", "pipelines", "tables"] {
        let path = dir.join(sub);
        if path.exists() {
            std::fs::remove_dir_all(&path).with_context(|| format!("clearing {}", path.display()))?;
        }
    }
    for (meta, bytes) in &plugins {
        let base = dir.join("plugins").join(&meta.name);
        write(&base.join(format!("{}.wasm", meta.version)), bytes)?;
        write(&base.join(format!("{}.json", meta.version)), &pretty(meta)?)?;
        println!("plugin {} version {} ({} bytes)", meta.name, meta.version, bytes.len());
    }
    for p in &pipelines {
        write(&dir.join("pipelines").join(format!("{}.json", p.id)), &pretty(&p.spec)?)?;
        println!("pipeline {}", p.id);
    }
    for (name, table) in &tables {
        write(&dir.join("tables").join(format!("{name}.json")), &pretty(table)?)?;
        println!("table {name} ({} entries)", table.len());
    }
    println!(
        "exported {} plugin versions, {} pipelines, {} tables from {} into {}",
        plugins.len(),
        pipelines.len(),
        tables.len(),
        api.base,
        dir.display()
    );
    Ok(())
}

/// The `.json` (or `.wasm`) files of `dir`, by name; none if it is missing.
fn files(dir: &Path, ext: &str) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry.with_context(|| format!("reading {}", dir.display()))?.path();
        if path.extension().is_some_and(|e| e == ext) {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

fn stem(path: &Path) -> anyhow::Result<String> {
    path.file_stem().and_then(|s| s.to_str()).map(str::to_string).with_context(|| format!("{}: not a usable file name", path.display()))
}

/// Exported plugin versions: by name, then version, with their bytes.
type ExportedPlugins = BTreeMap<String, BTreeMap<u32, (PluginMeta, Vec<u8>)>>;

/// The plugin versions kept in `DIR/plugins`.
fn read_plugins(dir: &Path) -> anyhow::Result<ExportedPlugins> {
    let mut plugins = ExportedPlugins::new();
    let root = dir.join("plugins");
    if !root.exists() {
        return Ok(plugins);
    }
    for entry in std::fs::read_dir(&root).with_context(|| format!("reading {}", root.display()))? {
        let plugin_dir = entry.with_context(|| format!("reading {}", root.display()))?.path();
        if !plugin_dir.is_dir() {
            continue;
        }
        for meta_path in files(&plugin_dir, "json")? {
            let text = std::fs::read(&meta_path).with_context(|| format!("reading {}", meta_path.display()))?;
            let meta: PluginMeta = serde_json::from_slice(&text).with_context(|| format!("{} is not plugin metadata", meta_path.display()))?;
            let wasm_path = meta_path.with_extension("wasm");
            let bytes = std::fs::read(&wasm_path).with_context(|| format!("reading {}", wasm_path.display()))?;
            if sha256_hex(&bytes) != meta.sha256 {
                bail!("{}: its sha256 is not the {} its metadata names", wasm_path.display(), meta.sha256);
            }
            plugins.entry(meta.name.clone()).or_default().insert(meta.version, (meta, bytes));
        }
    }
    Ok(plugins)
}

/// Which exported plugin versions to upload, in order (those the server has
/// already, with the same bytes, are skipped). Checks up front that every
/// version can be reproduced, so a restore that cannot be done uploads
/// nothing.
fn plan_plugins<'a>(api: &Api, plugins: &'a ExportedPlugins) -> anyhow::Result<(Vec<(&'a str, u32, &'a [u8])>, usize)> {
    let (mut upload, mut present) = (Vec::new(), 0);
    for (name, versions) in plugins {
        let on_server: BTreeMap<u32, PluginMeta> = api.plugin_versions(name)?.into_iter().map(|m| (m.version, m)).collect();
        // Versions count up per name and are never reused: the server hands
        // out at least its highest version + 1 next, one at a time.
        let mut next = on_server.keys().max().copied().unwrap_or(0) + 1;
        for (version, (meta, bytes)) in versions {
            if let Some(there) = on_server.get(version) {
                if there.sha256 != meta.sha256 {
                    bail!(
                        "plugin `{name}` version {version}: the server already has other bytes under this version \
                         (sha256 {} there, {} here); restore into a server without plugin `{name}`",
                        there.sha256,
                        meta.sha256
                    );
                }
                println!("plugin {name} version {version}: already there");
                present += 1;
                continue;
            }
            if *version != next {
                bail!(
                    "plugin `{name}` version {version} cannot be reproduced: the next version the server can hand out is {next} \
                     at best (it has versions {:?} of `{name}`, and the export has no version {next}); restore into a server \
                     without plugin `{name}`, or re-export after uploading the versions in between",
                    on_server.keys().collect::<Vec<_>>()
                );
            }
            next += 1;
            upload.push((name.as_str(), *version, bytes.as_slice()));
        }
    }
    Ok((upload, present))
}

fn restore(api: &Api, dir: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(dir.is_dir(), "{} is not a directory (write one with `sluice catalog export`)", dir.display());
    let plugins = read_plugins(dir)?;
    let (upload, present) = plan_plugins(api, &plugins)?;
    for (name, version, bytes) in &upload {
        let answer = api.put(&format!("/v1/plugins/{name}"), "application/wasm", bytes.to_vec())?;
        let got = answer.get("version").and_then(Value::as_u64).unwrap_or(0);
        if got != u64::from(*version) {
            bail!(
                "plugin `{name}` version {version} came back as version {got}: the server handed out versions of `{name}` \
                 before that it no longer has (deleted); restore into a server without plugin `{name}`"
            );
        }
        println!("plugin {name} version {version}: uploaded");
    }
    let uploaded = upload.len();
    let tables = files(&dir.join("tables"), "json")?;
    for path in &tables {
        let name = stem(path)?;
        let body = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        api.put(&format!("/v1/tables/{name}"), "application/json", body)?;
        println!("table {name}: put");
    }
    let pipelines = files(&dir.join("pipelines"), "json")?;
    for path in &pipelines {
        let id = stem(path)?;
        let body = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        api.put(&format!("/v1/pipelines/{id}"), "application/json", body)?;
        println!("pipeline {id}: put");
    }
    println!(
        "restored into {}: {uploaded} plugin versions uploaded ({present} already there), {} tables, {} pipelines",
        api.base,
        tables.len(),
        pipelines.len()
    );
    Ok(())
}
