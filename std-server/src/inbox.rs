//! Datagrams read together: one `recvmmsg(2)` system call for up to [`INBOX_DATAGRAMS`]
//! of them, where `recv_from` costs one call each.
//!
//! A burst of requests (a thousand registrations issued at once, say) is mostly system
//! calls when each datagram is read on its own. The inbox reads what is waiting in
//! one, into slots as large as any UDP datagram, and hands the datagrams out in the
//! order they arrived. Its counterpart for sending is [`Outbox`](crate::outbox::Outbox).

use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Most datagrams one system call reads.
pub const INBOX_DATAGRAMS: usize = 32;
/// One slot: the largest datagram UDP carries (nothing read is ever cut short).
const SLOT: usize = 65_536;

/// Datagrams read by the last [`receive`](Inbox::receive): their bytes, each in a slot
/// of its own, with each one's length and source. It holds no system-call headers
/// between reads, so a task that owns one can move between threads.
pub struct Inbox {
    bytes: Vec<u8>,
    /// Each datagram's slot, length and source.
    got: Vec<(usize, usize, SocketAddr)>,
}

impl Default for Inbox {
    /// An inbox for [`INBOX_DATAGRAMS`] datagrams. Its memory is claimed from the
    /// system only as datagrams fill it.
    fn default() -> Self {
        Inbox {
            bytes: vec![0; INBOX_DATAGRAMS * SLOT],
            got: Vec::with_capacity(INBOX_DATAGRAMS),
        }
    }
}

impl Inbox {
    /// Reads at most `max` (and at most [`INBOX_DATAGRAMS`]) datagrams waiting on
    /// `socket`, without waiting; how many there are to [`get`](Inbox::get). They
    /// replace what the read before left. 0 when none waits, or when the read failed
    /// (logged): the socket then stays readable, and the next wake-up reads on.
    pub fn receive(&mut self, socket: &UdpSocket, max: usize) -> usize {
        self.got.clear();
        let max = max.min(INBOX_DATAGRAMS);
        if max == 0 {
            return 0;
        }
        match socket.try_io(Interest::READABLE, || self.read(socket, max)) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => {
                tracing::debug!(error = %e, "receive failed");
                0
            }
        }
    }

    /// Datagram `i` of the last read (`i` below what it returned) and its source.
    pub fn get(&self, i: usize) -> (&[u8], SocketAddr) {
        let (slot, len, from) = self.got[i];
        (&self.bytes[slot * SLOT..slot * SLOT + len], from)
    }

    /// One `recvmmsg` of up to `max` datagrams.
    fn read(&mut self, socket: &UdpSocket, max: usize) -> io::Result<usize> {
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(max, None);
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
            .bytes
            .chunks_mut(SLOT)
            .take(max)
            .map(|slot| [IoSliceMut::new(slot)])
            .collect();
        let read = recvmmsg(
            socket.as_raw_fd(),
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )?;
        for (slot, message) in read.enumerate() {
            // A UDP datagram always has an IP source; one without is not answerable.
            if let Some(from) = message.address.as_ref().and_then(socket_addr) {
                self.got.push((slot, message.bytes, from));
            }
        }
        Ok(self.got.len())
    }
}

/// The socket address the kernel gave (a datagram's source, say), if it is an IP one.
pub fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More datagrams than one call reads, of different sizes (one as large as UDP
    /// carries), from two senders: each comes out whole, in order, with its source;
    /// `max` bounds a read; an empty socket reads none.
    #[tokio::test]
    async fn reads_whole_datagrams_in_order_with_their_source() {
        let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = receiver.local_addr().unwrap();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut sent = Vec::new();
        for i in 0..INBOX_DATAGRAMS + 5 {
            let (socket, len) = if i % 2 == 0 { (&a, i + 1) } else { (&b, 3 * i) };
            let len = if i == 7 { 65_507 } else { len };
            let datagram: Vec<u8> = (0..len).map(|k| (k + i) as u8).collect();
            socket.send_to(&datagram, to).unwrap();
            sent.push((datagram, socket.local_addr().unwrap()));
        }
        let mut inbox = Inbox::default();
        let mut got = Vec::new();
        receiver.readable().await.unwrap();
        let first = inbox.receive(&receiver, 3);
        assert_eq!(first, 3);
        for round in 0.. {
            let n = if round == 0 {
                first
            } else {
                inbox.receive(&receiver, usize::MAX)
            };
            assert!(n <= INBOX_DATAGRAMS);
            if n == 0 {
                break;
            }
            for i in 0..n {
                let (bytes, from) = inbox.get(i);
                got.push((bytes.to_vec(), from));
            }
        }
        assert_eq!(got, sent);
        assert_eq!(inbox.receive(&receiver, 8), 0);
    }
}
