//! The client side of every measurement: worker processes (`skat-bench worker`, this binary
//! re-executed) that hold the clients, and the coordinator's handle on them.
//!
//! [`fleet`] starts the workers and asks them things over their stdin and stdout, in the lines
//! of [`proto`]; [`worker`] is a worker's own life (opening clients, sending, receiving) and
//! [`wire`] the little of WebSocket and of Skat's frames it needs to stay cheap. The layout (who
//! is where) is in [`proto`], so the coordinator and the workers derive it from the same few
//! numbers.

pub(crate) mod fleet;
pub(crate) mod proto;
pub(crate) mod wire;
pub(crate) mod worker;
