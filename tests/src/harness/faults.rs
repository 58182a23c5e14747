//! The fault injector's settings, and a fault-injecting UDP proxy of our own for
//! machines where `tc netem` is missing.
//!
//! The proxy stands in front of one directory, at the address the directory
//! advertises (`herald serve --advertise`): requests from clients go through it to the
//! directory and the answers come back through it; the directory's multicast (on an
//! inner group) is relayed to one outer group per listener, each with its own
//! independent faults. So every datagram between a client and the directory crosses one
//! lossy, duplicating, reordering and delaying link, as with netem on every interface.
//! Decisions come from a seeded [`Rng`], printed at start-up, so a run can be replayed.

use super::rng::Rng;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

/// What the injector does to each datagram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Faults {
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Probability that a datagram is sent twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back so that later ones overtake it.
    pub reorder: f64,
    /// Delay of every datagram.
    pub delay: Duration,
}

impl Faults {
    /// The suite's lossy link: 20 % loss, 5 % duplication, 25 % reordering, 10 ms.
    pub const LOSSY: Faults = Faults {
        loss: 0.20,
        duplicate: 0.05,
        reorder: 0.25,
        delay: Duration::from_millis(10),
    };

    /// The `tc qdisc … netem` arguments for these faults.
    pub fn netem_args(&self) -> Vec<String> {
        let pct = |p: f64| format!("{}%", (p * 100.0).round());
        vec![
            "delay".into(),
            format!("{}ms", self.delay.as_millis()),
            "loss".into(),
            pct(self.loss),
            "duplicate".into(),
            pct(self.duplicate),
            "reorder".into(),
            pct(self.reorder),
        ]
    }

    /// When each copy of one datagram should leave (none if it is lost).
    pub fn schedule(&self, rng: &mut Rng, now: Instant) -> Vec<Instant> {
        if rng.chance(self.loss) {
            return Vec::new();
        }
        let copies = if rng.chance(self.duplicate) { 2 } else { 1 };
        (0..copies)
            .map(|_| {
                let mut delay = self.delay;
                if rng.chance(self.reorder) {
                    // Held back by up to three delays more: later datagrams overtake it.
                    let extra = rng.below(3 * self.delay.as_millis() as u64 + 10);
                    delay += Duration::from_millis(extra);
                }
                now + delay
            })
            .collect()
    }
}

/// Where the proxy sits and what it relays.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The address clients use (the directory advertises it).
    pub listen: SocketAddrV4,
    /// The directory's real request address.
    pub upstream: SocketAddrV4,
    /// The group the directory announces on.
    pub group_in: SocketAddrV4,
    /// The groups listeners join, one per listener (independent faults each).
    pub groups_out: Vec<SocketAddrV4>,
    /// The interface (its IPv4 address) multicast is joined and sent on.
    pub interface: Ipv4Addr,
    /// The faults.
    pub faults: Faults,
    /// The seed of the decisions.
    pub seed: u64,
    /// The proxy stops by itself after this long.
    pub lifetime: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Via {
    /// The socket at the listen address.
    Front,
    /// The socket that speaks to the directory for this client.
    Upstream(SocketAddr),
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    at: Instant,
    seq: u64,
    via: Via,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// Counters the proxy prints.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProxyStats {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams dropped on purpose.
    pub dropped: u64,
    /// Datagrams sent (duplicates included).
    pub sent: u64,
}

fn udp(bind: SocketAddrV4, reuse: bool) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    if reuse {
        s.set_reuse_address(true)?;
    }
    s.bind(&SockAddr::from(bind))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// The running proxy.
pub struct Proxy {
    config: ProxyConfig,
    front: UdpSocket,
    group_in: UdpSocket,
    upstreams: HashMap<SocketAddr, UdpSocket>,
    queue: BinaryHeap<Reverse<Pending>>,
    rng: Rng,
    seq: u64,
    stats: ProxyStats,
}

/// Most datagrams taken from one socket per pass, so no socket starves the others.
const BURST: usize = 256;
/// Most clients the proxy relays for.
const MAX_CLIENTS: usize = 1024;

