//! Leases per registrant: a client holding many registrations renews them all with one
//! datagram per renewal period, a crashed client still loses every one of them a lease
//! later, and a directory that restarted empty (or one failed over to) gets all of them
//! back in full, with and without keys.
//!
//! The real `Client` and `Directory` run on a loss-free network in simulated time.

mod support;

use herald_core::auth::{Key, Keys};
use herald_core::wire;
use herald_core::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use support::{directory_location, group, ip, nth_directory, service};

/// Registrations the client holds.
const HELD: usize = 25;
/// The lease asked for: renewals every second.
const LEASE: Duration = Duration::from_secs(3);
/// The kind byte of a Register frame (docs/PROTOCOL.md, "Header").
const REGISTER: u8 = 0x01;

/// A datagram in flight: arrival, order, destination (`None`: the client), source,
/// bytes.
type InFlight = (Instant, u64, Option<usize>, SocketAddr, Vec<u8>);

struct Net {
    directories: Vec<(Location, Directory<'static>, bool)>,
    client: Client<'static, 32>,
    crashed: bool,
    /// Every datagram to the client is lost (it still sends).
    deaf: bool,
    me: SocketAddr,
    now: Instant,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    /// Every datagram the client sent: when, and its kind byte.
    sent: Vec<(Instant, u8, Vec<u8>)>,
    keys: Option<Keys>,
    /// The client's configuration.
    config: ClientConfig,
}

fn leak<T: Clone>(value: T, n: usize) -> &'static mut [T] {
    Vec::leak(vec![value; n])
}

/// A directory started at `now`, its version clock following the wall clock (which
/// reads 1,000 s at `Instant::ZERO`).
fn new_directory(at: Location, keys: &Option<Keys>, now: Instant) -> Directory<'static> {
    let mut config = DirectoryConfig::new(at, group());
    config.keys = keys.clone();
    config.version_floor = Version(1_000_000_000 + now.as_micros());
    Directory::new(config, leak(None, 64), leak(0u32, 64)).unwrap()
}

impl Net {
    /// `directories` independent directories and a client that knows them all and
    /// registers `HELD` services.
    fn new(directories: usize, keys: Option<Keys>) -> Self {
        let locations: Vec<Location> = (0..directories)
            .map(|i| {
                if i == 0 {
                    directory_location()
                } else {
                    nth_directory(i)
                }
            })
            .collect();
        let mut config = ClientConfig::new(77);
        for l in &locations {
            config.directories.push(*l).unwrap();
        }
        config.lease = LEASE;
        config.keys = keys.clone();
        let client = Client::new(config.clone(), leak(None, 4), leak(0u32, 4)).unwrap();
        let now = Instant::from_millis(1);
        let mut net = Net {
            directories: locations
                .iter()
                .map(|&l| (l, new_directory(l, &keys, now), false))
                .collect(),
            client,
            crashed: false,
            deaf: false,
            me: SocketAddr::new(ip(10), 40000),
            now,
            queue: BinaryHeap::new(),
            seq: 0,
            sent: Vec::new(),
            keys,
            config,
        };
        net.register(HELD);
        net
    }

    /// The client registers the first `n` of the services.
    fn register(&mut self, n: usize) {
        for k in 0..n {
            let now = self.now;
            self.client
                .register(now, service(&format!("svc{k:02}"), 9000 + k as u16))
                .unwrap();
        }
    }

    /// The client's process restarts (same registrant id, no memory) and registers only
    /// the first `n` services.
    fn restart_client(&mut self, n: usize) {
        self.client = Client::new(self.config.clone(), leak(None, 4), leak(0u32, 4)).unwrap();
        self.register(n);
    }

