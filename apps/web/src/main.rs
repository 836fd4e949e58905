//! Skat's web client: a Leptos app rendered in the browser, speaking the protocol through
//! `skat-protocol` types. `state` holds the logic (native-testable); `ui` the components and the
//! WebSocket (wasm only).

// Natively only the state logic and its tests are built; the UI that uses the rest is wasm-only.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

mod fragment;
mod room;
mod state;
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
