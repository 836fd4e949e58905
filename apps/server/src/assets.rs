//! The web app's files (`--static-dir`, what `just web` builds), served at `/`.
//!
//! `just web` writes a brotli (`.br`) and a gzip (`.gz`) copy beside each file, and puts a
//! content hash in the names of everything `index.html` loads (`web-<hash>.js`, ...). So:
//! - a file goes out compressed when the request's `Accept-Encoding` allows it (brotli first),
//!   straight from its precompressed copy: nothing is compressed per request;
//! - a content-hashed file never changes under its name, so browsers may keep it for a year
//!   without asking again (`immutable`); anything else, `index.html` above all, must be
//!   revalidated on each load (`no-cache`), so a new release is picked up at once.

use std::path::Path;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::services::ServeDir;

/// Caching of a file whose name carries its content hash.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Caching of any other file: kept, but revalidated before each use.
const REVALIDATE: &str = "no-cache";

/// A router serving `dir` at `/`, for the node's fallback.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(dir: &Path) -> Router<S> {
    let files = ServeDir::new(dir).precompressed_br().precompressed_gzip();
    Router::new()
        .fallback_service(files)
        .layer(middleware::from_fn(cache_control))
}

/// Sets `Cache-Control` by the requested file's name.
async fn cache_control(request: Request, next: Next) -> Response {
    let hashed = is_content_hashed(request.uri().path());
    let mut response = next.run(request).await;
    if response.status().is_success() {
        let policy = if hashed { IMMUTABLE } else { REVALIDATE };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    }
    response
}

/// Whether the last segment of `path` is named `<name>-<hash>.<ext>`, the hash 10 lowercase hex
/// digits, as `just web` names the files it hashes.
fn is_content_hashed(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or_default();
    let stem = file.split('.').next().unwrap_or_default();
    stem.rsplit_once('-').is_some_and(|(name, hash)| {
        !name.is_empty()
            && hash.len() == 10
            && hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_are_told_apart() {
        for hashed in [
            "/web-0123456789.js",
            "/web_bg-abcdef0123.wasm",
            "/style-a1b2c3d4e5.css",
            "/sub/app-0000000000.js",
        ] {
            assert!(is_content_hashed(hashed), "{hashed}");
        }
        for plain in [
            "/",
            "/index.html",
            "/favicon.svg",
            "/web.js",
            "/web-0123.js",
            "/web-ABCDEF0123.js",
            "/-0123456789.js",
            "/my-room-name",
        ] {
            assert!(!is_content_hashed(plain), "{plain}");
        }
    }
}
