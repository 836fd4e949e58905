//! The chat logic of Skat's web client, with no browser in it: what the UI shows ([`state::Chat`],
//! a reducer over protocol frames), one room's messages and pending sends ([`room::Room`]), and
//! the page fragment that carries a name and a token ([`fragment`]).
//!
//! It is a library so that the wasm binary (`main.rs` and its `ui` components) uses it through
//! its public API, and its unit tests run natively with plain `cargo test`.

pub mod fragment;
pub mod room;
pub mod state;
