//! Counting frames on one interface of a namespace with a packet socket (`AF_PACKET`,
//! `ETH_P_ALL`, like tcpdump without a filter): per direction, multicast or not, and
//! UDP ports. Bytes are whole frames as the interface carries them: Ethernet (14 B),
//! IPv4 and UDP headers included (no preamble, no FCS). Frames the kernel loops back
//! to the sender's own sockets (multicast loop) are not counted: they never cross the
//! link.

use crate::netns::Side;
use nix::sys::socket::{
    recvfrom, setsockopt, socket, sockopt, AddressFamily, LinkAddr, SockFlag, SockProtocol,
    SockType,
};
use nix::sys::time::TimeVal;
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `sll_pkttype` of a frame this host sent.
const PACKET_OUTGOING: u8 = 4;
/// `sll_pkttype` of a frame addressed to another host.
const PACKET_OTHERHOST: u8 = 3;
/// `sll_pkttype` of a multicast frame looped back to the sender's own sockets.
const PACKET_LOOPBACK: u8 = 5;
/// Receive buffer of the packet socket (forced as root), so that bursts are not lost.
const RCVBUF: usize = 16 << 20;

/// What a frame is, as far as the counts care.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Flow {
    /// Sent by this side (else received).
    pub outgoing: bool,
    /// To a multicast address.
    pub multicast: bool,
    /// IPv4 UDP (else the ports are 0).
    pub udp: bool,
    /// UDP source port.
    pub src: u16,
    /// UDP destination port.
    pub dst: u16,
}

impl Flow {
    /// Whether either port is `port`.
    pub fn port(&self, port: u16) -> bool {
        self.udp && (self.src == port || self.dst == port)
    }
}

/// Frames and bytes.
#[derive(Clone, Copy, Default, Debug, PartialEq)]
pub struct Tally {
    /// Frames.
    pub packets: u64,
    /// Bytes of the frames.
    pub bytes: u64,
    /// When the capture saw the last of them (as its thread read it).
    pub last: Option<Instant>,
}

/// Tallies by flow.
#[derive(Clone, Default, Debug)]
pub struct Counts(HashMap<Flow, Tally>);

impl Counts {
    /// What was counted after `earlier` (a snapshot of the same capture).
    pub fn since(&self, earlier: &Counts) -> Counts {
        let mut out = self.clone();
        for (flow, t) in &earlier.0 {
            if let Some(o) = out.0.get_mut(flow) {
                o.packets -= t.packets;
                o.bytes -= t.bytes;
                if o.packets == 0 {
                    o.last = None;
                }
            }
        }
        Counts(out.0)
    }

    /// Sum over the flows `which` accepts.
    pub fn sum(&self, which: impl Fn(&Flow) -> bool) -> Tally {
        self.0
            .iter()
            .filter(|(f, _)| which(f))
            .fold(Tally::default(), |acc, (_, t)| Tally {
                packets: acc.packets + t.packets,
                bytes: acc.bytes + t.bytes,
                last: acc.last.max(t.last),
            })
    }
}

/// A running capture; stops when dropped (or after its time limit).
pub struct Capture {
    counts: Arc<Mutex<Counts>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Capture {
    /// Starts counting frames on `iface` of `side`, for at most `limit`.
    pub fn start(side: &Side, iface: &str, limit: Duration) -> Result<Capture, String> {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, started) = std::sync::mpsc::channel();
        let (c, s, iface) = (counts.clone(), stop.clone(), iface.to_owned());
        let thread = side.spawn(move || {
            let setup = open(&iface);
            let (fd, index) = match setup {
                Ok(x) => {
                    let _ = ready.send(Ok(()));
                    x
                }
                Err(e) => {
                    let _ = ready.send(Err(e.clone()));
                    return Err(e);
                }
            };
            let mut buf = vec![0u8; 70_000];
            let start = Instant::now();
            while !s.load(Ordering::Relaxed) && start.elapsed() < limit {
                let Ok((n, Some(addr))) = recvfrom::<LinkAddr>(fd.as_raw_fd(), &mut buf) else {
                    continue;
                };
                let kind = addr.pkttype();
                if addr.ifindex() != index || kind == PACKET_LOOPBACK || kind == PACKET_OTHERHOST {
                    continue;
                }
                let flow = classify(&buf[..n], kind == PACKET_OUTGOING);
                let mut counts = c.lock().map_err(|_| "capture lock poisoned")?;
                let t = counts.0.entry(flow).or_default();
                t.packets += 1;
                t.bytes += n as u64;
                t.last = Some(Instant::now());
            }
            Ok(())
        });
        match started.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(Capture {
                counts,
                stop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the capture thread did not start".into()),
        }
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Counts {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A packet socket with a 100 ms receive timeout, and the index of `iface`.
fn open(iface: &str) -> Result<(std::os::fd::OwnedFd, usize), String> {
    let index = nix::net::if_::if_nametoindex(iface).map_err(|e| format!("{iface}: {e}"))?;
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::empty(),
        SockProtocol::EthAll,
    )
    .map_err(|e| format!("packet socket: {e}"))?;
    setsockopt(&fd, sockopt::RcvBufForce, &RCVBUF).map_err(|e| format!("SO_RCVBUFFORCE: {e}"))?;
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 100_000))
        .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    Ok((fd, index as usize))
}

/// The flow of an Ethernet frame.
fn classify(frame: &[u8], outgoing: bool) -> Flow {
    let mut flow = Flow {
        outgoing,
        multicast: frame.first().is_some_and(|b| b & 1 == 1),
        udp: false,
        src: 0,
        dst: 0,
    };
    let ipv4 = frame.get(12..14) == Some(&[0x08, 0x00]);
    let Some(ip) = frame.get(14..).filter(|ip| ipv4 && ip.len() >= 20) else {
        return flow;
    };
    flow.multicast = ip[16] & 0xf0 == 0xe0;
    let header = usize::from(ip[0] & 0x0f) * 4;
    if ip[9] == 17 {
        if let Some(udp) = ip.get(header..header + 4) {
            flow.udp = true;
            flow.src = u16::from_be_bytes([udp[0], udp[1]]);
            flow.dst = u16::from_be_bytes([udp[2], udp[3]]);
        }
    }
    flow
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_udp_multicast_and_counts_differences() {
        let mut frame = vec![0x01, 0, 0x5e, 0, 0, 0xfb, 0, 0, 0, 0, 0, 0, 0x08, 0x00];
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 1, 17, 0, 0, 10, 0, 0, 1, 224, 0, 0, 251,
        ];
        frame.append(&mut ip);
        frame.extend_from_slice(&[0x14, 0xe9, 0x14, 0xe9, 0, 8, 0, 0]);
        let flow = classify(&frame, false);
        assert!(flow.multicast && flow.udp && flow.port(5353) && !flow.outgoing);
        frame[9 + 14] = 6;
        assert!(!classify(&frame, true).udp);
        let mut a = Counts::default();
        a.0.insert(
            flow,
            Tally {
                packets: 1,
                bytes: 50,
                last: None,
            },
        );
        let mut b = a.clone();
        b.0.insert(
            flow,
            Tally {
                packets: 3,
                bytes: 150,
                last: None,
            },
        );
        assert_eq!(
            b.since(&a).sum(|f| f.multicast),
            Tally {
                packets: 2,
                bytes: 100,
                last: None,
            }
        );
    }
}