    fn run(&mut self, span: Duration) {
        let end = self.now + span;
        let mut buf = [0u8; 1400];
        loop {
            for d in 0..self.directories.len() {
                let (at, directory, down) = &mut self.directories[d];
                let from = at.socket_addr();
                while directory.poll_event().is_some() {}
                while let Some(t) = directory.poll_transmit(self.now, &mut buf) {
                    if t.destination == self.me && !*down {
                        self.seq += 1;
                        let bytes = buf[..t.len].to_vec();
                        let arrival = self.now + Duration::from_millis(1);
                        self.queue
                            .push(Reverse((arrival, self.seq, None, from, bytes)));
                    }
                }
            }
            if !self.crashed {
                while let Some(t) = self.client.poll_transmit(self.now, &mut buf) {
                    let bytes = buf[..t.len].to_vec();
                    self.sent.push((self.now, bytes[3], bytes.clone()));
                    let to = self
                        .directories
                        .iter()
                        .position(|(l, _, _)| l.socket_addr() == t.destination);
                    self.seq += 1;
                    let arrival = self.now + Duration::from_millis(1);
                    let me = self.me;
                    self.queue.push(Reverse((arrival, self.seq, to, me, bytes)));
                }
                while self.client.poll_event().is_some() {}
            }
            let client = (!self.crashed)
                .then(|| self.client.poll_timeout())
                .flatten();
            let next = self
                .directories
                .iter()
                .filter_map(|(_, d, _)| d.poll_timeout())
                .chain(self.queue.peek().map(|Reverse(p)| p.0))
                .chain(client)
                .min()
                .unwrap_or(end);
            if next > end {
                self.now = end;
                break;
            }
            self.now = next.max(self.now);
            while self.queue.peek().is_some_and(|Reverse(p)| p.0 <= self.now) {
                let Reverse((_, _, to, from, bytes)) = self.queue.pop().unwrap();
                match to {
                    None if !self.crashed && !self.deaf => {
                        self.client.handle_datagram(self.now, from, &bytes)
                    }
                    Some(d) if !self.directories[d].2 => {
                        self.directories[d]
                            .1
                            .handle_datagram(self.now, from, &bytes);
                    }
                    _ => {}
                }
            }
            for (_, d, _) in &mut self.directories {
                d.handle_timeout(self.now);
            }
            if !self.crashed {
                self.client.handle_timeout(self.now);
            }
        }
    }

    fn live(&self, d: usize) -> usize {
        self.directories[d].1.live()
    }

    /// Datagrams the client sent in `[from, to)`, and how many of them were Registers.
    fn sent_between(&self, from: Instant, to: Instant) -> (usize, usize) {
        let window = self.sent.iter().filter(|(t, _, _)| *t >= from && *t < to);
        let registers = window.clone().filter(|(_, k, _)| *k == REGISTER).count();
        (window.count(), registers)
    }

    /// The directory `d` restarts with an empty registry.
    fn restart_empty(&mut self, d: usize) {
        let at = self.directories[d].0;
        self.directories[d].1 = new_directory(at, &self.keys, self.now);
    }
}

fn keys() -> Keys {
    Keys::new(Key::new(1, b"herald-keep-alive-test-key").unwrap())
}

/// Registers everything, then checks the idle renewal traffic over 30 renewal periods.
fn renews_with_one_datagram_per_period(keys: Option<Keys>) {
    let mut net = Net::new(1, keys);
    net.run(Duration::from_secs(2));
    assert_eq!(net.live(0), HELD, "every registration is live");
    let start = net.now;
    net.run(LEASE.mul(10));
    let (datagrams, registers) = net.sent_between(start, net.now);
    // One renewal period is a third of the lease: 30 in ten leases (one more where a
    // boundary falls in the window).
    assert!(
        datagrams <= 31,
        "{datagrams} datagrams ({registers} Registers) renewed {HELD} registrations for 30 renewal periods"
    );
    assert_eq!(registers, 0, "no registration was sent again in full");
    assert_eq!(net.live(0), HELD);
    assert_eq!(net.directories[0].1.stats().expiries, 0);
}

#[test]
fn twenty_five_registrations_renew_with_one_datagram_per_renewal_period() {
    renews_with_one_datagram_per_period(None);
}

#[test]
fn authenticated_keep_alives_renew_with_one_datagram_per_renewal_period() {
    renews_with_one_datagram_per_period(Some(keys()));
}

/// A client that crashed loses every registration within a lease of its last
/// datagram, and keeps them all for two thirds of a lease after it.
fn crash_expires_everything_after_one_lease(keys: Option<Keys>) {
    let mut net = Net::new(1, keys);
    net.run(Duration::from_millis(7_500));
    net.crashed = true;
    let last = net.sent.last().map(|(t, _, _)| *t).unwrap();
    let replay = net.sent.last().map(|(_, _, b)| b.clone()).unwrap();
    let before = last + LEASE.mul(2).div(3);
    net.run((before).saturating_since(net.now + Duration::from_millis(5)));
    assert_eq!(
        net.live(0),
        HELD,
        "nothing expires while the last renewal holds"
    );
    // A copy of the last keep-alive (a duplicate, or with keys a replay) renews nothing.
    let me = net.me;
    let now = net.now;
    net.directories[0].1.handle_datagram(now, me, &replay);
    net.run((last + LEASE + Duration::from_millis(5)).saturating_since(net.now));
    assert_eq!(
        net.live(0),
        0,
        "every registration expired a lease after the crash"
    );
    assert_eq!(net.directories[0].1.stats().expiries, HELD as u64);
}

