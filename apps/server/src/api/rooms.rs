//! The endpoints of the server API (see `API.md`), each annotated for the OpenAPI document.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use skat_broker::{Broker, Published};
use skat_protocol::api::{
    ApiError, Disconnect, Members, MessagesPage, PostMessage, RoomInfo, Rooms, decode_api,
    encode_api,
};
use skat_protocol::{ErrorCode, Invalid, Message};

use super::{Authorized, failure, invalid, json, unavailable};
use crate::metrics::Source;
use crate::ops::{self, History, Publish, RoomList, Sender};
use crate::state::AppState;

/// `?before=&limit=` of a history page.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct HistoryQuery {
    /// Only messages strictly older than this id; the latest page when absent.
    before: Option<String>,
    /// Page size, 1–100; 50 when absent.
    limit: Option<u32>,
}

/// `?after=&limit=` of a members page.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct MembersQuery {
    /// Only users whose names sort after this one (the `next` of the previous page).
    after: Option<String>,
    /// Page size, 1–1000; 1000 when absent.
    limit: Option<u32>,
}

/// `?after=&limit=` of a rooms page.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RoomsQuery {
    /// Only rooms whose names sort after this one (the last name of the previous page).
    after: Option<String>,
    /// Page size, 1–1000; 100 when absent.
    limit: Option<usize>,
}

