//! `GET /`: the live dashboard, one self-contained page. It reads the same
//! API as any client (its token, if the server has tokens, is typed into
//! the page and sent as `Authorization`, or as `access_token` on the live
//! feed, which browsers cannot give headers).

use std::sync::Arc;

use axum::response::Html;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

const PAGE: &str = include_str!("dashboard.html");

/// `GET /` (no token: the page asks for one when the server has tokens).
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(page))
}

#[utoipa::path(get, path = "/", operation_id = "dashboard", tag = "monitoring", summary = "The live dashboard page (no token)",
    responses((status = 200, description = "One self-contained HTML page", content_type = "text/html", body = String)))]
async fn page() -> Html<&'static str> {
    Html(PAGE)
}
