//! `/v1/tables/{name}`: lookup tables stages read through `host.lookup`;
//! `/v1/tables` lists them.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::{AppState, Body};
use crate::engine::spec::valid_name;

/// The table routes (behind the admin layer).
pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/v1/tables", get(list)).route("/v1/tables/{name}", get(show).put(put))
}

async fn put(State(state): State<Arc<AppState>>, Path(name): Path<String>, Body(body, _permit): Body) -> ApiResult<Json<Value>> {
    if !valid_name(&name) {
        return Err(ApiError::bad_request("invalid_name", format!("table name {name:?} must match [a-z0-9-]{{1,64}}")));
    }
    let entries: BTreeMap<String, String> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_table", format!("a table must be a JSON object of string keys to string values: {e}")))?;
    let size = entries.len();
    state.engine.put_table(&name, entries).await?;
    Ok(Json(json!({"name": name, "size": size})))
}

/// `{"tables": [{"name", "size"}]}`, by name (so a catalog can be exported).
async fn list(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let tables: Vec<Value> = state.engine.table_sizes().await?.into_iter().map(|(name, size)| json!({"name": name, "size": size})).collect();
    Ok(Json(json!({"tables": tables})))
}

async fn show(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult<Json<BTreeMap<String, String>>> {
    Ok(Json(state.engine.table(&name).await?))
}
