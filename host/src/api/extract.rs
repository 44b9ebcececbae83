//! axum's `Path` and `Query` extractors answering their refusals as the
//! API's JSON errors (axum's own answer `text/plain`, which API.md does not
//! allow: every error answer is JSON).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The path parameters; a parameter that cannot be read (e.g. percent-encoded
/// bytes that are not UTF-8) is 400 `invalid_path`.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|e| ApiError::bad_request("invalid_path", format!("the path cannot be read: {}", e.body_text())))
    }
}

/// The query string; one that cannot be read (e.g. a parameter given
/// twice) is 400 `invalid_query`.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|e| ApiError::bad_request("invalid_query", format!("the query string cannot be read: {}", e.body_text())))
    }
}
