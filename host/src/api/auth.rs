//! Bearer-token auth, one layer per router: admin tokens may do everything,
//! ingest tokens only `POST /v1/pipelines/{id}/events`. With no tokens the
//! server runs open (and `serve` refuses to listen beyond loopback).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    pub admin: Vec<String>,
    pub ingest: Vec<String>,
}

impl Tokens {
    /// No tokens at all: the server runs open.
    pub fn open(&self) -> bool {
        self.admin.is_empty() && self.ingest.is_empty()
    }
}

/// What a router's routes need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The admin token.
    Admin,
    /// An ingest token (or the admin token).
    Ingest,
    /// The admin token, also accepted as `?access_token=` (what a browser's
    /// `EventSource` can send instead of a header; the live feed only).
    AdminOrQueryToken,
}

/// The state of one router's auth layer.
#[derive(Clone)]
pub struct Access {
    tokens: Arc<Tokens>,
    role: Role,
}

impl Access {
    pub fn new(tokens: Arc<Tokens>, role: Role) -> Self {
        Access { tokens, role }
    }
}

/// Compares the SHA-256 digests of the two tokens in constant time, so
/// neither a token's bytes nor its length can be guessed from the timing.
fn same(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `?access_token=` of the request, percent-decoded.
fn query_token(request: &Request) -> Option<String> {
    let query = request.uri().query()?;
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix("access_token=")?;
        Some(percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi * 16 + lo);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_tokens_and_decodes_query_tokens() {
        assert!(same("s3cret", "s3cret"));
        assert!(!same("s3cret", "s3cre"));
        assert!(!same("s3cret", "S3cret"));
        assert_eq!(percent_decode("a%2Fb+c%zz"), "a/b c%zz");
    }
}

/// The layer: lets the request through when its token has the router's role.
pub async fn require(State(access): State<Access>, request: Request, next: Next) -> Response {
    let tokens = &access.tokens;
    if tokens.open() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_string)
        .or_else(|| if access.role == Role::AdminOrQueryToken { query_token(&request) } else { None });
    let Some(token) = presented.as_deref() else {
        return ApiError::Unauthorized("missing `Authorization: Bearer <token>` header".into()).into_response();
    };
    // Every token is compared (no early exit), so timing says nothing about which matched.
    let is_admin = tokens.admin.iter().fold(false, |hit, t| same(t, token) | hit);
    let is_ingest = tokens.ingest.iter().fold(false, |hit, t| same(t, token) | hit);
    match access.role {
        _ if is_admin => next.run(request).await,
        Role::Ingest if is_ingest => next.run(request).await,
        _ if is_ingest => ApiError::Forbidden("an ingest token may only POST events; this needs the admin token".into()).into_response(),
        _ => ApiError::Unauthorized("unknown token".into()).into_response(),
    }
}
