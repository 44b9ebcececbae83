//! The request body as an extractor: read whole, up to `--max-body-bytes`,
//! and counted against the process's bytes in flight
//! (`--max-inflight-bytes`) until the handler is done with it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};

use super::error::ApiError;
use super::AppState;

/// A request body read whole; over the server's limit it is a 413, and
/// while the process already holds its bytes-in-flight bound it is a 503.
/// The second field holds the body's share of that bound until dropped.
pub struct Body(pub Bytes, pub InflightPermit);

/// The process's request bytes in flight, against a bound.
#[derive(Clone)]
pub(crate) struct InflightBytes {
    held: Arc<AtomicU64>,
    max: u64,
}

impl InflightBytes {
    pub(crate) fn new(max: u64) -> Self {
        InflightBytes { held: Arc::new(AtomicU64::new(0)), max }
    }

    /// Takes `n` more bytes, or answers 503 when that would pass the bound.
    fn take(&self, permit: &mut InflightPermit, n: u64) -> Result<(), ApiError> {
        let mut held = self.held.load(Ordering::Relaxed);
        loop {
            if held.saturating_add(n) > self.max {
                return Err(ApiError::Overloaded(format!(
                    "the server is already reading or handling {held} bytes of requests (--max-inflight-bytes {}); retry shortly",
                    self.max
                )));
            }
            match self.held.compare_exchange_weak(held, held + n, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    permit.bytes += n;
                    return Ok(());
                }
                Err(now) => held = now,
            }
        }
    }
}

/// A body's share of the bytes in flight, given back when dropped.
pub struct InflightPermit {
    pool: Option<Arc<AtomicU64>>,
    bytes: u64,
}

impl Drop for InflightPermit {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

/// Bytes of an over-limit body still read (and thrown away) so the client
/// gets its 413 on a healthy connection rather than a reset mid-upload.
const DRAIN_AFTER_LIMIT: u64 = 64 * 1024 * 1024;

impl FromRequest<Arc<AppState>> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let (bytes, permit) = read_whole(request, state, state.limits.max_body_bytes, "--max-body-bytes").await?;
        Ok(Body(bytes, permit))
    }
}

/// A plugin upload read whole, as [`Body`] but up to `--max-plugin-bytes`
/// (a component carrying a Python or JavaScript runtime is larger than the
/// general limit allows).
pub struct PluginBody(pub Bytes, pub InflightPermit);

impl FromRequest<Arc<AppState>> for PluginBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let (bytes, permit) = read_whole(request, state, state.limits.max_plugin_bytes, "--max-plugin-bytes").await?;
        Ok(PluginBody(bytes, permit))
    }
}

/// The body up to `limit` (set by `flag`), and its share of the bytes in flight.
async fn read_whole(request: Request, state: &Arc<AppState>, limit: u64, flag: &'static str) -> Result<(Bytes, InflightPermit), ApiError> {
    let mut permit = InflightPermit { pool: Some(state.inflight.held.clone()), bytes: 0 };
    let bytes = read_body(request.into_body(), limit, &state.inflight, &mut permit)
        .await
        .map_err(|e| match e {
            ApiError::PayloadTooLarge(limit, _) => ApiError::PayloadTooLarge(limit, flag),
            other => other,
        })?;
    Ok((bytes, permit))
}

/// Reads a body up to `limit` bytes (over it is a 413), taking each frame's
/// bytes from the bytes in flight as it arrives.
async fn read_body(body: axum::body::Body, limit: u64, inflight: &InflightBytes, permit: &mut InflightPermit) -> Result<Bytes, ApiError> {
    use axum::body::HttpBody as _;
    use http_body_util::BodyExt;
    let mut body = body;
    // The declared length, if any, sizes the buffer once (within the limit).
    let declared = body.size_hint().lower().min(limit);
    // A declared length past what is free is refused before anything is read.
    inflight.take(permit, declared)?;
    let mut declared_left = declared;
    let mut kept = bytes::BytesMut::with_capacity(declared as usize);
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request("invalid_body", format!("could not read the body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len() as u64;
            if seen <= limit {
                let n = data.len() as u64;
                let covered = n.min(declared_left);
                declared_left -= covered;
                if n > covered {
                    inflight.take(permit, n - covered)?;
                }
                kept.extend_from_slice(&data);
            } else if seen > limit + DRAIN_AFTER_LIMIT {
                break;
            }
        }
    }
    if seen > limit {
        return Err(ApiError::PayloadTooLarge(limit, "--max-body-bytes"));
    }
    Ok(kept.freeze())
}
