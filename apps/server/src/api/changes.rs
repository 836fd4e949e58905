//! The endpoints that change a message (see `API.md`): edit, delete, react. Each is the HTTP
//! around an operation of `ops`, as in `rooms.rs`. The API acts as any user (`from`) or the
//! system, never as the author (`as_author: false`): its key is the application's, which
//! decides who may change what.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use skat_broker::{Broker, Change, ChangeRefusal, Changed};
use skat_protocol::api::{
    ApiError, DeleteMessage, EditMessage, PostReaction, decode_api, encode_api,
};
use skat_protocol::{Deleted, Edited, Invalid, Reacted, SYSTEM_SENDER, validate_name};

use super::{failure, invalid, json, unavailable};
use crate::ops::{self, Delete, Edit, React};
use crate::state::AppState;

/// The API's `access` (see `ops`): every room, and a named `from` must be a valid name.
fn named(from: Option<&str>) -> impl FnOnce(&str) -> Result<(), Invalid> + '_ {
    move |_room| from.map_or(Ok(()), validate_name)
}

/// Answers a change's outcome: the change as JSON with `created` for a new one (200 for a
/// retry's original, or a reaction that changed nothing); a refusal with its status.
fn answer(
    what: &str,
    changed: Result<Changed, impl std::error::Error>,
    created: StatusCode,
) -> Response {
    let (status, change) = match changed {
        Ok(Changed::New(change)) if !ops::is_no_op(&change) => (created, change),
        Ok(Changed::New(change) | Changed::Duplicate(change)) => (StatusCode::OK, change),
        Ok(Changed::Refused(refusal)) => {
            let status = match refusal {
                ChangeRefusal::NoSuchMessage => StatusCode::NOT_FOUND,
                ChangeRefusal::TooManyReactions => StatusCode::CONFLICT,
                // Never for the API, which does not act as the author.
                ChangeRefusal::NotAuthor => StatusCode::FORBIDDEN,
            };
            let refused = ops::refusal(refusal);
            return failure(status, refused.code.as_str(), &refused.message);
        }
        Err(err) => return unavailable(what, &err),
    };
    let body = match change {
        Change::Edited(c) => encode_api(&c),
        Change::Deleted(c) => encode_api(&c),
        Change::Reacted(c) => encode_api(&c),
        Change::Unknown => String::new(),
    };
    json(status, body)
}

/// Edits a message's body, as a user or as the system.
#[utoipa::path(
    patch,
    path = "/rooms/{room}/messages/{id}",
    params(("room" = String, Path, description = "The room"), ("id" = String, Path, description = "The message")),
    request_body = EditMessage,
    responses(
        (status = 200, description = "Edited (every member received an `edited` frame), or a retry's original: the change", body = Edited),
        (status = 400, description = "Invalid room, sender, id, body or nonce", body = ApiError),
        (status = 401, description = "Missing or wrong API key", body = ApiError),
        (status = 404, description = "`no_such_message`: not a message the room holds, or deleted", body = ApiError),
        (status = 503, description = "The broker is unavailable; retrying with the same nonce is safe", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub(super) async fn edit<B: Broker>(
    State(state): State<AppState<B>>,
    _: super::Authorized,
    Path((room, id)): Path<(String, String)>,
    body: String,
) -> Response {
    let request: EditMessage = match decode_api(&body) {
        Ok(request) => request,
        Err(err) => return failure(StatusCode::BAD_REQUEST, "bad_request", &err),
    };
    let from = request.from;
    let parsed = Edit::parse(
        room,
        named(from.as_deref()),
        &id,
        request.body,
        request.nonce,
    );
    let edit = match parsed {
        Ok(edit) => edit,
        Err(refused) => return invalid(&refused),
    };
    let by = from.unwrap_or_else(|| SYSTEM_SENDER.to_owned());
    answer("edit", edit.run(&state, by, false).await, StatusCode::OK)
}

/// Deletes a message, as a user or as the system: its body is removed from the server.
#[utoipa::path(
    delete,
    path = "/rooms/{room}/messages/{id}",
    params(("room" = String, Path, description = "The room"), ("id" = String, Path, description = "The message")),
    request_body(content = DeleteMessage, description = "Optional: who deletes, and a nonce (an empty body: the system, no nonce)"),
    responses(
        (status = 200, description = "Deleted (every member received a `deleted` frame), or a retry's original: the change", body = Deleted),
        (status = 400, description = "Invalid room, sender, id, nonce or body", body = ApiError),
        (status = 401, description = "Missing or wrong API key", body = ApiError),
        (status = 404, description = "`no_such_message`: not a message the room holds, or already deleted", body = ApiError),
        (status = 503, description = "The broker is unavailable; retrying with the same nonce is safe", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub(super) async fn delete<B: Broker>(
    State(state): State<AppState<B>>,
    _: super::Authorized,
    Path((room, id)): Path<(String, String)>,
    body: String,
) -> Response {
    let request: DeleteMessage = if body.trim().is_empty() {
        DeleteMessage::default()
    } else {
        match decode_api(&body) {
            Ok(request) => request,
            Err(err) => return failure(StatusCode::BAD_REQUEST, "bad_request", &err),
        }
    };
    let from = request.from;
    let delete = match Delete::parse(room, named(from.as_deref()), &id, request.nonce) {
        Ok(delete) => delete,
        Err(refused) => return invalid(&refused),
    };
    let by = from.unwrap_or_else(|| SYSTEM_SENDER.to_owned());
    answer(
        "delete",
        delete.run(&state, by, false).await,
        StatusCode::OK,
    )
}

/// Adds or removes a user's reaction to a message.
#[utoipa::path(
    post,
    path = "/rooms/{room}/messages/{id}/reactions",
    params(("room" = String, Path, description = "The room"), ("id" = String, Path, description = "The message")),
    request_body = PostReaction,
    responses(
        (status = 201, description = "Stored (every member received a `reacted` frame): the change", body = Reacted),
        (status = 200, description = "A retry's original, or a reaction that changes nothing (the current count, with the message's own id): nothing stored", body = Reacted),
        (status = 400, description = "Invalid room, sender, id, emoji or nonce", body = ApiError),
        (status = 401, description = "Missing or wrong API key", body = ApiError),
        (status = 404, description = "`no_such_message`: not a message the room holds, or deleted", body = ApiError),
        (status = 409, description = "`too_many_reactions`: the message has 20 distinct emoji", body = ApiError),
        (status = 503, description = "The broker is unavailable; retrying with the same nonce is safe", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub(super) async fn react<B: Broker>(
    State(state): State<AppState<B>>,
    _: super::Authorized,
    Path((room, id)): Path<(String, String)>,
    body: String,
) -> Response {
    let request: PostReaction = match decode_api(&body) {
        Ok(request) => request,
        Err(err) => return failure(StatusCode::BAD_REQUEST, "bad_request", &err),
    };
    let PostReaction {
        from,
        emoji,
        add,
        nonce,
    } = request;
    let react = match React::parse(room, named(Some(&from)), &id, emoji, add, nonce) {
        Ok(react) => react,
        Err(refused) => return invalid(&refused),
    };
    answer("react", react.run(&state, from).await, StatusCode::CREATED)
}
