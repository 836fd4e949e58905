//! The chat logic of Skat's web client, with no browser in it: what the UI shows ([`state::Chat`],
//! a reducer over protocol frames), one room's messages and pending sends ([`room::Room`]), the
//! token's life and its refreshes ([`session::Session`]), how rooms and senders are named on
//! screen ([`label`]), and the page fragment that carries a name, a token and a token URL
//! ([`fragment`]).
//!
//! It is a library so that the wasm binary (`main.rs` and its `ui` components) uses it through
//! its public API, and its unit tests run natively with plain `cargo test`.

pub mod fragment;
pub mod label;
pub mod room;
pub mod session;
pub mod state;
