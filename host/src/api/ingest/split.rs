//! An ingest body, split into the JSON text of each event without building
//! a JSON tree: a JSON object, a JSON array of objects, or NDJSON.

use axum::http::{header, HeaderMap};
use serde_json::value::RawValue;

use crate::api::error::{ApiError, ApiResult};

/// How the body is framed, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One event object or an array of them (`application/json`, or no type).
    Json,
    /// One event per line (`application/x-ndjson`, `application/ndjson`, `application/jsonl`).
    NdJson,
}

/// The body's format, or a 415 naming what is accepted.
pub fn format_of(headers: &HeaderMap) -> ApiResult<Format> {
    let Some(content_type) = headers.get(header::CONTENT_TYPE) else { return Ok(Format::Json) };
    let content_type = content_type.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    match essence {
        "application/json" | "" => Ok(Format::Json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(Format::NdJson),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "content type {other:?} is not supported: send application/json (an object or an array of objects) or application/x-ndjson"
        ))),
    }
}

/// Splits a body into the JSON text of each event; an NDJSON line that is
/// not valid JSON becomes an `Err` at its index. A body with nothing
/// parseable is a 400.
pub fn split(format: Format, body: &[u8]) -> ApiResult<Vec<Result<&str, String>>> {
    let text = std::str::from_utf8(body).map_err(|e| match format {
        Format::Json => ApiError::bad_request("invalid_json", format!("the body is not valid JSON: it is not UTF-8 ({e})")),
        Format::NdJson => ApiError::bad_request("invalid_ndjson", format!("the body is not UTF-8: {e}")),
    })?;
    match format {
        Format::Json => split_json(text),
        Format::NdJson => split_ndjson(text),
    }
}

fn split_json(text: &str) -> ApiResult<Vec<Result<&str, String>>> {
    let invalid = |e: serde_json::Error| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e} (line {}, column {})", e.line(), e.column()))
    };
    match text.trim_start().as_bytes().first() {
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(invalid)?;
            Ok(items.into_iter().map(|item| Ok(item.get())).collect())
        }
        Some(b'{') => {
            let object: &RawValue = serde_json::from_str(text).map_err(invalid)?;
            Ok(vec![Ok(object.get())])
        }
        _ => match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Err(e) => Err(invalid(e)),
            Ok(_) => Err(ApiError::bad_request("invalid_json", "the body must be an event object, an array of event objects, or NDJSON")),
        },
    }
}

fn split_ndjson(text: &str) -> ApiResult<Vec<Result<&str, String>>> {
    let mut items = Vec::new();
    let mut first_error = None;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<&RawValue>(line) {
            Ok(value) => items.push(Ok(value.get())),
            Err(e) => {
                let message = format!("line {} is not valid JSON: {e}", n + 1);
                first_error.get_or_insert_with(|| message.clone());
                items.push(Err(message));
            }
        }
    }
    if items.is_empty() {
        return Err(ApiError::bad_request("invalid_ndjson", "the body has no events"));
    }
    if items.iter().all(|i| i.is_err()) {
        return Err(ApiError::bad_request("invalid_ndjson", format!("the body is not NDJSON: {}", first_error.unwrap_or_default())));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn code(e: ApiError) -> &'static str {
        match e {
            ApiError::BadRequest { code, .. } => code,
            ApiError::UnsupportedMediaType(_) => "415",
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn formats_from_the_content_type() {
        let mut h = HeaderMap::new();
        assert_eq!(format_of(&h).unwrap(), Format::Json);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("Application/X-NDJSON; charset=utf-8"));
        assert_eq!(format_of(&h).unwrap(), Format::NdJson);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv"));
        assert_eq!(code(format_of(&h).unwrap_err()), "415");
    }

    #[test]
    fn splits_objects_arrays_and_lines() {
        let one = split(Format::Json, br#" {"type":"a"} "#).unwrap();
        assert_eq!(one, vec![Ok(r#"{"type":"a"}"#)]);
        let many = split(Format::Json, br#"[{"type":"a"}, 3, {"type":"b","data":{"x":[1]}}]"#).unwrap();
        assert_eq!(many, vec![Ok(r#"{"type":"a"}"#), Ok("3"), Ok(r#"{"type":"b","data":{"x":[1]}}"#)]);
        let lines = split(Format::NdJson, b"{\"type\":\"a\"}\n\n{oops\n  {\"type\":\"b\"}  \n").unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], Ok(r#"{"type":"a"}"#));
        assert!(lines[1].as_ref().unwrap_err().starts_with("line 3 is not valid JSON"), "{:?}", lines[1]);
        assert_eq!(lines[2], Ok(r#"{"type":"b"}"#));
    }

    #[test]
    fn refuses_bodies_with_nothing_to_take() {
        assert_eq!(code(split(Format::Json, b"[1,").unwrap_err()), "invalid_json");
        assert_eq!(code(split(Format::Json, b"42").unwrap_err()), "invalid_json");
        assert_eq!(code(split(Format::Json, b"\xff{}").unwrap_err()), "invalid_json");
        assert_eq!(code(split(Format::NdJson, b"\n \n").unwrap_err()), "invalid_ndjson");
        assert_eq!(code(split(Format::NdJson, b"nope\n{\n").unwrap_err()), "invalid_ndjson");
    }
}
