//! Skat's web client: a Leptos app rendered in the browser, speaking the protocol through
//! `skat-protocol` types. The crate's library (`skat_web`) holds the logic, native-testable;
//! `ui` the components and the WebSocket (wasm only).

#[cfg(target_arch = "wasm32")]
mod ui;

#[cfg(target_arch = "wasm32")]
fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(ui::App);
}

/// Natively there is no UI; the crate builds so that `state`'s tests run with `cargo test`.
#[cfg(not(target_arch = "wasm32"))]
fn main() {}
