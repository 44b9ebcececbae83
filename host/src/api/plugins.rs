//! `/v1/plugins`: upload (validated and compiled before it is stored),
//! list, show, delete a version (refused while a pipeline uses it).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::{read_body, AppState};
use crate::engine::spec::valid_name;
use crate::runtime::sha256_hex;
use crate::store::PluginVersion;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/plugins", get(list))
        .route("/v1/plugins/{name}", get(show).put(upload))
        .route("/v1/plugins/{name}/versions/{version}", delete(remove))
}

fn check_name(name: &str) -> ApiResult<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request("invalid_name", format!("plugin name {name:?} must match [a-z0-9-]{{1,64}}")))
    }
}

async fn upload(State(state): State<Arc<AppState>>, Path(name): Path<String>, request: Request) -> ApiResult<Response> {
    // Read the body first: answering before reading it would break the client's keep-alive connection.
    let bytes = read_body(request.into_body(), state.max_body_bytes).await?;
    check_name(&name)?;
    let runtime = state.engine.runtime.clone();
    let checked = bytes.clone();
    tokio::task::spawn_blocking(move || runtime.load(&checked))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::bad_request("invalid_plugin", e.to_string()))?;
    let put = state.engine.store.put_plugin(&name, &sha256_hex(&bytes), &bytes, crate::event::now_ms()).await?;
    let status = if put.created { StatusCode::CREATED } else { StatusCode::OK };
    let v = put.version;
    Ok((status, Json(json!({"name": v.name, "version": v.version, "sha256": v.sha256, "size": v.size, "uploaded_at": v.uploaded_at}))).into_response())
}

fn entries(versions: Vec<PluginVersion>) -> Vec<Value> {
    let mut by_name: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for v in versions {
        by_name.entry(v.name.clone()).or_default().push(json!({"version": v.version, "sha256": v.sha256, "size": v.size, "uploaded_at": v.uploaded_at}));
    }
    by_name.into_iter().map(|(name, versions)| json!({"name": name, "versions": versions})).collect()
}

async fn list(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({"plugins": entries(state.engine.store.list_plugins().await?)})))
}

async fn show(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let versions: Vec<PluginVersion> = state.engine.store.list_plugins().await?.into_iter().filter(|v| v.name == name).collect();
    entries(versions).pop().map(Json).ok_or_else(|| ApiError::NotFound(format!("no plugin `{name}`")))
}

async fn remove(State(state): State<Arc<AppState>>, Path((name, version)): Path<(String, String)>) -> ApiResult<StatusCode> {
    let version: u32 = version.parse().map_err(|_| ApiError::bad_request("invalid_version", format!("version {version:?} must be a positive integer")))?;
    if let Some(pipeline) = state.engine.plugin_in_use(&name, version).await? {
        return Err(ApiError::Conflict(format!("plugin `{name}` version {version} is used by pipeline `{pipeline}`")));
    }
    if state.engine.store.delete_plugin_version(&name, version).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no plugin `{name}` version {version}")))
    }
}