#[test]
fn a_crashed_client_loses_every_registration_one_lease_later() {
    crash_expires_everything_after_one_lease(None);
}

#[test]
fn an_authenticated_crashed_client_loses_every_registration_one_lease_later() {
    crash_expires_everything_after_one_lease(Some(keys()));
}

/// A directory that restarted empty gets every registration back at the next renewal.
fn restart_restores_everything(keys: Option<Keys>) {
    let mut net = Net::new(1, keys);
    net.run(Duration::from_secs(5));
    net.restart_empty(0);
    assert_eq!(net.live(0), 0);
    let start = net.now;
    net.run(LEASE.div(3) + Duration::from_millis(200));
    assert_eq!(net.live(0), HELD, "everything registered again");
    let (_, registers) = net.sent_between(start, net.now);
    assert_eq!(
        registers, HELD,
        "each registration sent again once, in full"
    );
    // Then back to one datagram per renewal period.
    let start = net.now;
    net.run(LEASE.mul(2));
    let (datagrams, registers) = net.sent_between(start, net.now);
    assert!(
        datagrams <= 7,
        "{datagrams} datagrams in six renewal periods"
    );
    assert_eq!(registers, 0);
}

#[test]
fn a_directory_restarted_empty_gets_every_registration_back() {
    restart_restores_everything(None);
}

#[test]
fn an_authenticated_directory_restarted_empty_gets_every_registration_back() {
    restart_restores_everything(Some(keys()));
}

/// A registrant that restarted (same registrant id) and no longer registers one of its
/// services: its keep-alives do not keep that one alive; it runs out a lease after the
/// old process's last renewal, and the keep-alives then renew the rest.
fn a_dropped_registration_runs_out(keys: Option<Keys>) {
    let mut net = Net::new(1, keys);
    net.run(Duration::from_secs(5));
    let last = net.sent.last().map(|(t, _, _)| *t).unwrap();
    net.restart_client(HELD - 1);
    net.run((last + LEASE + Duration::from_millis(50)).saturating_since(net.now));
    assert_eq!(
        net.live(0),
        HELD - 1,
        "the service no longer registered ran out"
    );
    assert!(net.directories[0]
        .1
        .record(&format!("svc{:02}", HELD - 1))
        .is_some_and(|r| !r.is_live()));
    net.run(LEASE);
    let start = net.now;
    net.run(LEASE.mul(2));
    let (datagrams, registers) = net.sent_between(start, net.now);
    assert!(
        datagrams <= 7,
        "{datagrams} datagrams in six renewal periods"
    );
    assert_eq!(registers, 0);
    assert_eq!(net.live(0), HELD - 1);
}

#[test]
fn a_registration_a_restarted_registrant_dropped_runs_out() {
    a_dropped_registration_runs_out(None);
}

#[test]
fn an_authenticated_registration_a_restarted_registrant_dropped_runs_out() {
    a_dropped_registration_runs_out(Some(keys()));
}

#[test]
fn failover_registers_everything_at_the_next_directory_then_keeps_it_alive() {
    let mut net = Net::new(2, None);
    net.run(Duration::from_secs(5));
    assert_eq!(net.live(0), HELD);
    assert_eq!(net.live(1), 0);
    net.directories[0].2 = true;
    let start = net.now;
    net.run(LEASE);
    assert_eq!(
        net.live(1),
        HELD,
        "everything registered at the next directory"
    );
    let (_, registers) = net.sent_between(start, net.now);
    assert_eq!(registers, HELD);
    let start = net.now;
    net.run(LEASE.mul(2));
    let (datagrams, registers) = net.sent_between(start, net.now);
    assert!(
        datagrams <= 7,
        "{datagrams} datagrams in six renewal periods"
    );
    assert_eq!(registers, 0);
    assert_eq!(net.live(1), HELD);
    assert_eq!(net.directories[1].1.stats().expiries, 0);
}

/// Registrations in the idle-cost measurement.
const THOUSAND: usize = 1000;

/// The datagrams in flight of the idle-cost measurement, and what was counted.
#[derive(Default)]
struct Wire {
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    /// Requests and their answers counted.
    renewal: usize,
    /// Everything sent counted, group included.
    all: usize,
}

