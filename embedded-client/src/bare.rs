//! The executor-free driver for a bare smoltcp [`Interface`] and [`SocketSet`], for a
//! poll loop like smoltcp's own examples:
//!
//! ```text
//! let mut herald = bare::Herald::<2>::new(config, &mut BUFFERS, &mut iface, &mut sockets)?;
//! herald.register(now, registration)?;
//! loop {
//!     let now = clock.now();
//!     iface.poll(now, &mut device, &mut sockets);
//!     herald.poll(now, &mut sockets);
//!     while let Some(event) = herald.poll_event() { /* … */ }
//!     // Sleep for the shorter of iface.poll_delay(now, &sockets) and herald.poll_delay(now).
//! }
//! ```

use crate::config::{Config, Error};
use crate::session::{Session, TRANSMIT_BURST};
use crate::storage::Buffers;
use crate::time::{from_smoltcp, to_smoltcp};
use herald_core::{Client, ClientError, ClientEvent, Registration, ServiceName};
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::time::{Duration, Instant};

/// Default number of services a client registers itself (the core's default).
pub const DEFAULT_REGISTRATIONS: usize = 4;

/// A Herald client on one UDP socket of a smoltcp [`SocketSet`]; it registers up to `R`
/// services itself (default [`DEFAULT_REGISTRATIONS`]).
pub struct Herald<'a, const R: usize = DEFAULT_REGISTRATIONS> {
    session: Session<'a, R>,
    handle: SocketHandle,
    datagram: &'a mut [u8],
    /// Datagrams are waiting for room in the socket.
    backlog: bool,
}

impl<'a, const R: usize> Herald<'a, R> {
    /// Makes a client over `buffers`: adds a UDP socket bound to the group's port to
    /// `sockets`, and joins the group on `iface`.
    pub fn new<const N: usize, const P: usize, const S: usize, const D: usize>(
        config: Config,
        buffers: &'a mut Buffers<N, P, S, D>,
        iface: &mut Interface,
        sockets: &mut SocketSet<'a>,
    ) -> Result<Self, Error> {
        let parts = buffers.parts();
        let session = Session::new(config, parts.slots, parts.index, parts.datagram.len())?;
        let group = session.group();
        let mut socket = udp::Socket::new(
            udp::PacketBuffer::new(parts.rx_meta, parts.rx),
            udp::PacketBuffer::new(parts.tx_meta, parts.tx),
        );
        socket.bind(group.port).map_err(|_| Error::Bind)?;
        iface
            .join_multicast_group(group.addr)
            .map_err(|_| Error::Join)?;
        let handle = sockets.add(socket);
        Ok(Herald {
            session,
            handle,
            datagram: parts.datagram,
            backlog: false,
        })
    }

    /// Registers a service (or updates one this client registered); [`Herald::poll`]
    /// keeps its lease alive until [`Herald::unregister`].
    pub fn register(
        &mut self,
        now: Instant,
        registration: Registration,
    ) -> Result<(), ClientError> {
        self.session
            .client_mut()
            .register(from_smoltcp(now), registration)
    }

    /// Unregisters one of this client's services.
    pub fn unregister(&mut self, now: Instant, name: &ServiceName) -> Result<(), ClientError> {
        self.session
            .client_mut()
            .unregister(from_smoltcp(now), name)
    }

    /// Asks the directory for everything it holds.
    pub fn request_snapshot(&mut self, now: Instant) {
        self.session
            .client_mut()
            .request_snapshot(from_smoltcp(now));
    }

    /// The client, to look up services, directories and counters.
    pub fn client(&self) -> &Client<'a, R> {
        self.session.client()
    }

    /// Feeds what the socket received, the deadline, and queues what the client sends.
    /// Call it after every `Interface::poll`; returns true when it queued datagrams, so
    /// the interface should be polled again to send them.
    pub fn poll(&mut self, now: Instant, sockets: &mut SocketSet<'_>) -> bool {
        let now = from_smoltcp(now);
        let socket = sockets.get_mut::<udp::Socket<'_>>(self.handle);
        for _ in 0..=socket.packet_recv_capacity() {
            match socket.recv() {
                Ok((bytes, meta)) => self.session.receive(now, meta.endpoint, bytes),
                Err(_) => break,
            }
        }
        self.session.handle_timeout(now);
        let mut queued = false;
        self.backlog = false;
        for _ in 0..TRANSMIT_BURST {
            if !socket.can_send() {
                // Keep the rest in the core until the interface makes room.
                self.backlog = true;
                break;
            }
            let Some((destination, len)) = self.session.poll_transmit(now, self.datagram) else {
                return queued;
            };
            match socket.send_slice(&self.datagram[..len], destination) {
                Ok(()) => queued = true,
                Err(_) => debug!("herald: could not queue a datagram for {}", destination),
            }
        }
        self.backlog = true;
        queued
    }

    /// When [`Herald::poll`] must next run even if nothing arrives.
    pub fn poll_at(&self, now: Instant) -> Option<Instant> {
        if self.backlog {
            return Some(now);
        }
        self.session.poll_timeout().map(to_smoltcp)
    }

    /// How long the loop may sleep before [`Herald::poll`] must run (`None`: until a
    /// datagram arrives).
    pub fn poll_delay(&self, now: Instant) -> Option<Duration> {
        self.poll_at(now)
            .map(|at| if at > now { at - now } else { Duration::ZERO })
    }

    /// The next event. Take them all after every [`Herald::poll`].
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.session.poll_event()
    }
}
