//! `sluice plugin push NAME FILE`, `sluice plugin ls`, `sluice plugin rm NAME
//! VERSION`: the server's plugin store, from the command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};

use super::client::{print_json, Api, ServerArgs};

/// `sluice plugin push`.
#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// The plugin name (`[a-z0-9-]{1,64}`).
    pub name: String,
    /// The component (`.wasm`).
    pub file: PathBuf,
}

/// `sluice plugin rm`.
#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// The plugin name.
    pub name: String,
    /// The version to delete (refused while a pipeline uses it).
    pub version: u32,
}

/// Uploads a component; identical bytes answer the version already there.
pub fn push(args: PushArgs, server: &ServerArgs) -> anyhow::Result<i32> {
    // The server compiles the component before it answers.
    let api = Api::new(server, Duration::from_secs(300))?;
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let path = format!("/v1/plugins/{}", args.name);
    let what = format!("PUT {path}");
    let response = api.ok(&what, api.request(reqwest::Method::PUT, &path).header("content-type", "application/wasm").body(bytes))?;
    let created = response.status() == reqwest::StatusCode::CREATED;
    let answer: Value = response.json().with_context(|| format!("{what}: unexpected answer"))?;
    if server.json {
        print_json(&json!({"created": created, "plugin": answer}))?;
    } else {
        println!(
            "plugin {} version {} {} (sha256 {}, {} bytes)",
            args.name,
            answer["version"],
            if created { "uploaded" } else { "already there (same bytes)" },
            answer["sha256"].as_str().unwrap_or("?"),
            answer["size"]
        );
    }
    Ok(0)
}

/// Lists every plugin version.
pub fn ls(server: &ServerArgs) -> anyhow::Result<i32> {
    let api = Api::new(server, Duration::from_secs(30))?;
    let answer: Value = api.json("/v1/plugins")?;
    if server.json {
        print_json(&answer)?;
        return Ok(0);
    }
    println!("{:<24} {:>7} {:>10}  {:<16} UPLOADED", "PLUGIN", "VERSION", "SIZE", "SHA256");
    for plugin in answer.get("plugins").and_then(Value::as_array).context("GET /v1/plugins: the answer has no plugins")? {
        for version in plugin.get("versions").and_then(Value::as_array).into_iter().flatten() {
            let sha = version["sha256"].as_str().unwrap_or("?");
            let uploaded = version["uploaded_at"]
                .as_u64()
                .map(|ms| humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string())
                .unwrap_or_default();
            println!(
                "{:<24} {:>7} {:>10}  {:<16} {uploaded}",
                plugin["name"].as_str().unwrap_or("?"),
                version["version"],
                version["size"],
                &sha[..sha.len().min(16)]
            );
        }
    }
    Ok(0)
}

/// Deletes one version.
pub fn rm(args: RmArgs, server: &ServerArgs) -> anyhow::Result<i32> {
    let api = Api::new(server, Duration::from_secs(30))?;
    api.call(reqwest::Method::DELETE, &format!("/v1/plugins/{}/versions/{}", args.name, args.version), "application/json", Vec::new())?;
    if server.json {
        print_json(&json!({"deleted": {"name": args.name, "version": args.version}}))?;
    } else {
        println!("plugin {} version {} deleted", args.name, args.version);
    }
    Ok(0)
}