impl Wire {
    /// Sends what the directory has to send (to the clients at `addrs`).
    fn drain(
        &mut self,
        directory: &mut Directory<'_>,
        addrs: &[SocketAddr],
        now: Instant,
        counting: bool,
    ) {
        let mut buf = [0u8; 1400];
        while directory.poll_event().is_some() {}
        while let Some(t) = directory.poll_transmit(now, &mut buf) {
            self.all += usize::from(counting);
            if t.destination != group() {
                self.renewal += usize::from(counting);
                let to = addrs.iter().position(|a| *a == t.destination);
                let from = directory_location().socket_addr();
                self.send(to, from, now, &buf[..t.len]);
            }
        }
    }

    /// Puts a datagram on the wire, to a client (`Some`) or the directory.
    fn send(&mut self, to: Option<usize>, from: SocketAddr, now: Instant, bytes: &[u8]) {
        self.seq += 1;
        let at = now + Duration::from_millis(1);
        self.queue
            .push(Reverse((at, self.seq, to, from, bytes.to_vec())));
    }
}

/// Datagrams in 10 idle seconds once `THOUSAND` registrations with the default lease
/// (15 s), held by `processes` clients, are settled: (renewal traffic — requests and
/// their answers —, everything the directory and the clients sent, group included).
fn idle_cost<const R: usize>(processes: usize) -> (usize, usize) {
    let dir = directory_location();
    let mut directory = Directory::new(
        DirectoryConfig::new(dir, group()),
        leak(None, THOUSAND + 24),
        leak(0u32, THOUSAND + 24),
    )
    .unwrap();
    let addrs: Vec<SocketAddr> = (0..processes)
        .map(|p| SocketAddr::new(ip(10 + (p % 200) as u8), 40000 + p as u16))
        .collect();
    let mut clients: Vec<Box<Client<'static, R>>> = (0..processes)
        .map(|p| {
            let mut config = ClientConfig::new(1000 + p as u64);
            config.directories.push(dir).unwrap();
            Box::new(Client::new(config, leak(None, 1), leak(0u32, 1)).unwrap())
        })
        .collect();
    let mut now = Instant::from_millis(1);
    for k in 0..THOUSAND {
        clients[k % processes]
            .register(now, service(&format!("svc{k:04}"), 9000 + k as u16))
            .unwrap();
    }
    let settled = now + Duration::from_secs(20);
    let end = settled + Duration::from_secs(10);
    let mut wire = Wire::default();
    let mut buf = [0u8; 1400];
    loop {
        let counting = now >= settled;
        wire.drain(&mut directory, &addrs, now, counting);
        for (client, addr) in clients.iter_mut().zip(&addrs) {
            while let Some(t) = client.poll_transmit(now, &mut buf) {
                wire.all += usize::from(counting);
                wire.renewal += usize::from(counting);
                wire.send(None, *addr, now, &buf[..t.len]);
            }
            while client.poll_event().is_some() {}
        }
        let next = clients
            .iter()
            .filter_map(|c| c.poll_timeout())
            .chain(directory.poll_timeout())
            .chain(wire.queue.peek().map(|Reverse(p)| p.0))
            .min()
            .unwrap_or(end);
        if next >= end {
            break;
        }
        now = next.max(now);
        while wire.queue.peek().is_some_and(|Reverse(p)| p.0 <= now) {
            let Reverse((_, _, to, from, bytes)) = wire.queue.pop().unwrap();
            match to {
                Some(c) => clients[c].handle_datagram(now, from, &bytes),
                None => {
                    // As a shell does: the replies go out before the next request is
                    // read (the reply queue holds 32).
                    directory.handle_datagram(now, from, &bytes);
                    wire.drain(&mut directory, &addrs, now, counting);
                }
            }
        }
        directory.handle_timeout(now);
        for client in &mut clients {
            client.handle_timeout(now);
        }
    }
    assert_eq!(directory.live(), THOUSAND);
    assert_eq!(directory.stats().expiries, 0);
    (wire.renewal, wire.all)
}

