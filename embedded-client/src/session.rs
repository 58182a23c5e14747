//! What both drivers share: the core client, checked against the driver's buffers and
//! address family, with smoltcp endpoints at its edges. A driver only moves datagrams
//! between this and a socket, and converts its clock.

use crate::config::{Config, Error};
use crate::endpoint::{from_endpoint, to_endpoint};
use herald_core::{Client, ClientEvent, Discovered, Instant};
use smoltcp::wire::IpEndpoint;

/// Most datagrams a driver sends in one wake-up before it lets others run; what is left
/// goes out on the next turn, at once.
pub(crate) const TRANSMIT_BURST: usize = 16;

/// The core client and the group it follows.
pub(crate) struct Session<'a, const R: usize> {
    client: Client<'a, R>,
    group: IpEndpoint,
}

impl<'a, const R: usize> Session<'a, R> {
    /// Checks `config` against this build and a datagram buffer of `datagram` bytes, and
    /// makes the client over `slots` and `index`.
    pub(crate) fn new(
        config: Config,
        slots: &'a mut [Discovered],
        index: &'a mut [u32],
        datagram: usize,
    ) -> Result<Self, Error> {
        if !config.group.ip().is_multicast() {
            return Err(Error::GroupNotMulticast);
        }
        let group = to_endpoint(config.group)?;
        for directory in config.client.directories.iter() {
            to_endpoint(directory.socket_addr())?;
        }
        if datagram < config.client.max_datagram {
            return Err(Error::DatagramBuffer);
        }
        let client = Client::new(config.client, slots, index)?;
        Ok(Session { client, group })
    }

    /// The group to join; the socket binds to its port.
    pub(crate) fn group(&self) -> IpEndpoint {
        self.group
    }

    /// The client, to query.
    pub(crate) fn client(&self) -> &Client<'a, R> {
        &self.client
    }

    /// The client, to register, unregister or take events.
    pub(crate) fn client_mut(&mut self) -> &mut Client<'a, R> {
        &mut self.client
    }

    /// A datagram arrived from `from`.
    pub(crate) fn receive(&mut self, now: Instant, from: IpEndpoint, bytes: &[u8]) {
        self.client.handle_datagram(now, from_endpoint(from), bytes);
    }

    /// Tells the client the time, if its deadline has passed.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self
            .client
            .poll_timeout()
            .is_some_and(|deadline| deadline <= now)
        {
            self.client.handle_timeout(now);
        }
    }

    /// The next datagram to send, written into `buf`: its destination and length.
    /// Datagrams for a destination this build cannot reach (an IPv6 directory learned
    /// from a beacon without the `ipv6` feature) are dropped.
    pub(crate) fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Option<(IpEndpoint, usize)> {
        for _ in 0..TRANSMIT_BURST {
            let transmit = self.client.poll_transmit(now, buf)?;
            match to_endpoint(transmit.destination) {
                Ok(endpoint) => return Some((endpoint, transmit.len)),
                Err(e) => warn!(
                    "herald: dropped a datagram for port {}: {}",
                    transmit.destination.port(),
                    e
                ),
            }
        }
        None
    }

    /// When the client next needs [`Session::handle_timeout`].
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.client.poll_timeout()
    }

    /// The next event, logged.
    pub(crate) fn poll_event(&mut self) -> Option<ClientEvent> {
        let event = self.client.poll_event()?;
        match &event {
            ClientEvent::Discovered(s) => info!("herald: discovered {}", s.name().as_str()),
            ClientEvent::Unregistered(s) => info!("herald: {} went away", s.name().as_str()),
            ClientEvent::Evicted(s) => warn!("herald: table full, gave {} up", s.name().as_str()),
            ClientEvent::Registered { name, .. } => info!("herald: registered {}", name.as_str()),
            ClientEvent::Unreachable => warn!("herald: no directory answers"),
            _ => debug!("herald: event"),
        }
        Some(event)
    }
}
