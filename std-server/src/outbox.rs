//! Datagrams queued to leave together: one `sendmmsg(2)` system call for up to
//! [`OUTBOX_DATAGRAMS`] of them, where `send_to` costs one call each.
//!
//! A directory with many unicast subscribers sends one delivery to each per change; the
//! system calls (and the wake-ups between them) are most of that cost. The outbox keeps
//! the order it was given, and what it could not send (a destination the kernel
//! refuses) is logged and skipped, as a failed `send_to` is.

use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::AsRawFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Most datagrams one system call sends.
pub const OUTBOX_DATAGRAMS: usize = 64;

/// Datagrams waiting for one `sendmmsg`: their bytes end to end, and each one's range and
/// destination. It holds no system-call headers between sends, so a task that owns one
/// can move between threads.
pub struct Outbox {
    bytes: Vec<u8>,
    queued: Vec<(Range<usize>, SocketAddr)>,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            bytes: Vec::new(),
            queued: Vec::with_capacity(OUTBOX_DATAGRAMS),
        }
    }
}

impl Outbox {
    /// Queues `datagram` for `to`; true when the outbox is full and must be sent.
    pub fn push(&mut self, datagram: &[u8], to: SocketAddr) -> bool {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(datagram);
        self.queued.push((start..self.bytes.len(), to));
        self.queued.len() >= OUTBOX_DATAGRAMS
    }

    /// Sends everything queued, in order, waiting while the socket's buffer is full;
    /// returns the bytes sent. A datagram the kernel refuses is logged and skipped.
    pub async fn send(&mut self, socket: &UdpSocket) -> u64 {
        let mut sent_bytes = 0;
        let mut next = 0;
        while next < self.queued.len() {
            match socket.try_io(Interest::WRITABLE, || self.send_from(socket, next)) {
                Ok(sent) => {
                    sent_bytes += self.queued[next..next + sent]
                        .iter()
                        .map(|(range, _)| range.len() as u64)
                        .sum::<u64>();
                    next += sent;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = socket.writable().await {
                        tracing::debug!(error = %e, "socket not writable");
                        break;
                    }
                }
                Err(e) => {
                    // The first datagram of what is left was refused.
                    let to = self.queued[next].1;
                    tracing::debug!(to = %to, error = %e, "send failed");
                    next += 1;
                }
            }
        }
        self.bytes.clear();
        self.queued.clear();
        sent_bytes
    }

    /// One `sendmmsg` of the datagrams from `first` on; how many left (at least one).
    fn send_from(&self, socket: &UdpSocket, first: usize) -> io::Result<usize> {
        let rest = &self.queued[first..];
        let slices: Vec<[IoSlice<'_>; 1]> = rest
            .iter()
            .map(|(range, _)| [IoSlice::new(&self.bytes[range.clone()])])
            .collect();
        let addresses: Vec<Option<SockaddrStorage>> = rest
            .iter()
            .map(|&(_, to)| Some(SockaddrStorage::from(to)))
            .collect();
        let mut headers = MultiHeaders::preallocate(rest.len(), None);
        let sent = sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            &slices,
            &addresses,
            [],
            MsgFlags::empty(),
        )?
        .count();
        if sent == 0 {
            // Not a refusal the kernel names: give up on the first and go on.
            return Err(io::Error::other("sendmmsg sent nothing"));
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More datagrams than one call takes, to two receivers and one address the socket
    /// cannot reach (an IPv6 one from an IPv4 socket): every other datagram arrives, in
    /// order, and the bytes counted are theirs.
    #[tokio::test]
    async fn sends_in_order_and_skips_what_the_kernel_refuses() {
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let unreachable: SocketAddr = "[::1]:9".parse().unwrap();
        let mut outbox = Outbox::default();
        let (mut expected, mut sent, mut calls) = (0, 0, 0);
        for i in 0..150u32 {
            let to = match i % 3 {
                0 => to_a,
                1 => to_b,
                _ if i == 2 => unreachable,
                _ => to_a,
            };
            let datagram = i.to_be_bytes();
            if to != unreachable {
                expected += datagram.len() as u64;
            }
            if outbox.push(&datagram, to) {
                sent += outbox.send(&sender).await;
                calls += 1;
            }
        }
        sent += outbox.send(&sender).await;
        assert_eq!(calls, 150 / OUTBOX_DATAGRAMS, "sent whenever full");
        assert_eq!(sent, expected);
        let mut buf = [0u8; 16];
        let mut last = None;
        let mut got = 0;
        while let Ok(Ok(n)) =
            tokio::time::timeout(std::time::Duration::from_millis(200), a.recv(&mut buf)).await
        {
            let i = u32::from_be_bytes(buf[..n].try_into().unwrap());
            assert!(
                last.is_none_or(|l| l < i),
                "out of order: {last:?} then {i}"
            );
            last = Some(i);
            got += 1;
        }
        assert_eq!(got, 99, "every datagram to the first receiver");
        assert!(outbox.queued.is_empty() && outbox.bytes.is_empty());
    }
}
