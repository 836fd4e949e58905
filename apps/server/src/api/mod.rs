//! The server API: HTTP endpoints under `/api/v1` for application backends (`API.md`).
//!
//! Off unless the operator sets an API key (`--api-key`); every call but the OpenAPI document
//! must then carry `Authorization: Bearer <key>`, compared in constant time. Bodies are JSON, in
//! the types of `skat_protocol::api` (this crate never touches JSON itself). Each call goes
//! through the node's broker, so it works the same on any node: a message published on node A
//! reaches members on node B, and a disconnect reaches the user's connections on every node.
//!
//! - `rooms`: the endpoints of rooms, messages, members and users;
//! - `changes`: the endpoints that change a message (edit, delete, react);
//! - `search`: the search of a room's messages;
//! - `openapi`: the OpenAPI document, generated from the endpoints' annotations and the body
//!   types.

mod changes;
mod openapi;
mod rooms;
mod search;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use skat_broker::Broker;
use skat_protocol::Invalid;
use skat_protocol::api::{ApiError, encode_api};

use crate::state::AppState;

/// The `/api/v1` routes, when the API is on.
pub(crate) fn router<B: Broker>() -> Router<AppState<B>> {
    Router::new()
        .route("/openapi.json", get(openapi::document))
        .route("/rooms", get(rooms::list::<B>))
        .route(
            "/rooms/{room}/messages",
            post(rooms::publish::<B>).get(rooms::history::<B>),
        )
        .route(
            "/rooms/{room}/messages/{id}",
            patch(changes::edit::<B>).delete(changes::delete::<B>),
        )
        .route(
            "/rooms/{room}/messages/{id}/reactions",
            post(changes::react::<B>),
        )
        .route("/rooms/{room}/members", get(rooms::members::<B>))
        .route("/rooms/{room}/search", get(search::search::<B>))
        .route("/users/{name}/disconnect", post(rooms::disconnect::<B>))
        .fallback(|| async { failure(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
}

/// Proof that a request carried the API key: handlers take it as an argument.
pub(crate) struct Authorized;

impl<B: Broker> FromRequestParts<AppState<B>> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<B>,
    ) -> Result<Self, Self::Rejection> {
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        match (&state.config().api_key, given) {
            (Some(key), Some(given)) if key.matches(given.trim()) => Ok(Self),
            _ => {
                let mut response = failure(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "a valid API key is required: Authorization: Bearer <key>",
                );
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                Err(response)
            }
        }
    }
}

/// A JSON response.
fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A failed call: `status` with an [`ApiError`] body.
fn failure(status: StatusCode, code: &str, message: &str) -> Response {
    let error = ApiError {
        code: code.to_owned(),
        message: message.to_owned(),
    };
    json(status, encode_api(&error))
}

/// A request the protocol's checks refused: 400 with the protocol's code.
fn invalid(invalid: &Invalid) -> Response {
    failure(
        StatusCode::BAD_REQUEST,
        invalid.code.as_str(),
        &invalid.message,
    )
}

/// The broker could not serve the call: 503, its error logged, not sent.
fn unavailable(what: &str, err: &dyn std::error::Error) -> Response {
    tracing::warn!(error = %err, "API: {what} failed");
    failure(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the broker is unavailable, retry",
    )
}
