//! `GET /rooms/{room}/search`: the API's search of a room's messages by words (see
//! `ops::Search`). Where the broker keeps no index it answers 501 `unsupported`: the server
//! does not implement the call in this deployment, and a retry will not help.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use skat_broker::Broker;
use skat_protocol::ErrorCode;
use skat_protocol::api::{ApiError, SearchPage, encode_api};

use super::{Authorized, failure, invalid, json, unavailable};
use crate::ops::{self, Search};
use crate::state::AppState;

/// `?q=&before=&limit=` of a search.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct SearchQuery {
    /// Words to find, all of them (the last may be a word's start); plain text, not a query
    /// language. At most 256 bytes, no control characters. Required (refused `invalid_query`
    /// when absent, like an empty one).
    q: Option<String>,
    /// Only messages strictly older than this id (the last id of the previous page).
    before: Option<String>,
    /// Page size, 1–50; 20 when absent.
    limit: Option<u32>,
}

/// The room's messages holding every word of `q`, newest first.
#[utoipa::path(
    get,
    path = "/rooms/{room}/search",
    params(("room" = String, Path, description = "The room"), SearchQuery),
    responses(
        (status = 200, description = "The messages found, newest first", body = SearchPage),
        (status = 400, description = "Invalid room, query (`invalid_query`), id or limit", body = ApiError),
        (status = 401, description = "Missing or wrong API key", body = ApiError),
        (status = 501, description = "`unsupported`: this deployment keeps no index of messages (a Redis broker, or an embedded node without a data dir)", body = ApiError),
        (status = 503, description = "The broker is unavailable", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub(super) async fn search<B: Broker>(
    State(state): State<AppState<B>>,
    _: Authorized,
    Path(room): Path<String>,
    Query(query): Query<SearchQuery>,
) -> Response {
    let SearchQuery { q, before, limit } = query;
    let q = q.unwrap_or_default();
    let search = match Search::parse(room, ops::any_room, q, limit, before.as_deref()) {
        Ok(search) => search,
        Err(refused) => return invalid(&refused),
    };
    match search.run(&state).await {
        Ok(Some(found)) => {
            let page = SearchPage {
                room: found.room,
                q: found.q,
                messages: found.messages,
                has_more: found.has_more,
            };
            json(StatusCode::OK, encode_api(&page))
        }
        Ok(None) => failure(
            StatusCode::NOT_IMPLEMENTED,
            ErrorCode::Unsupported.as_str(),
            ops::UNSUPPORTED,
        ),
        Err(err) => unavailable("search", &err),
    }
}
