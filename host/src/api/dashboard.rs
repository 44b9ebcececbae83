//! `GET /`: the live dashboard, one self-contained page. It reads the same
//! API as any client (its token, if the server has tokens, is typed into
//! the page and sent as `Authorization`, or as `access_token` on the live
//! feed, which browsers cannot give headers).

use std::sync::Arc;

use axum::response::Html;
use axum::routing::get;
use axum::Router;

use super::AppState;

const PAGE: &str = include_str!("dashboard.html");

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/", get(|| async { Html(PAGE) }))
}
