//! Disconnecting a user on every node: the API's `POST /users/{name}/disconnect`.
//!
//! The broker carries it to every node as a node-wide notice; each closes the user's
//! connections there with 4000 and the reason (see `sessions`).

use skat_broker::Broker;
use skat_protocol::{Invalid, validate_name};

use crate::metrics::BrokerCall;
use crate::state::AppState;

/// The reason a disconnected user sees when the caller gives none.
const DEFAULT_REASON: &str = "disconnected by the application";

/// A checked request to disconnect a user.
pub(crate) struct Disconnect {
    name: String,
}

impl Disconnect {
    /// Checks the user's name.
    pub(crate) fn parse(name: String) -> Result<Self, Invalid> {
        validate_name(&name)?;
        Ok(Self { name })
    }

    /// Tells every node, with `reason` (a generic one when it is absent or blank).
    pub(crate) async fn run<B: Broker>(
        self,
        state: &AppState<B>,
        reason: Option<String>,
    ) -> Result<(), B::Error> {
        let reason = reason
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_REASON.to_owned());
        let told = state.broker().disconnect(&self.name, &reason);
        state.metrics().timed(BrokerCall::Disconnect, told).await
    }
}
