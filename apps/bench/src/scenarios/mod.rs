//! The measurements the bench runs against a deployment with a fleet of clients: a load
//! (clients chatting at a rate), a connection storm, and idle memory. Each returns a result the
//! report shows; the suite, the single commands and the capacity units compose them.

pub(crate) mod idle;
pub(crate) mod load;
pub(crate) mod rate;
pub(crate) mod storm;
