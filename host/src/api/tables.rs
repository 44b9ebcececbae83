//! `/v1/tables/{name}`: lookup tables stages read through `host.lookup`;
//! `/v1/tables` lists them.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult, BodyTooLarge, ErrorBody, Unavailable};
use super::extract::Path;
use super::{AppState, Body};
use crate::engine::spec::valid_name;

/// The table routes (behind the admin layer).
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(show, put))
}

/// A table by name and number of keys (`PUT`'s answer, and the listing's entries).
#[derive(Serialize, ToSchema)]
pub struct TableSize {
    name: String,
    /// Keys in the table.
    size: usize,
}

/// `GET /v1/tables`'s answer.
#[derive(Serialize, ToSchema)]
pub struct TableList {
    /// By name.
    tables: Vec<TableSize>,
}

#[utoipa::path(put, path = "/v1/tables/{name}", operation_id = "put_table", tag = "tables", summary = "Replace a lookup table",
    params(("name" = String, Path, description = "The table's name, `[a-z0-9-]{1,64}`")),
    request_body(content = BTreeMap<String, String>, content_type = "application/json", description = "String keys to string values"),
    responses(
        (status = 200, description = "Stored; stages see it within a second", body = TableSize),
        (status = 400, description = "`invalid_name`, or `invalid_table`: not an object of string keys to string values", body = ErrorBody),
        BodyTooLarge,
        Unavailable,
    ))]
async fn put(State(state): State<Arc<AppState>>, Path(name): Path<String>, Body(body, _permit): Body) -> ApiResult<Json<TableSize>> {
    if !valid_name(&name) {
        return Err(ApiError::bad_request("invalid_name", format!("table name {name:?} must match [a-z0-9-]{{1,64}}")));
    }
    let entries: BTreeMap<String, String> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_table", format!("a table must be a JSON object of string keys to string values: {e}")))?;
    let size = entries.len();
    state.engine.put_table(&name, entries).await?;
    Ok(Json(TableSize { name, size }))
}

/// `{"tables": [{"name", "size"}]}`, by name (so a catalog can be exported).
#[utoipa::path(get, path = "/v1/tables", operation_id = "list_tables", tag = "tables", summary = "Every lookup table with its size",
    responses((status = 200, description = "The tables, by name", body = TableList), Unavailable))]
async fn list(State(state): State<Arc<AppState>>) -> ApiResult<Json<TableList>> {
    let tables = state.engine.table_sizes().await?.into_iter().map(|(name, size)| TableSize { name, size }).collect();
    Ok(Json(TableList { tables }))
}

#[utoipa::path(get, path = "/v1/tables/{name}", operation_id = "get_table", tag = "tables", summary = "One lookup table",
    params(("name" = String, Path, description = "The table's name")),
    responses(
        (status = 200, description = "The table", body = BTreeMap<String, String>),
        (status = 404, description = "`not_found`: no such table", body = ErrorBody),
        Unavailable,
    ))]
async fn show(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult<Json<BTreeMap<String, String>>> {
    Ok(Json(state.engine.table(&name).await?))
}
