//! `GET /openapi.json`: the OpenAPI 3.1 document of the API, assembled here
//! from what the routers register. Each handler carries its own
//! `#[utoipa::path]` annotation and every route is added with
//! `utoipa_axum::routes!`, which routes the handler and describes it in
//! one call, so the router and the document cannot differ. This module adds
//! what belongs to no single handler: the document's header, the security
//! schemes, each guarded route's token requirement with its 401/403
//! answers (from the auth layer actually installed on it), and open mode's
//! 403 on every route.

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, InfoBuilder, OpenApi, Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::auth::Role;
use super::error::ErrorBody;

/// The security scheme of the admin token (`Authorization: Bearer`).
pub const ADMIN_TOKEN: &str = "admin_token";
/// The security scheme of an ingest token (`Authorization: Bearer`).
pub const INGEST_TOKEN: &str = "ingest_token";
/// The security scheme of the admin token given as `?access_token=` (the
/// live feed only: a browser's `EventSource` cannot send headers).
pub const QUERY_TOKEN: &str = "access_token";

/// The document as served: rendered once when the router is built.
#[derive(Clone)]
pub struct DocumentJson(Arc<str>);

impl DocumentJson {
    /// Renders `document` (which cannot fail: it is plain data).
    pub fn new(document: &OpenApi) -> Self {
        DocumentJson(document.to_json().expect("an OpenAPI document serializes to JSON").into())
    }
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi_document",
    tag = "monitoring",
    summary = "This API's OpenAPI 3.1 document (no token)",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json(Extension(document): Extension<DocumentJson>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document.0.to_string()).into_response()
}

/// Marks every operation of `routes` as needing `role`'s token, with the
/// 401 and 403 answers of [`super::auth::require`]. Called where that
/// layer is installed, so the document follows the layers.
pub fn require_role(routes: &mut OpenApi, role: Role) {
    let schemes: &[&str] = match role {
        Role::Admin => &[ADMIN_TOKEN],
        Role::Ingest => &[INGEST_TOKEN, ADMIN_TOKEN],
        Role::AdminOrQueryToken => &[ADMIN_TOKEN, QUERY_TOKEN],
    };
    let forbidden = match role {
        Role::Ingest => "`forbidden_host` or `cross_origin` (open mode only)",
        Role::Admin | Role::AdminOrQueryToken => {
            "`forbidden`: an ingest token where the admin token is needed; or `forbidden_host` / `cross_origin` (open mode only)"
        }
    };
    for_each_operation(routes, |operation| {
        operation.security = Some(schemes.iter().map(|s| SecurityRequirement::new(*s, Vec::<String>::new())).collect());
        operation.responses.responses.insert("401".into(), error_response("`unauthorized`: the token is missing or unknown (only when tokens are configured)"));
        operation.responses.responses.insert("403".into(), error_response(forbidden));
    });
}

/// The whole document: `paths` as the routers registered them, with the
/// header, the security schemes, the shared schemas and open mode's 403.
pub fn document(mut paths: OpenApi) -> OpenApi {
    paths.info = InfoBuilder::new()
        .title("Sluice HTTP API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "The contract of API.md, generated from the handlers. With no tokens configured the server runs open (every \
             route without a token, loopback only); with tokens, each guarded route names the tokens it takes.",
        ))
        .build();
    let components = paths.components.get_or_insert_with(Default::default);
    components.schemas.insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    let bearer = || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
    components.security_schemes.insert(ADMIN_TOKEN.into(), bearer());
    components.security_schemes.insert(INGEST_TOKEN.into(), bearer());
    components
        .security_schemes
        .insert(QUERY_TOKEN.into(), SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new(QUERY_TOKEN))));
    for_each_operation(&mut paths, |operation| {
        operation.responses.responses.entry("403".into()).or_insert_with(|| error_response("`forbidden_host` or `cross_origin` (open mode only)"));
    });
    paths
}

/// An error answer with the shared [`ErrorBody`].
fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name(ErrorBody::name()))).build();
    RefOr::T(ResponseBuilder::new().description(description).content("application/json", content).build())
}

fn for_each_operation(document: &mut OpenApi, mut f: impl FnMut(&mut Operation)) {
    for item in document.paths.paths.values_mut() {
        for operation in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.head, &mut item.options, &mut item.trace]
            .into_iter()
            .flatten()
        {
            f(operation);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// Every `$ref` in `value`.
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    out.push(target);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_is_3_1_and_every_reference_resolves() {
        let document: Value = serde_json::from_str(&crate::api::document().to_json().unwrap()).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        let mut targets = Vec::new();
        refs(&document, &mut targets);
        assert!(targets.len() > 20, "the answers refer to shared schemas: {targets:?}");
        for target in targets {
            let name = target.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{target}: not a schema reference"));
            assert!(document["components"]["schemas"].get(name).is_some(), "{target} does not resolve");
        }
        // Described by the very types that write the answers.
        let schemas = &document["components"]["schemas"];
        assert_eq!(schemas["DlqEntry"]["properties"]["event"]["$ref"], "#/components/schemas/Event");
        assert_eq!(schemas["Event"]["required"], serde_json::json!(["id", "type", "source", "timestamp", "data"]));
        assert_eq!(schemas["ErrorBody"]["required"], serde_json::json!(["error", "message"]));
    }

    #[test]
    fn guarded_routes_name_their_tokens_and_public_ones_none() {
        let document: Value = serde_json::from_str(&crate::api::document().to_json().unwrap()).unwrap();
        let security = |path: &str, method: &str| document["paths"][path][method]["security"].clone();
        assert_eq!(security("/v1/pipelines/{id}/events", "post"), serde_json::json!([{"ingest_token": []}, {"admin_token": []}]));
        assert_eq!(security("/v1/pipelines/{id}/windows/{window}/live", "get"), serde_json::json!([{"admin_token": []}, {"access_token": []}]));
        assert_eq!(security("/v1/plugins/{name}", "put"), serde_json::json!([{"admin_token": []}]));
        assert_eq!(security("/metrics", "get"), serde_json::json!([{"admin_token": []}]));
        for public in ["/healthz", "/readyz", "/", "/openapi.json"] {
            assert_eq!(security(public, "get"), Value::Null, "{public} needs no token");
            assert!(document["paths"][public]["get"]["responses"].get("401").is_none(), "{public} never answers 401");
        }
        assert!(document["paths"]["/v1/pipelines"]["get"]["responses"].get("401").is_some());
    }

    /// The router and the document come from one list only while every
    /// route is added with `routes!`: a plain `.route(...)` (or a nested
    /// service) in the API's sources would serve a path the document omits.
    #[test]
    fn no_route_bypasses_the_document() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
        let mut sources = vec![dir.clone(), dir.join("ingest")];
        let mut checked = 0;
        while let Some(dir) = sources.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    // The code only: the tests below may name what they look for.
                    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                    for bypass in [".route(", ".route_service(", ".nest(", ".nest_service("] {
                        assert!(!code.contains(bypass), "{} uses `{bypass}`: add routes with `routes!` so they are documented", path.display());
                    }
                    let plain_routers = code.matches("Router::new()").count() - code.matches("OpenApiRouter::new()").count();
                    assert_eq!(plain_routers, 0, "{} builds a plain axum Router: its routes would be undocumented", path.display());
                    checked += 1;
                }
            }
        }
        assert!(checked >= 12, "only {checked} API sources found");
    }
}
