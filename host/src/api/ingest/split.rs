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
/// parseable is a 400; one with more than `max_items` events stops there
/// and answers `too_many(max_items)` (no list of millions is ever built).
pub fn split(format: Format, body: &[u8], max_items: usize, too_many: impl Fn(usize) -> ApiError) -> ApiResult<Vec<Result<&str, String>>> {
    let text = std::str::from_utf8(body).map_err(|e| match format {
        Format::Json => ApiError::bad_request("invalid_json", format!("the body is not valid JSON: it is not UTF-8 ({e})")),
        Format::NdJson => ApiError::bad_request("invalid_ndjson", format!("the body is not UTF-8: {e}")),
    })?;
    match format {
        Format::Json => split_json(text, max_items, too_many),
        Format::NdJson => split_ndjson(text, max_items, too_many),
    }
}

/// Reads a JSON array's items as raw text, refusing more than `.0` of them
/// as soon as the next one starts (serde stops parsing at the error).
struct BoundedSeed(usize);

impl<'de> serde::de::DeserializeSeed<'de> for BoundedSeed {
    type Value = Vec<&'de RawValue>;
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for BoundedSeed {
    type Value = Vec<&'de RawValue>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of events")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            if items.len() == self.0 {
                return Err(serde::de::Error::custom(TOO_MANY));
            }
            items.push(item);
        }
        Ok(items)
    }
}

/// The marker error of [`BoundedSeed`] over its bound.
const TOO_MANY: &str = "sluice: too many events";

fn split_json(text: &str, max_items: usize, too_many: impl Fn(usize) -> ApiError) -> ApiResult<Vec<Result<&str, String>>> {
    let invalid = |e: serde_json::Error| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e} (line {}, column {})", e.line(), e.column()))
    };
    match text.trim_start().as_bytes().first() {
        Some(b'[') => {
            let mut de = serde_json::Deserializer::from_str(text);
            let items = serde::de::DeserializeSeed::deserialize(BoundedSeed(max_items), &mut de)
                .and_then(|items| de.end().map(|()| items))
                .map_err(|e| if e.to_string().starts_with(TOO_MANY) { too_many(max_items) } else { invalid(e) })?;
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

fn split_ndjson(text: &str, max_items: usize, too_many: impl Fn(usize) -> ApiError) -> ApiResult<Vec<Result<&str, String>>> {
    let mut items = Vec::new();
    let mut first_error = None;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if items.len() == max_items {
            return Err(too_many(max_items));
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

    fn many(max: usize) -> ApiError {
        ApiError::TooManyEvents(format!("over {max}"))
    }

    fn code(e: ApiError) -> &'static str {
        match e {
            ApiError::TooManyEvents(_) => "413",
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
        let one = split(Format::Json, br#" {"type":"a"} "#, 10, many).unwrap();
        assert_eq!(one, vec![Ok(r#"{"type":"a"}"#)]);
        let array = split(Format::Json, br#"[{"type":"a"}, 3, {"type":"b","data":{"x":[1]}}]"#, 3, many).unwrap();
        assert_eq!(array, vec![Ok(r#"{"type":"a"}"#), Ok("3"), Ok(r#"{"type":"b","data":{"x":[1]}}"#)]);
        let lines = split(Format::NdJson, b"{\"type\":\"a\"}\n\n{oops\n  {\"type\":\"b\"}  \n", 3, many).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], Ok(r#"{"type":"a"}"#));
        assert!(lines[1].as_ref().unwrap_err().starts_with("line 3 is not valid JSON"), "{:?}", lines[1]);
        assert_eq!(lines[2], Ok(r#"{"type":"b"}"#));
    }

    #[test]
    fn stops_at_the_bound_without_listing_everything() {
        let ndjson = "{}\n".repeat(1_000_000);
        assert_eq!(code(split(Format::NdJson, ndjson.as_bytes(), 100, many).unwrap_err()), "413");
        assert_eq!(split(Format::NdJson, "{}\n".repeat(100).as_bytes(), 100, many).unwrap().len(), 100);
        let array = format!("[{}1]", "1,".repeat(1_000_000));
        assert_eq!(code(split(Format::Json, array.as_bytes(), 100, many).unwrap_err()), "413");
        assert_eq!(split(Format::Json, b"[1,2,3]", 3, many).unwrap().len(), 3);
        assert_eq!(code(split(Format::Json, b"[1,2,3] x", 3, many).unwrap_err()), "invalid_json", "trailing text is still an error");
    }

    #[test]
    fn refuses_bodies_with_nothing_to_take() {
        assert_eq!(code(split(Format::Json, b"[1,", 10, many).unwrap_err()), "invalid_json");
        assert_eq!(code(split(Format::Json, b"42", 10, many).unwrap_err()), "invalid_json");
        assert_eq!(code(split(Format::Json, b"\xff{}", 10, many).unwrap_err()), "invalid_json");
        assert_eq!(code(split(Format::NdJson, b"\n \n", 10, many).unwrap_err()), "invalid_ndjson");
        assert_eq!(code(split(Format::NdJson, b"nope\n{\n", 10, many).unwrap_err()), "invalid_ndjson");
    }
}
