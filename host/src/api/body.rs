//! The request body as an extractor: read whole, up to `--max-body-bytes`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};

use super::error::ApiError;
use super::AppState;

/// A request body read whole; over the server's limit it is a 413.
pub struct Body(pub Bytes);

/// Bytes of an over-limit body still read (and thrown away) so the client
/// gets its 413 on a healthy connection rather than a reset mid-upload.
const DRAIN_AFTER_LIMIT: u64 = 64 * 1024 * 1024;

impl FromRequest<Arc<AppState>> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        read_body(request.into_body(), state.max_body_bytes).await.map(Body)
    }
}

/// Reads a body up to `limit` bytes; over it is a 413.
async fn read_body(body: axum::body::Body, limit: u64) -> Result<Bytes, ApiError> {
    use axum::body::HttpBody as _;
    use http_body_util::BodyExt;
    let mut body = body;
    // The declared length, if any, sizes the buffer once (within the limit).
    let declared = body.size_hint().lower().min(limit);
    let mut kept = bytes::BytesMut::with_capacity(declared as usize);
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request("invalid_body", format!("could not read the body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len() as u64;
            if seen <= limit {
                kept.extend_from_slice(&data);
            } else if seen > limit + DRAIN_AFTER_LIMIT {
                break;
            }
        }
    }
    if seen > limit {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    Ok(kept.freeze())
}