impl Proxy {
    /// Binds the sockets and joins the inner group.
    pub fn bind(config: ProxyConfig) -> std::io::Result<Proxy> {
        let front = udp(config.listen, false)?;
        front.set_multicast_if_v4(&config.interface)?;
        front.set_multicast_ttl_v4(1)?;
        front.set_multicast_loop_v4(true)?;
        let group_in = udp(config.group_in, true)?;
        group_in.join_multicast_v4(config.group_in.ip(), &config.interface)?;
        Ok(Proxy {
            rng: Rng::new(config.seed),
            config,
            front: front.into(),
            group_in: group_in.into(),
            upstreams: HashMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            stats: ProxyStats::default(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> ProxyStats {
        self.stats
    }

    fn enqueue(&mut self, via: Via, to: SocketAddr, bytes: &[u8], now: Instant) {
        self.stats.received += 1;
        let times = self.config.faults.schedule(&mut self.rng, now);
        if times.is_empty() {
            self.stats.dropped += 1;
        }
        for at in times {
            self.seq += 1;
            self.queue.push(Reverse(Pending {
                at,
                seq: self.seq,
                via,
                to,
                bytes: bytes.to_vec(),
            }));
        }
    }

    fn upstream_for(&mut self, client: SocketAddr) -> std::io::Result<()> {
        if !self.upstreams.contains_key(&client) && self.upstreams.len() < MAX_CLIENTS {
            let s = udp(SocketAddrV4::new(self.config.interface, 0), false)?;
            self.upstreams.insert(client, s.into());
        }
        Ok(())
    }

    /// One pass: read what arrived, send what is due. Returns whether anything moved.
    pub fn pass(&mut self) -> std::io::Result<bool> {
        let now = Instant::now();
        let mut busy = false;
        let mut buf = vec![0u8; 65_536];
        let upstream = SocketAddr::V4(self.config.upstream);
        // Requests from clients, towards the directory.
        for _ in 0..BURST {
            match self.front.recv_from(&mut buf) {
                Ok((n, from)) => {
                    busy = true;
                    self.upstream_for(from)?;
                    let bytes = buf[..n].to_vec();
                    self.enqueue(Via::Upstream(from), upstream, &bytes, now);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            }
        }
        // Answers from the directory, back to each client from the front address.
        let clients: Vec<SocketAddr> = self.upstreams.keys().copied().collect();
        for client in clients {
            for _ in 0..BURST {
                let r = self.upstreams[&client].recv_from(&mut buf);
                match r {
                    Ok((n, _)) => {
                        busy = true;
                        let bytes = buf[..n].to_vec();
                        self.enqueue(Via::Front, client, &bytes, now);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        // Announcements, relayed to each listener's group with its own faults.
        for _ in 0..BURST {
            match self.group_in.recv_from(&mut buf) {
                Ok((n, _)) => {
                    busy = true;
                    let bytes = buf[..n].to_vec();
                    for g in self.config.groups_out.clone() {
                        self.enqueue(Via::Front, SocketAddr::V4(g), &bytes, now);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        // Everything due.
        while self.queue.peek().is_some_and(|Reverse(p)| p.at <= now) {
            let Some(Reverse(p)) = self.queue.pop() else {
                break;
            };
            let socket = match p.via {
                Via::Front => &self.front,
                Via::Upstream(client) => &self.upstreams[&client],
            };
            // A full buffer or an unreachable client is one more lost datagram.
            if socket.send_to(&p.bytes, p.to).is_ok() {
                self.stats.sent += 1;
            }
            busy = true;
        }
        Ok(busy)
    }

    /// Runs until the configured lifetime ends, printing counters every few seconds.
    pub fn run(&mut self) -> std::io::Result<()> {
        let start = Instant::now();
        let mut last_report = start;
        let max_passes = self.config.lifetime.as_millis() as u64 * 1000;
        for _ in 0..max_passes {
            if start.elapsed() >= self.config.lifetime {
                break;
            }
            if !self.pass()? {
                std::thread::sleep(Duration::from_micros(500));
            }
            if last_report.elapsed() >= Duration::from_secs(5) {
                last_report = Instant::now();
                println!("proxy stats {:?}", self.stats);
            }
        }
        println!("proxy stopped {:?}", self.stats);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_follows_the_probabilities() {
        let mut rng = Rng::new(3);
        let now = Instant::now();
        let (mut lost, mut copies, mut late) = (0, 0, 0);
        for _ in 0..10_000 {
            let t = Faults::LOSSY.schedule(&mut rng, now);
            if t.is_empty() {
                lost += 1;
            }
            copies += t.len();
            late += t
                .iter()
                .filter(|&&at| at > now + Faults::LOSSY.delay)
                .count();
        }
        assert!((1_700..2_300).contains(&lost), "lost {lost}");
        assert!(copies > 8_000 && copies < 8_800, "copies {copies}");
        assert!(late > 1_500, "reordered {late}");
    }

    #[test]
    fn netem_arguments() {
        assert_eq!(
            Faults::LOSSY.netem_args().join(" "),
            "delay 10ms loss 20% duplicate 5% reorder 25%"
        );
    }

    #[test]
    fn relays_requests_answers_and_announcements_on_loopback() {
        let lo = Ipv4Addr::LOCALHOST;
        let port = |a: SocketAddr| match a {
            SocketAddr::V4(v) => v,
            SocketAddr::V6(_) => unreachable!(),
        };
        let directory = udp(SocketAddrV4::new(lo, 0), false).unwrap();
        directory.set_multicast_if_v4(&lo).unwrap();
        let directory: UdpSocket = directory.into();
        let group_out = port(super::super::ports::unique_group());
        let config = || ProxyConfig {
            listen: port(super::super::ports::loopback_addr()),
            upstream: port(directory.local_addr().unwrap()),
            group_in: port(super::super::ports::unique_group()),
            groups_out: vec![group_out],
            interface: lo,
            faults: Faults {
                loss: 0.0,
                duplicate: 0.0,
                reorder: 0.0,
                delay: Duration::from_millis(1),
            },
            seed: 1,
            lifetime: Duration::from_secs(10),
        };
        // A port found free may be taken by another test's socket before the proxy
        // binds it: then it takes other ports (a few tries).
        let (config, mut proxy) = (0..5)
            .find_map(|_| {
                let config = config();
                match Proxy::bind(config.clone()) {
                    Ok(proxy) => Some((config, proxy)),
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => None,
                    Err(e) => panic!("bind the proxy: {e}"),
                }
            })
            .expect("free ports for the proxy within 5 tries");
        let group_in = config.group_in;
        let listener = udp(group_out, true).unwrap();
        listener.join_multicast_v4(group_out.ip(), &lo).unwrap();
        let listener: UdpSocket = listener.into();
        let client = UdpSocket::bind((lo, 0)).unwrap();
        client.send_to(b"request", config.listen).unwrap();
        directory.send_to(b"announce", group_in).unwrap();
        let mut buf = [0u8; 64];
        directory.set_nonblocking(true).unwrap();
        client.set_nonblocking(true).unwrap();
        listener.set_nonblocking(true).unwrap();
        let (mut asked, mut answered, mut heard) = (false, false, false);
        for _ in 0..2000 {
            proxy.pass().unwrap();
            if let Ok((n, from)) = directory.recv_from(&mut buf) {
                assert_eq!(&buf[..n], b"request");
                directory.send_to(b"answer", from).unwrap();
                asked = true;
            }
            if let Ok((n, from)) = client.recv_from(&mut buf) {
                assert_eq!(&buf[..n], b"answer");
                assert_eq!(
                    from,
                    SocketAddr::V4(config.listen),
                    "answers come from the front"
                );
                answered = true;
            }
            if let Ok((n, from)) = listener.recv_from(&mut buf) {
                assert_eq!(&buf[..n], b"announce");
                assert_eq!(
                    from,
                    SocketAddr::V4(config.listen),
                    "relayed from the front"
                );
                heard = true;
            }
            if asked && answered && heard {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("asked {asked} answered {answered} heard {heard}");
    }
}
