//! Where fresh tokens come from: the application's token URL (`<meta name="skat-token-url">` in
//! the page, else the fragment's `token_url`), fetched with the browser's `fetch`.

use leptos::prelude::{document, window};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{RequestCache, RequestCredentials, RequestInit, Response};

/// The token URL an operator put in the served `index.html`, if any:
/// `<meta name="skat-token-url" content="...">`.
pub(super) fn meta_token_url() -> Option<String> {
    document()
        .query_selector("meta[name='skat-token-url']")
        .ok()
        .flatten()
        .and_then(|meta| meta.get_attribute("content"))
        .map(|url| url.trim().to_owned())
        .filter(|url| !url.is_empty())
}

/// GETs `url` with the page's credentials (the application's session cookie) and reads
/// `{"token": "..."}` from it; the error says what went wrong, for the user.
pub(super) async fn fetch_token(url: &str) -> Result<String, String> {
    let init = RequestInit::new();
    init.set_method("GET");
    init.set_credentials(RequestCredentials::Include);
    init.set_cache(RequestCache::NoStore);
    let response = JsFuture::from(window().fetch_with_str_and_init(url, &init))
        .await
        .map_err(|e| format!("the token URL could not be reached ({})", describe(&e)))?;
    let response: Response = response
        .dyn_into()
        .map_err(|_| "the token URL gave no response".to_owned())?;
    if !response.ok() {
        return Err(format!("the token URL answered {}", response.status()));
    }
    let text = response.text().map_err(|e| describe(&e))?;
    let text = JsFuture::from(text).await.map_err(|e| describe(&e))?;
    skat_web::session::parse_token_response(&text.as_string().unwrap_or_default())
}

/// A JavaScript error as text.
fn describe(error: &JsValue) -> String {
    error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| error.as_string())
        .unwrap_or_else(|| "unknown error".to_owned())
}
