//! What a client keeps of its [`ClientConfig`]: every setting it consults after
//! [`Client::new`](super::Client::new). The configured directories become its known
//! directories and the clock floor its first counter base, so neither is kept twice,
//! and a build without the `listen` feature keeps no interest.

use super::{gated, ClientConfig, Subscribe};
use crate::auth::Keys;
use crate::interest::Interest;
use crate::name::Environment;
use crate::time::Duration;

/// The interest, held by a build that can discover.
#[cfg(feature = "listen")]
type InterestSlot = Option<Interest>;
#[cfg(not(feature = "listen"))]
type InterestSlot = gated::Absent<Interest>;

/// The settings a running client consults (see [`ClientConfig`] for each).
#[derive(Clone, Debug)]
pub(super) struct Settings {
    pub(super) environment: Environment,
    pub(super) registrant: u64,
    pub(super) interest: InterestSlot,
    pub(super) lease: Duration,
    pub(super) request_timeout: Duration,
    pub(super) max_attempts: u8,
    pub(super) failover_after: Duration,
    pub(super) directory_timeout: Duration,
    pub(super) failover_grace: Duration,
    pub(super) snapshot_pages: u8,
    pub(super) max_datagram: usize,
    pub(super) keys: Option<Keys>,
    pub(super) subscribe: Subscribe,
}

impl Settings {
    /// The settings of `config`. Its interest is dropped in a build that cannot
    /// discover ([`Client::new`](super::Client::new) refuses one there first).
    pub(super) fn new(config: ClientConfig) -> Self {
        let mut interest = InterestSlot::default();
        if let Some(wanted) = config.interest {
            gated::Slot::set(&mut interest, wanted);
        }
        Settings {
            environment: config.environment,
            registrant: config.registrant,
            interest,
            lease: config.lease,
            request_timeout: config.request_timeout,
            max_attempts: config.max_attempts,
            failover_after: config.failover_after,
            directory_timeout: config.directory_timeout,
            failover_grace: config.failover_grace,
            snapshot_pages: config.snapshot_pages,
            max_datagram: config.max_datagram,
            keys: config.keys,
            subscribe: config.subscribe,
        }
    }

    /// The interest sent in snapshot, repair and subscription requests: everything
    /// when there is none.
    pub(super) fn interest_or_all(&self) -> Interest {
        self.interest.as_ref().cloned().unwrap_or_default()
    }
}