/// Per-registration renewals cost 2,000 datagrams in and 2,035 out per 10 s for 1,000
/// registrations; keep-alives must bring the renewal traffic of 1,000 registrations held
/// by 40 processes under a twentieth of that.
#[test]
fn a_thousand_idle_registrations_cost_a_twentieth_of_the_datagrams() {
    let (renewal, all) = idle_cost::<25>(40);
    println!("1,000 registrations in 40 processes, 10 idle seconds: {renewal} renewal datagrams, {all} in all");
    assert!(
        renewal <= 4_035 / 20,
        "{renewal} renewal datagrams per 10 s"
    );
    let (renewal, all) = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(|| idle_cost::<THOUSAND>(1))
        .unwrap()
        .join()
        .unwrap();
    println!("1,000 registrations in 1 process, 10 idle seconds: {renewal} renewal datagrams, {all} in all");
    assert!(renewal <= 8, "{renewal} renewal datagrams per 10 s");
}

/// Sends `message` to `directory` from `from` at `now`, and decodes its answer.
fn request<M: wire::Single>(
    directory: &mut Directory<'_>,
    now: Instant,
    from: SocketAddr,
    message: &M,
) -> wire::Message<'static> {
    let mut buf = [0u8; 1400];
    let n = wire::encode(&Environment::default(), message, &mut buf).unwrap();
    directory.handle_datagram(now, from, &buf[..n]);
    while directory.poll_event().is_some() {}
    let t = directory.poll_transmit(now, &mut buf).unwrap();
    assert_eq!(t.destination, from);
    let bytes: &'static [u8] = Vec::leak(buf[..t.len].to_vec());
    wire::decode(bytes).unwrap().message
}

/// History seed 152: a registrant's Register for one name (a newer sequence) reached
/// the directory before its keep-alive. The keep-alive still renews the other names:
/// a newer request for one name says nothing about the others.
#[test]
fn a_keep_alive_overtaken_by_another_names_register_still_renews_the_rest() {
    let me = SocketAddr::new(ip(10), 40000);
    let mut directory = new_directory(directory_location(), &None, Instant::ZERO);
    let register = |request: u32, sequence: u64, name: &str| wire::RegisterRequest {
        request,
        registrant: 77,
        sequence,
        lease: LEASE,
        registration: service(name, 9000),
    };
    let mut held = wire::Holdings::default();
    for (i, name) in ["a", "b"].into_iter().enumerate() {
        let r = register(i as u32 + 1, i as u64 + 1, name);
        held.add(&r.registration);
        let answer = request(&mut directory, Instant::from_millis(1), me, &r);
        assert!(matches!(answer, wire::Message::Ack(_)), "{answer:?}");
    }
    // Sent: the keep-alive (sequence 10), then a Register of b (11); arrived reversed.
    let at = Instant::from_millis(1_000);
    let answer = request(&mut directory, at, me, &register(3, 11, "b"));
    assert!(matches!(answer, wire::Message::Ack(_)), "{answer:?}");
    let keep_alive = wire::KeepAliveRequest {
        request: 4,
        registrant: 77,
        sequence: 10,
        lease: LEASE,
        held,
    };
    match request(&mut directory, at, me, &keep_alive) {
        wire::Message::KeepAliveAck(ack) => assert_eq!(ack.held, held, "it matches"),
        other => panic!("the keep-alive was answered {other:?}"),
    }
    assert_eq!(directory.record("a").unwrap().sequence, 10);
    assert_eq!(
        directory.record("b").unwrap().sequence,
        11,
        "the stored sequence only grows"
    );
    // a would have run out at 3.001 s without the keep-alive.
    directory.handle_timeout(Instant::from_millis(3_500));
    assert_eq!(directory.live(), 2, "a was renewed by the keep-alive");
}

/// History seeds 45918 and 84753: a registration started while the keep-alive was in
/// flight. The directory holds it at once, so the keep-alive's claim (the registrations
/// confirmed) can no longer match there and renews nothing; with every answer lost (or
/// late), the client kept sending that keep-alive and its leases ran out. A keep-alive
/// in flight is given up for full Registers while another request is, and each Register
/// renews whether or not its answer comes back.
#[test]
fn a_registration_started_during_a_keep_alive_loses_no_lease() {
    let mut net = Net::new(1, None);
    net.run(Duration::from_secs(2));
    assert_eq!(net.live(0), HELD, "every registration is live");
    // From now on the client hears nothing: its next keep-alive stays in flight.
    net.deaf = true;
    net.run(Duration::from_millis(1_200));
    let now = net.now;
    net.client
        .register(now, service("late", 9999))
        .expect("room for one more");
    net.run(LEASE.mul(2));
    assert_eq!(
        net.live(0),
        HELD + 1,
        "every registration of a client that kept renewing is live"
    );
    assert_eq!(net.directories[0].1.stats().expiries, 0);
}
