//! Steady-state multicast traffic: what a directory sends to the group when nothing
//! changes (beacons and the paced anti-entropy sweep), measured on loopback at the
//! default sweep period, computed with the core itself at the default and at a sweep
//! period matched to XOOM's, and compared with a XOOM-style re-broadcast (one datagram
//! per service every 5 s) of the same registry.

use crate::process::{Directory, DirectorySpec};
use crate::raw::{names, populate, register_frames};
use crate::report::{num, ratio, Report};
use herald_core::{
    Directory as CoreDirectory, DirectoryConfig, Duration as CoreDuration, Instant as CoreInstant,
    Location,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Registry sizes.
pub const SIZES: [usize; 3] = [100, 1_000, 10_000];
/// Measuring window on loopback: one default sweep period.
const WINDOW: Duration = Duration::from_secs(10);
/// IPv4 + UDP header bytes of every datagram on the wire.
pub const HEADERS: f64 = 28.0;
/// XOOM's re-broadcast period.
const XOOM_PERIOD_S: f64 = 5.0;

/// Datagrams and payload bytes per second.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rate {
    /// Datagrams per second.
    pub datagrams: f64,
    /// Payload bytes per second (UDP payload, without headers).
    pub bytes: f64,
}

impl Rate {
    /// Bytes per second on the wire, with IPv4 and UDP headers.
    pub fn wire_bytes(&self) -> f64 {
        self.bytes + HEADERS * self.datagrams
    }
}

/// Counts what arrives on `group` (joined on loopback) for `window`.
fn listen(group: SocketAddr, window: Duration) -> Result<Rate, String> {
    let IpAddr::V4(ip) = group.ip() else {
        return Err("IPv4 group expected".into());
    };
    let socket = UdpSocket::bind(group).map_err(|e| format!("bind {group}: {e}"))?;
    socket
        .join_multicast_v4(&ip, &Ipv4Addr::LOCALHOST)
        .map_err(|e| format!("join {group}: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 65_536];
    let (mut datagrams, mut bytes) = (0usize, 0usize);
    let start = Instant::now();
    while start.elapsed() < window {
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            datagrams += 1;
            bytes += n;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(Rate {
        datagrams: datagrams as f64 / secs,
        bytes: bytes as f64 / secs,
    })
}

/// What the core sends to the group in steady state with `services` registered, over
/// 60 simulated seconds, at sweep period `sweep`.
pub fn simulated(services: usize, sweep: Duration) -> Rate {
    let address = Location::new(Ipv4Addr::LOCALHOST.into(), 37399).expect("location");
    let group = SocketAddr::from(([239, 77, 0, 1], 37371));
    let mut config = DirectoryConfig::new(address, group);
    config.sweep_period = CoreDuration::from_millis(sweep.as_millis() as u64);
    let mut slots = vec![None; services + 16];
    let mut index = vec![0u32; services + 16];
    let mut d = CoreDirectory::new(config, &mut slots, &mut index).expect("directory");
    let from = SocketAddr::from(([127, 0, 0, 1], 5000));
    let mut buf = [0u8; 1400];
    let frames = register_frames(&names("traffic", services), Duration::from_secs(300));
    for frame in &frames {
        d.handle_datagram(CoreInstant::ZERO, from, frame);
        while d.poll_transmit(CoreInstant::ZERO, &mut buf).is_some() {}
    }
    let (begin, end) = (
        CoreInstant::from_millis(1_000),
        CoreInstant::from_millis(61_000),
    );
    let (mut datagrams, mut bytes) = (0usize, 0usize);
    let mut now = CoreInstant::ZERO;
    while now < end {
        d.handle_timeout(now);
        while let Some(t) = d.poll_transmit(now, &mut buf) {
            if t.destination == group && now >= begin {
                datagrams += 1;
                bytes += t.len;
            }
        }
        while d.poll_event().is_some() {}
        let next = d.poll_timeout().unwrap_or(end);
        now = if next > now {
            next
        } else {
            CoreInstant::from_micros(now.as_micros() + 1_000)
        };
    }
    Rate {
        datagrams: datagrams as f64 / 60.0,
        bytes: bytes as f64 / 60.0,
    }
}

/// A XOOM-style re-broadcast of the same registry: one `SRVCREGD` datagram per service
/// every 5 s, with XOOM's text format (`SRVCREGD\nnm=NAME\naddr=HOST:PORT`). XOOM's own
/// framing header is not counted, which favours XOOM.
pub fn xoom(services: usize) -> Rate {
    let bytes: usize = (0..services)
        .map(|i| {
            let name = format!("traffic-{i:06}");
            let port = 10_000 + (i % 50_000);
            format!("SRVCREGD\nnm={name}\naddr=127.0.0.1:{port}").len()
        })
        .sum();
    Rate {
        datagrams: services as f64 / XOOM_PERIOD_S,
        bytes: bytes as f64 / XOOM_PERIOD_S,
    }
}

/// Runs the traffic measurements and computations.
pub fn run(report: &mut Report) -> Result<(), String> {
    report.section("Steady-state multicast traffic (no changes; beacons + anti-entropy sweep)");
    // Three directories measured at the same time, one per size.
    let mut directories = Vec::new();
    for services in SIZES {
        let d = Directory::start(&DirectorySpec::default())?;
        let p = populate(
            d.addr,
            "traffic",
            services,
            Duration::from_secs(300),
            Duration::from_secs(20),
        );
        if p.answered != services {
            return Err(format!("registered {} of {services}", p.answered));
        }
        directories.push(d);
    }
    // Let the sweep that was paced for the registry as it was while filling finish.
    std::thread::sleep(Duration::from_millis(10_500));
    let listeners: Vec<_> = directories
        .iter()
        .map(|d| {
            let group = d.group;
            std::thread::spawn(move || listen(group, WINDOW))
        })
        .collect();
    let mut measured = Vec::new();
    for l in listeners {
        measured.push(l.join().map_err(|_| "listener panicked")??);
    }
    drop(directories);
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for (i, services) in SIZES.into_iter().enumerate() {
        let m = measured[i];
        let default = simulated(services, Duration::from_secs(10));
        let matched = simulated(services, Duration::from_secs(5));
        let x = xoom(services);
        for (what, r) in [
            ("Herald measured (sweep 10 s)", m),
            ("Herald computed (sweep 10 s)", default),
            ("Herald computed (sweep 5 s, matched)", matched),
            ("XOOM-style (every service every 5 s)", x),
        ] {
            rows.push(vec![
                services.to_string(),
                what.to_string(),
                num(r.datagrams, 1),
                num(r.bytes, 0),
                num(r.wire_bytes(), 0),
                ratio(r.wire_bytes(), x.wire_bytes()),
            ]);
        }
        let j = |r: Rate| serde_json::json!({"datagrams_per_s": r.datagrams, "bytes_per_s": r.bytes, "wire_bytes_per_s": r.wire_bytes()});
        json.push(serde_json::json!({
            "services": services, "measured_sweep10": j(m), "computed_sweep10": j(default),
            "computed_sweep5": j(matched), "xoom": j(x),
        }));
    }
    report.table(
        &[
            "services",
            "sender",
            "datagrams/s",
            "payload B/s",
            "wire B/s (+28 B/datagram)",
            "vs XOOM",
        ],
        &rows,
    );
    report.record("traffic", serde_json::Value::Array(json));
    Ok(())
}
