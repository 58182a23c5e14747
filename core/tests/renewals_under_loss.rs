//! Spurious expiry under loss: a live registrant behind 40 % independent loss (each
//! datagram, both directions) keeps its leases.
//!
//! The bounds (docs/PROTOCOL.md, "Guarantees"): with the default 15 s lease, fewer than
//! 1e-6 spurious expiries per service-hour; with the shortest lease a directory allows
//! by default (1 s), fewer than 1e-3. The real `Client` and `Directory` run over a lossy
//! link in simulated time, skipping idle time through `poll_timeout`.
//!
//! `cargo test` runs a few service-hours; `HERALD_SIM_HOURS=N` runs N service-hours per
//! lease, and `HERALD_SIM_SEED=S` starts at seed S (so that runs in parallel differ).
//! The figures in PROTOCOL.md come from such runs in release.

mod support;

use herald_core::client::ClientStorage;
use herald_core::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use support::{directory_location, group, ip, service, Rng};

/// Registrations per client with the default lease (each is one service): many, so
/// that the directory's fixed work per second is shared.
const SERVICES_DEFAULT: usize = 64;
/// Registrations per client with the shortest lease: few, as the work per renewal grows
/// with them.
const SERVICES_SHORTEST: usize = 8;
const LOSS: f64 = 0.40;

/// A datagram in flight: (arrival, sequence, to the directory, bytes).
type InFlight = (Instant, u64, bool, Vec<u8>);

/// Spurious expiries of `N` services registered with `lease` over `hours`
/// service-hours at `LOSS`.
fn spurious_expiries<const N: usize>(seed: u64, lease: Duration, hours: f64) -> u64 {
    let span = Duration::from_micros((hours / N as f64 * 3.6e9) as u64);
    let mut dstore = herald_core::directory::DirectoryStorage::<N>::new();
    let (slots, index) = dstore.parts();
    let mut directory = Directory::new(
        DirectoryConfig::new(directory_location(), group()),
        slots,
        index,
    )
    .unwrap();
    let mut cstore = ClientStorage::<1>::new();
    let (known, known_index) = cstore.parts();
    let mut config = ClientConfig::new(7);
    config.directories.push(directory_location()).unwrap();
    config.lease = lease;
    let mut client: Client<'_, N> = Client::new(config, known, known_index).unwrap();
    let me = SocketAddr::new(ip(10), 40000);
    let dir = directory_location().socket_addr();
    let mut rng = Rng::new(seed);
    let mut queue: BinaryHeap<Reverse<InFlight>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut now = Instant::from_millis(1);
    for k in 0..N {
        client
            .register(now, service(&format!("svc{k}"), 9000 + k as u16))
            .unwrap();
    }
    let end = now + span;
    let mut buf = [0u8; 1400];
    let mut registered = 0;
    loop {
        // Send what both want sent, each datagram lost with probability LOSS.
        let mut send = |to_dir: bool, bytes: &[u8], now: Instant, rng: &mut Rng| {
            if rng.chance(LOSS) {
                return;
            }
            seq += 1;
            let delay = Duration::from_micros(rng.below(20_000));
            queue.push(Reverse((now + delay, seq, to_dir, bytes.to_vec())));
        };
        while directory.poll_event().is_some() {}
        while let Some(t) = directory.poll_transmit(now, &mut buf) {
            if t.destination != group() {
                send(false, &buf[..t.len], now, &mut rng);
            }
        }
        while let Some(t) = client.poll_transmit(now, &mut buf) {
            send(true, &buf[..t.len], now, &mut rng);
        }
        while let Some(e) = client.poll_event() {
            registered += usize::from(matches!(e, ClientEvent::Registered { .. }));
        }
        let next = [
            queue.peek().map(|Reverse(p)| p.0),
            client.poll_timeout(),
            directory.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(end);
        if next >= end {
            break;
        }
        now = next.max(now);
        while queue.peek().is_some_and(|Reverse(p)| p.0 <= now) {
            let Reverse((_, _, to_dir, bytes)) = queue.pop().unwrap();
            if to_dir {
                directory.handle_datagram(now, me, &bytes);
            } else {
                client.handle_datagram(now, dir, &bytes);
            }
        }
        directory.handle_timeout(now);
        client.handle_timeout(now);
    }
    assert_eq!(registered, N, "every service registered once");
    directory.stats().expiries
}

/// Service-hours per lease: a few in `cargo test`, `HERALD_SIM_HOURS` for a long run.
fn hours(default: f64) -> f64 {
    std::env::var("HERALD_SIM_HOURS")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(default)
}

/// Runs `hours` service-hours with `lease` in chunks of `N` services and checks that the
/// spurious expiries stay within `bound` per service-hour (zero when the bound times the
/// hours is below one).
fn check<const N: usize>(lease: Duration, bound: f64, hours: f64) {
    let chunks = (hours / 200.0).ceil().max(1.0) as u64;
    let chunk = hours / chunks as f64;
    let mut total = (0u64, hours);
    let first: u64 = std::env::var("HERALD_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    for seed in first..first + chunks {
        total.0 += spurious_expiries::<N>(seed, lease, chunk);
    }
    let allowed = (bound * total.1).floor() as u64;
    println!(
        "lease {lease:?}: {} spurious expiries in {:.1} service-hours at {:.0} % loss \
         (bound {bound:e} per service-hour: at most {allowed})",
        total.0,
        total.1,
        LOSS * 100.0
    );
    assert!(
        total.0 <= allowed,
        "lease {lease:?}: {} spurious expiries in {:.1} service-hours",
        total.0,
        total.1
    );
}

#[test]
fn the_default_lease_survives_forty_percent_loss() {
    check::<SERVICES_DEFAULT>(Duration::from_secs(15), 1e-6, hours(40.0));
}

#[test]
fn the_shortest_lease_survives_forty_percent_loss() {
    let shortest = DirectoryConfig::new(directory_location(), group()).min_lease;
    check::<SERVICES_SHORTEST>(shortest, 1e-3, hours(8.0));
}
