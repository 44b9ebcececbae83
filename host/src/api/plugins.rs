//! `/v1/plugins`: upload (validated and compiled before it is stored),
//! list, show, download a version's bytes, delete a version (refused while
//! a pipeline uses it).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult, ErrorBody, Unavailable};
use super::extract::Path;
use super::{AppState, PluginBody};
use crate::domain::PluginVersion;
use crate::engine::spec::valid_name;

/// The plugin routes (behind the admin layer).
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show, upload))
        .routes(routes!(remove))
        .routes(routes!(download))
}

fn check_name(name: &str) -> ApiResult<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request("invalid_name", format!("plugin name {name:?} must match [a-z0-9-]{{1,64}}")))
    }
}

/// A component's bytes, as uploaded and downloaded (`application/wasm`).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary, content_media_type = "application/wasm")]
#[allow(dead_code)] // The bodies are read and written as bytes; this describes them.
pub struct Component(Vec<u8>);

/// An uploaded version, as `PUT` answers it.
#[derive(Serialize, ToSchema)]
pub struct Uploaded {
    /// The plugin's name.
    name: String,
    /// 1, 2, ... per name; never reused after a delete.
    version: u32,
    /// Of the component bytes.
    sha256: String,
    /// Bytes.
    size: u64,
    /// ms since the epoch.
    uploaded_at: i64,
}

#[utoipa::path(put, path = "/v1/plugins/{name}", operation_id = "upload_plugin", tag = "plugins", summary = "Upload a version of a plugin",
    params(("name" = String, Path, description = "The plugin's name, `[a-z0-9-]{1,64}`")),
    request_body(content = inline(Component), content_type = "application/wasm", description = "The component's bytes (a `sluice:stage` component)"),
    responses(
        (status = 201, description = "A new version", body = Uploaded),
        (status = 200, description = "The same bytes were already stored: that version", body = Uploaded),
        (status = 400, description = "`invalid_name`, or `invalid_plugin`: not a component of the stage world, or it imports what the host does not grant", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: over `--max-plugin-bytes`", body = ErrorBody),
        Unavailable,
    ))]
async fn upload(State(state): State<Arc<AppState>>, Path(name): Path<String>, PluginBody(bytes, _permit): PluginBody) -> ApiResult<Response> {
    check_name(&name)?;
    let put = state.engine.upload_plugin(&name, bytes.to_vec()).await?;
    let status = if put.created { StatusCode::CREATED } else { StatusCode::OK };
    let v = put.version;
    Ok((status, Json(Uploaded { name: v.name, version: v.version, sha256: v.sha256, size: v.size, uploaded_at: v.uploaded_at })).into_response())
}

/// One version of a plugin in the listings.
#[derive(Serialize, ToSchema)]
pub struct VersionEntry {
    version: u32,
    sha256: String,
    size: u64,
    /// ms since the epoch.
    uploaded_at: i64,
}

/// One plugin with its versions, oldest first.
#[derive(Serialize, ToSchema)]
pub struct PluginEntry {
    name: String,
    versions: Vec<VersionEntry>,
}

/// `GET /v1/plugins`'s answer.
#[derive(Serialize, ToSchema)]
pub struct PluginList {
    /// By name.
    plugins: Vec<PluginEntry>,
}

/// The API's entries: one per name, with its versions.
fn entries(versions: Vec<PluginVersion>) -> Vec<PluginEntry> {
    let mut by_name: BTreeMap<String, Vec<VersionEntry>> = BTreeMap::new();
    for v in versions {
        by_name.entry(v.name).or_default().push(VersionEntry { version: v.version, sha256: v.sha256, size: v.size, uploaded_at: v.uploaded_at });
    }
    by_name.into_iter().map(|(name, versions)| PluginEntry { name, versions }).collect()
}

#[utoipa::path(get, path = "/v1/plugins", operation_id = "list_plugins", tag = "plugins", summary = "Every plugin with its versions",
    responses((status = 200, description = "The plugins, by name", body = PluginList), Unavailable))]
async fn list(State(state): State<Arc<AppState>>) -> ApiResult<Json<PluginList>> {
    Ok(Json(PluginList { plugins: entries(state.engine.plugins().await?) }))
}

#[utoipa::path(get, path = "/v1/plugins/{name}", operation_id = "get_plugin", tag = "plugins", summary = "One plugin with its versions",
    params(("name" = String, Path, description = "The plugin's name")),
    responses(
        (status = 200, description = "The plugin", body = PluginEntry),
        (status = 404, description = "`not_found`: no such plugin", body = ErrorBody),
        Unavailable,
    ))]
async fn show(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult<Json<PluginEntry>> {
    let versions = state.engine.plugin_versions(&name).await?;
    entries(versions).pop().map(Json).ok_or_else(|| ApiError::NotFound(format!("no plugin `{name}`")))
}

fn parse_version(version: &str) -> ApiResult<u32> {
    version.parse().map_err(|_| ApiError::bad_request("invalid_version", format!("version {version:?} must be a positive integer")))
}

#[utoipa::path(delete, path = "/v1/plugins/{name}/versions/{version}", operation_id = "delete_plugin_version", tag = "plugins", summary = "Delete a version",
    params(("name" = String, Path, description = "The plugin's name"), ("version" = u32, Path, minimum = 1, description = "The version, a positive integer")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "`invalid_version`: not a positive integer", body = ErrorBody),
        (status = 404, description = "`not_found`: no such plugin or version", body = ErrorBody),
        (status = 409, description = "`conflict`: a pipeline uses this version", body = ErrorBody),
        Unavailable,
    ))]
async fn remove(State(state): State<Arc<AppState>>, Path((name, version)): Path<(String, String)>) -> ApiResult<StatusCode> {
    state.engine.delete_plugin_version(&name, parse_version(&version)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The component bytes of one version (`application/wasm`), so a catalog
/// can be exported (`sluice catalog export`) and uploaded elsewhere.
#[utoipa::path(get, path = "/v1/plugins/{name}/versions/{version}/wasm", operation_id = "download_plugin_version", tag = "plugins", summary = "A version's component bytes",
    params(("name" = String, Path, description = "The plugin's name"), ("version" = u32, Path, minimum = 1, description = "The version, a positive integer")),
    responses(
        (status = 200, description = "The component", content_type = "application/wasm", body = inline(Component)),
        (status = 400, description = "`invalid_version`: not a positive integer", body = ErrorBody),
        (status = 404, description = "`not_found`: no such plugin or version", body = ErrorBody),
        Unavailable,
    ))]
async fn download(State(state): State<Arc<AppState>>, Path((name, version)): Path<(String, String)>) -> ApiResult<Response> {
    let bytes = state.engine.plugin_wasm(&name, parse_version(&version)?).await?;
    Ok(([(header::CONTENT_TYPE, "application/wasm")], bytes).into_response())
}