/// Publishes a message to a room, as a user or as the system.
#[utoipa::path(
    post,
    path = "/rooms/{room}/messages",
    params(("room" = String, Path, description = "The room")),
    request_body = PostMessage,
    responses(
        (status = 201, description = "Published: the stored message", body = Message),
        (status = 200, description = "A retry of a message already published (same `from` and `nonce` within 2 minutes): the original, published once", body = Message),
        (status = 400, description = "Invalid room, sender, body, `reply_to` (`invalid_reply`: malformed, or not a message the room holds) or nonce", body = ApiError),
        (status = 401, description = "Missing or wrong API key", body = ApiError),
        (status = 503, description = "The broker is unavailable; retrying with the same nonce is safe", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub(super) async fn publish<B: Broker>(
    State(state): State<AppState<B>>,
    _: Authorized,
    Path(room): Path<String>,
    body: String,
) -> Response {
    let post: PostMessage = match decode_api(&body) {
        Ok(post) => post,
        Err(err) => return failure(StatusCode::BAD_REQUEST, "bad_request", &err),
    };
    let post = Publish {
        room,
        from: Sender::Named(post.from),
        body: post.body,
        nonce: post.nonce,
        reply_to: post.reply_to,
    };
    if let Err(refused) = post.check(ops::any_room) {
        return invalid(&refused);
    }
    match post.run(&state, Source::Api).await {
        Ok(Published::New(message)) => json(StatusCode::CREATED, encode_api(&message)),
        Ok(Published::Duplicate(message)) => json(StatusCode::OK, encode_api(&message)),
        Ok(Published::NoSuchReply) => invalid(&Invalid {
            code: ErrorCode::InvalidReply,
            message: "reply_to is not a message of the room".into(),
        }),
        Err(err) => unavailable("publish", &err),
    }
}

/// A page of a room's history, oldest first.
#[utoipa::path(
    get,
    path = "/rooms/{room}/messages",
    params(("room" = String, Path, description = "The room"), HistoryQuery),
    responses(
        (status = 200, description = "The page", body = MessagesPage),
        (status = 400, description = "Invalid room, id or limit", body = ApiError),
        (status = 401, description = "Missing or wrong API key", body = ApiError),
        (status = 503, description = "The broker is unavailable", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub(super) async fn history<B: Broker>(
    State(state): State<AppState<B>>,
    _: Authorized,
    Path(room): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Response {
    let history = History::parse(room, ops::any_room, query.limit, query.before.as_deref());
    let history = match history {
        Ok(history) => history,
        Err(refused) => return invalid(&refused),
    };
    match history.run(&state).await {
        Ok(page) => {
            let page = MessagesPage {
                room: page.room,
                messages: page.messages,
                has_more: page.has_more,
            };
            json(StatusCode::OK, encode_api(&page))
        }
        Err(err) => unavailable("history", &err),
    }
}

/// A page of the users online in a room, on every node, in name order.
#[utoipa::path(
    get,
    path = "/rooms/{room}/members",
    params(("room" = String, Path, description = "The room"), MembersQuery),
    responses(
        (status = 200, description = "The page, sorted; `next` when more follow", body = Members),
        (status = 400, description = "Invalid room, cursor or limit", body = ApiError),
        (status = 401, description = "Missing or wrong API key", body = ApiError),
        (status = 503, description = "The broker is unavailable", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub(super) async fn members<B: Broker>(
    State(state): State<AppState<B>>,
    _: Authorized,
    Path(room): Path<String>,
    Query(query): Query<MembersQuery>,
) -> Response {
    let members = ops::Members::parse(room, ops::any_room, query.limit, query.after);
    let members = match members {
        Ok(members) => members,
        Err(refused) => return invalid(&refused),
    };
    match members.run(&state).await {
        Ok(page) => {
            let members = Members {
                room: page.room,
                members: page.members,
                next: page.next,
            };
            json(StatusCode::OK, encode_api(&members))
        }
        Err(err) => unavailable("members", &err),
    }
}

/// Closes every connection of a user, on every node, with a reason the user sees.
#[utoipa::path(
    post,
    path = "/users/{name}/disconnect",
    params(("name" = String, Path, description = "The user")),
    request_body(content = Disconnect, description = "Optional: the reason (an empty body gives a generic one)"),
    responses(
        (status = 204, description = "Sent to every node: each closes the user's connections with close code 4000 and the reason"),
        (status = 400, description = "Invalid name or body", body = ApiError),
        (status = 401, description = "Missing or wrong API key", body = ApiError),
        (status = 503, description = "The broker is unavailable", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub(super) async fn disconnect<B: Broker>(
    State(state): State<AppState<B>>,
    _: Authorized,
    Path(name): Path<String>,
    body: String,
) -> Response {
    let disconnect = match ops::Disconnect::parse(name) {
        Ok(disconnect) => disconnect,
        Err(refused) => return invalid(&refused),
    };
    let request: Disconnect = if body.trim().is_empty() {
        Disconnect::default()
    } else {
        match decode_api(&body) {
            Ok(request) => request,
            Err(err) => return failure(StatusCode::BAD_REQUEST, "bad_request", &err),
        }
    };
    match disconnect.run(&state, request.reason).await {
        Ok(()) => json(StatusCode::NO_CONTENT, String::new()),
        Err(err) => unavailable("disconnect", &err),
    }
}

/// Rooms in name order, with their member counts: those some node has subscribed to (Redis),
/// or that hold messages or members (embedded broker).
#[utoipa::path(
    get,
    path = "/rooms",
    params(RoomsQuery),
    responses(
        (status = 200, description = "A page of rooms", body = Rooms),
        (status = 400, description = "Invalid limit", body = ApiError),
        (status = 401, description = "Missing or wrong API key", body = ApiError),
        (status = 503, description = "The broker is unavailable", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub(super) async fn list<B: Broker>(
    State(state): State<AppState<B>>,
    _: Authorized,
    Query(query): Query<RoomsQuery>,
) -> Response {
    let list = match RoomList::parse(query.after, query.limit) {
        Ok(list) => list,
        Err(refused) => return invalid(&refused),
    };
    match list.run(&state).await {
        Ok(page) => {
            let rooms = Rooms {
                rooms: page
                    .rooms
                    .into_iter()
                    .map(|room| RoomInfo {
                        name: room.name,
                        members: room.members,
                    })
                    .collect(),
                has_more: page.has_more,
            };
            json(StatusCode::OK, encode_api(&rooms))
        }
        Err(err) => unavailable("rooms", &err),
    }
}
