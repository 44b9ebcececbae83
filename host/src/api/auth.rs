//! Bearer-token auth: admin tokens may do everything, ingest tokens only
//! `POST /v1/pipelines/{id}/events`. With no tokens the server runs open
//! (and `serve` refuses to listen beyond loopback).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

#[derive(Debug, Clone, Default)]
pub struct Tokens {
    pub admin: Vec<String>,
    pub ingest: Vec<String>,
}

impl Tokens {
    pub fn open(&self) -> bool {
        self.admin.is_empty() && self.ingest.is_empty()
    }
}

enum Role {
    Admin,
    Ingest,
}

fn needed(method: &Method, path: &str) -> Option<Role> {
    if path == "/healthz" || path == "/readyz" || path == "/" {
        return None;
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if method == Method::POST && segments.len() == 4 && segments[0] == "v1" && segments[1] == "pipelines" && segments[3] == "events" {
        return Some(Role::Ingest);
    }
    Some(Role::Admin)
}

/// Constant-time comparison, so a token can't be guessed byte by byte.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `?access_token=` on a GET: what a browser's `EventSource` (the live
/// feed) can send instead of a header.
fn query_token(request: &Request) -> Option<String> {
    if request.method() != Method::GET {
        return None;
    }
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

pub async fn require(State(tokens): State<Arc<Tokens>>, request: Request, next: Next) -> Response {
    if tokens.open() {
        return next.run(request).await;
    }
    let Some(role) = needed(request.method(), request.uri().path()) else { return next.run(request).await };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_string)
        .or_else(|| query_token(&request));
    let presented = presented.as_deref();
    let Some(token) = presented else {
        return ApiError::Unauthorized("missing `Authorization: Bearer <token>` header".into()).into_response();
    };
    let is_admin = tokens.admin.iter().any(|t| same(t, token));
    let is_ingest = tokens.ingest.iter().any(|t| same(t, token));
    match role {
        _ if is_admin => next.run(request).await,
        Role::Ingest if is_ingest => next.run(request).await,
        Role::Admin if is_ingest => ApiError::Forbidden("an ingest token may only POST events; this needs the admin token".into()).into_response(),
        _ => ApiError::Unauthorized("unknown token".into()).into_response(),
    }
}
