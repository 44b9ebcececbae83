//! `/v1/tables/{name}`: lookup tables stages read through `host.lookup`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::{read_body, AppState};
use crate::engine::spec::valid_name;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/v1/tables/{name}", get(show).put(put))
}

async fn put(State(state): State<Arc<AppState>>, Path(name): Path<String>, request: Request) -> ApiResult<Json<Value>> {
    let body = read_body(request.into_body(), state.max_body_bytes).await?;
    if !valid_name(&name) {
        return Err(ApiError::bad_request("invalid_name", format!("table name {name:?} must match [a-z0-9-]{{1,64}}")));
    }
    let entries: BTreeMap<String, String> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_table", format!("a table must be a JSON object of string keys to string values: {e}")))?;
    let size = entries.len();
    state.engine.put_table(&name, entries).await?;
    Ok(Json(json!({"name": name, "size": size})))
}

async fn show(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult<Json<BTreeMap<String, String>>> {
    state.engine.store.get_table(&name).await?.map(Json).ok_or_else(|| ApiError::NotFound(format!("no table `{name}`")))
}
