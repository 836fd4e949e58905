//! The OpenAPI 3.1 document of the server API, generated from the endpoints' annotations and the
//! body types of `skat_protocol::api`, served at `/api/v1/openapi.json` (no key needed: it
//! describes the API, nothing of the data).

use axum::http::StatusCode;
use axum::response::Response;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::{changes, json, rooms, search};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Skat server API",
        description = "For application backends: publish, edit, delete and react as a user or the system, read history and members, search messages, list rooms, disconnect users. Every call but this document needs `Authorization: Bearer <key>`. See API.md."
    ),
    servers((url = "/api/v1")),
    paths(
        rooms::publish,
        changes::edit,
        changes::delete,
        changes::react,
        rooms::history,
        search::search,
        rooms::members,
        rooms::disconnect,
        rooms::list
    ),
    modifiers(&BearerKey)
)]
struct ApiDoc;

/// Declares the `api_key` bearer scheme the endpoints refer to.
struct BearerKey;

impl utoipa::Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as JSON.
pub(crate) fn text() -> String {
    // The document is built from static annotations; serializing it cannot fail.
    ApiDoc::openapi().to_json().unwrap_or_default()
}

/// `GET /api/v1/openapi.json`.
pub(super) async fn document() -> Response {
    json(StatusCode::OK, text())
}
