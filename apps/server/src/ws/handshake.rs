//! The WebSocket opening handshake (RFC 6455 §4.2) on top of the HTTP server.
//!
//! The router answers the upgrade request itself; once hyper has sent the `101` response, the
//! raw TCP stream is taken back from hyper (with any bytes it read past the request) so the
//! connection runs on a [`super::WsStream`] with nothing of the HTTP stack left behind.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use base64::Engine as _;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::net::TcpStream;

/// Why a request is not a WebSocket upgrade Skat accepts; each maps to an HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Rejection {
    /// Not `GET`, or missing `Connection: upgrade` / `Upgrade: websocket` / the key.
    #[error("not a websocket upgrade request")]
    NotUpgrade,
    /// A WebSocket version other than 13.
    #[error("unsupported websocket version (only 13)")]
    Version,
}

impl Rejection {
    /// The HTTP answer to the client.
    pub(crate) fn response(self) -> Response<Body> {
        let mut response = Response::new(Body::from(self.to_string()));
        match self {
            Self::NotUpgrade => *response.status_mut() = StatusCode::BAD_REQUEST,
            Self::Version => {
                *response.status_mut() = StatusCode::UPGRADE_REQUIRED;
                response.headers_mut().insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
            }
        }
        response
    }
}

/// Checks an upgrade request and builds its `101 Switching Protocols` answer.
pub(crate) fn accept(method: &Method, headers: &HeaderMap) -> Result<Response<Body>, Rejection> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    if method != Method::GET
        || !has_token(header::CONNECTION, "upgrade")
        || !has_token(header::UPGRADE, "websocket")
    {
        return Err(Rejection::NotUpgrade);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v != "13")
    {
        return Err(Rejection::Version);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(Rejection::NotUpgrade)?;
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let out = response.headers_mut();
    out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    out.insert(header::SEC_WEBSOCKET_ACCEPT, accept_key(key.as_bytes()));
    Ok(response)
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
fn accept_key(key: &[u8]) -> HeaderValue {
    let mut sha1 = Sha1::default();
    sha1.update(key);
    sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let encoded = base64::engine::general_purpose::STANDARD.encode(sha1.finalize());
    // Base64 is always a valid header value.
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// An upgraded connection's byte stream: the TCP socket itself when the HTTP server ran on
/// one (always, in `skat-server`), hyper's boxed stream otherwise.
pub(crate) enum Upgraded {
    /// The raw socket and the bytes hyper read past the request.
    Tcp(TcpStream, Bytes),
    /// Anything else hyper served.
    Other(TokioIo<hyper::upgrade::Upgraded>),
}

impl Upgraded {
    /// Takes the stream back from hyper.
    pub(crate) fn from_hyper(upgraded: hyper::upgrade::Upgraded) -> Self {
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => Self::Tcp(parts.io.into_inner(), parts.read_buf),
            Err(upgraded) => Self::Other(TokioIo::new(upgraded)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn refuses_what_is_not_an_upgrade() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        headers.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("x"));
        assert_eq!(
            accept(&Method::GET, &headers).unwrap_err(),
            Rejection::Version
        );
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        assert_eq!(
            accept(&Method::GET, &headers).unwrap().status(),
            StatusCode::SWITCHING_PROTOCOLS
        );
        assert_eq!(
            accept(&Method::POST, &headers).unwrap_err(),
            Rejection::NotUpgrade
        );
        headers.remove(header::UPGRADE);
        assert_eq!(
            accept(&Method::GET, &headers).unwrap_err(),
            Rejection::NotUpgrade
        );
    }
}
