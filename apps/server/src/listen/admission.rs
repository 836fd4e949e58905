//! Who may hold a connection before its WebSocket upgrade.
//!
//! Every accepted connection holds one of the node's handshake slots (`--max-handshakes`) until
//! it upgrades or closes, so that half-sent requests cannot take every file descriptor. A cap
//! on the total alone lets one host take every slot and stop the node from accepting anyone;
//! so each client address (IPv6: each /64, see `AddrKey`) may also hold only its share
//! (`--max-handshakes-per-ip`), and a connection over it is closed as soon as it is accepted,
//! before it costs a slot or a task. Trusted proxies are exempt: behind one, every client has
//! its address, and the total still bounds them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::config::Limits;
use crate::proxy;
use crate::quota::{IpSlot, PerIp};

/// The node's handshake slots and each address's share of them.
pub(crate) struct Admission {
    /// `None`: no limit on the total.
    slots: Option<Arc<Semaphore>>,
    per_ip: Arc<PerIp>,
    /// Slots one address may hold; 0: no limit.
    per_ip_max: usize,
    /// Peers exempt from the per-address share.
    trusted: Vec<IpNet>,
}

/// What one connection holds until its HTTP stage ends: a slot, and its address's share.
pub(crate) struct Ticket {
    _slot: Option<OwnedSemaphorePermit>,
    _share: Option<IpSlot>,
}

/// A slot of the total, not yet given to a connection.
pub(crate) struct Slot(Option<OwnedSemaphorePermit>);

impl Admission {
    pub(crate) fn new(limits: &Limits, trusted: &[IpNet]) -> Self {
        let slots = match limits.max_handshakes {
            0 => None,
            max => Some(Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS)))),
        };
        Self {
            slots,
            per_ip: Arc::default(),
            per_ip_max: limits.handshakes_per_ip(),
            trusted: trusted.to_vec(),
        }
    }

    /// A free slot, if there is one now.
    pub(crate) fn try_slot(&self) -> Option<Slot> {
        match &self.slots {
            None => Some(Slot(None)),
            Some(slots) => match Arc::clone(slots).try_acquire_owned() {
                Ok(permit) => Some(Slot(Some(permit))),
                Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => None,
            },
        }
    }

    /// The next slot to be freed. Never resolves if the semaphore is closed, which it never is.
    pub(crate) async fn slot(&self) -> Slot {
        match &self.slots {
            None => Slot(None),
            Some(slots) => match Arc::clone(slots).acquire_owned().await {
                Ok(permit) => Slot(Some(permit)),
                Err(_) => std::future::pending().await,
            },
        }
    }

    /// Admits a connection from `peer` (canonical) with `slot`, unless its address already
    /// holds its share.
    pub(crate) fn admit(&self, peer: SocketAddr, slot: Slot) -> Option<Ticket> {
        let share = if self.per_ip_max == 0 || self.exempt(peer.ip()) {
            None
        } else {
            Some(PerIp::acquire(&self.per_ip, peer.ip(), self.per_ip_max)?)
        };
        Some(Ticket {
            _slot: slot.0,
            _share: share,
        })
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        proxy::is_trusted(ip, &self.trusted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(text: &str) -> SocketAddr {
        SocketAddr::new(text.parse().unwrap(), 4711)
    }

    fn admission(max_handshakes: usize, per_ip: usize, trusted: &[&str]) -> Admission {
        let limits = Limits {
            max_handshakes,
            max_handshakes_per_ip: Some(per_ip),
            ..Limits::default()
        };
        let trusted: Vec<IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        Admission::new(&limits, &trusted)
    }

    #[test]
    fn an_address_holds_only_its_share_and_others_still_get_in() {
        let gate = admission(10, 2, &[]);
        let admit = |ip| gate.admit(peer(ip), gate.try_slot().unwrap());
        let held = [admit("10.0.0.1").unwrap(), admit("10.0.0.1").unwrap()];
        assert!(admit("10.0.0.1").is_none(), "over its share");
        assert!(admit("::ffff:10.0.0.1").is_none(), "the same host, mapped");
        let other = admit("10.0.0.2").unwrap();
        // Refused connections gave their slot back: 3 are held, 7 free.
        let free: Vec<Slot> = std::iter::from_fn(|| gate.try_slot()).take(20).collect();
        assert_eq!(free.len(), 7);
        drop(free);
        drop(held);
        drop(other);
        assert!(admit("10.0.0.1").is_some(), "shares are given back");
    }

    #[test]
    fn trusted_proxies_are_bounded_only_by_the_total() {
        let gate = admission(4, 1, &["127.0.0.1/32"]);
        let tickets: Vec<Ticket> = (0..4)
            .map(|_| {
                let slot = gate.try_slot().unwrap();
                gate.admit(peer("::ffff:127.0.0.1"), slot).unwrap()
            })
            .collect();
        assert!(gate.try_slot().is_none(), "the total still holds");
        drop(tickets);
        let unlimited = admission(0, 0, &[]);
        let many: Vec<Ticket> = (0..1000)
            .map(|_| {
                unlimited
                    .admit(peer("10.0.0.1"), unlimited.try_slot().unwrap())
                    .unwrap()
            })
            .collect();
        assert_eq!(many.len(), 1000, "0: no limits");
    }
}
