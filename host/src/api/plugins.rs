//! `/v1/plugins`: upload (validated and compiled before it is stored),
//! list, show, download a version's bytes, delete a version (refused while
//! a pipeline uses it).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::{AppState, PluginBody};
use crate::domain::PluginVersion;
use crate::engine::spec::valid_name;

/// The plugin routes (behind the admin layer).
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/plugins", get(list))
        .route("/v1/plugins/{name}", get(show).put(upload))
        .route("/v1/plugins/{name}/versions/{version}", delete(remove))
        .route("/v1/plugins/{name}/versions/{version}/wasm", get(download))
}

fn check_name(name: &str) -> ApiResult<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request("invalid_name", format!("plugin name {name:?} must match [a-z0-9-]{{1,64}}")))
    }
}

async fn upload(State(state): State<Arc<AppState>>, Path(name): Path<String>, PluginBody(bytes, _permit): PluginBody) -> ApiResult<Response> {
    check_name(&name)?;
    let put = state.engine.upload_plugin(&name, bytes.to_vec()).await?;
    let status = if put.created { StatusCode::CREATED } else { StatusCode::OK };
    let v = put.version;
    Ok((status, Json(json!({"name": v.name, "version": v.version, "sha256": v.sha256, "size": v.size, "uploaded_at": v.uploaded_at}))).into_response())
}

/// The API's entries: one per name, with its versions.
fn entries(versions: Vec<PluginVersion>) -> Vec<Value> {
    let mut by_name: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for v in versions {
        by_name.entry(v.name.clone()).or_default().push(json!({"version": v.version, "sha256": v.sha256, "size": v.size, "uploaded_at": v.uploaded_at}));
    }
    by_name.into_iter().map(|(name, versions)| json!({"name": name, "versions": versions})).collect()
}

async fn list(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({"plugins": entries(state.engine.plugins().await?)})))
}

async fn show(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let versions = state.engine.plugin_versions(&name).await?;
    entries(versions).pop().map(Json).ok_or_else(|| ApiError::NotFound(format!("no plugin `{name}`")))
}

fn parse_version(version: &str) -> ApiResult<u32> {
    version.parse().map_err(|_| ApiError::bad_request("invalid_version", format!("version {version:?} must be a positive integer")))
}

async fn remove(State(state): State<Arc<AppState>>, Path((name, version)): Path<(String, String)>) -> ApiResult<StatusCode> {
    state.engine.delete_plugin_version(&name, parse_version(&version)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The component bytes of one version (`application/wasm`), so a catalog
/// can be exported (`sluice catalog export`) and uploaded elsewhere.
async fn download(State(state): State<Arc<AppState>>, Path((name, version)): Path<(String, String)>) -> ApiResult<Response> {
    let bytes = state.engine.plugin_wasm(&name, parse_version(&version)?).await?;
    Ok(([(header::CONTENT_TYPE, "application/wasm")], bytes).into_response())
}
