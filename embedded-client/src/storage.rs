//! Caller-owned memory for one driver: the discovered-services table, the UDP socket's
//! queues and one datagram buffer. Every size is a const generic with a documented
//! default; nothing is allocated.

use herald_core::{ClientStorage, Discovered};
use smoltcp::socket::udp::PacketMetadata;

/// Default number of discovered services the table holds.
pub const DEFAULT_SERVICES: usize = 16;
/// Default number of datagrams each socket queue holds.
pub const DEFAULT_PACKETS: usize = 4;
/// Default bytes of each socket queue (receive and send).
pub const DEFAULT_SOCKET_BYTES: usize = 4096;
/// Default datagram buffer: the core's default maximum datagram (1400 bytes).
pub const DEFAULT_DATAGRAM: usize = herald_core::wire::DEFAULT_MAX_DATAGRAM;

/// Memory for one driver.
///
/// - `N`: discovered services the table holds (default [`DEFAULT_SERVICES`]);
/// - `P`: datagrams each socket queue holds (default [`DEFAULT_PACKETS`]);
/// - `S`: bytes of each socket queue (default [`DEFAULT_SOCKET_BYTES`]);
/// - `D`: the datagram buffer, at least the configured maximum datagram (default
///   [`DEFAULT_DATAGRAM`]); a received datagram longer than it is dropped.
pub struct Buffers<
    const N: usize = DEFAULT_SERVICES,
    const P: usize = DEFAULT_PACKETS,
    const S: usize = DEFAULT_SOCKET_BYTES,
    const D: usize = DEFAULT_DATAGRAM,
> {
    table: ClientStorage<N>,
    rx_meta: [PacketMetadata; P],
    rx: [u8; S],
    tx_meta: [PacketMetadata; P],
    tx: [u8; S],
    datagram: [u8; D],
}

/// The parts of [`Buffers`], borrowed for as long as the driver lives.
pub(crate) struct Parts<'a> {
    pub(crate) slots: &'a mut [Discovered],
    pub(crate) index: &'a mut [u32],
    pub(crate) rx_meta: &'a mut [PacketMetadata],
    pub(crate) rx: &'a mut [u8],
    pub(crate) tx_meta: &'a mut [PacketMetadata],
    pub(crate) tx: &'a mut [u8],
    pub(crate) datagram: &'a mut [u8],
}

impl<const N: usize, const P: usize, const S: usize, const D: usize> Buffers<N, P, S, D> {
    /// Empty buffers (usable in a `static`).
    pub const fn new() -> Self {
        Buffers {
            table: ClientStorage::new(),
            rx_meta: [PacketMetadata::EMPTY; P],
            rx: [0; S],
            tx_meta: [PacketMetadata::EMPTY; P],
            tx: [0; S],
            datagram: [0; D],
        }
    }

    pub(crate) fn parts(&mut self) -> Parts<'_> {
        let (slots, index) = self.table.parts();
        Parts {
            slots,
            index,
            rx_meta: &mut self.rx_meta,
            rx: &mut self.rx,
            tx_meta: &mut self.tx_meta,
            tx: &mut self.tx,
            datagram: &mut self.datagram,
        }
    }
}

impl<const N: usize, const P: usize, const S: usize, const D: usize> Default
    for Buffers<N, P, S, D>
{
    fn default() -> Self {
        Self::new()
    }
}
