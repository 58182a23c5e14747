//! Request throughput: registrations and renewals per second one directory answers,
//! against a raw UDP echo server driven by the same client in the same run, with 32
//! requests in flight and with [`WIDE_WINDOW`] (enough for the directory's group
//! commit to share one durable write among many registrations); and the latency of
//! [`BURST`] registrations sent at once, each from its send to its acknowledgement.

use crate::process::{Directory, DirectorySpec, Spawned};
use crate::raw::{names, pump, register_frames, Pumped};
use crate::report::{num, ratio, Report};
use crate::stats::{rate, Summary};
use herald_core::wire::{self, Message};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Requests per measurement (the count bound); each also stops after [`LIMIT`].
const REQUESTS: usize = 20_000;
/// Time bound of each measurement.
const LIMIT: Duration = Duration::from_secs(4);
/// Requests in flight, as a small client keeps them.
const WINDOW: usize = 32;
/// Requests in flight, as many registrants (or one busy one) keep them together.
const WIDE_WINDOW: usize = 512;

/// Registrations sent at once for the burst latency.
const BURST: usize = 1000;

fn per_second(p: &Pumped) -> f64 {
    rate(p.answered, p.elapsed)
}

/// The figures of one window.
struct Measured {
    window: usize,
    echo_before: Pumped,
    registered: Pumped,
    renewals: Pumped,
    echo_after: Pumped,
}

impl Measured {
    fn baseline(&self) -> f64 {
        (per_second(&self.echo_before) + per_second(&self.echo_after)) / 2.0
    }
}

/// Echo, new registrations (names `prefix-…`), their renewals, echo again.
fn measure(echo: SocketAddr, directory: SocketAddr, prefix: &str, window: usize) -> Measured {
    let frames = register_frames(&names(prefix, REQUESTS), Duration::from_secs(300));
    let echo_before = pump(echo, &frames, window, LIMIT);
    let registered = pump(directory, &frames, window, LIMIT);
    let renewals = pump(directory, &frames[..registered.answered], window, LIMIT);
    let echo_after = pump(echo, &frames, window, LIMIT);
    Measured {
        window,
        echo_before,
        registered,
        renewals,
        echo_after,
    }
}

/// Sends `frames` (request id `i + 1` for frame `i`) to `target` all at once, and times
/// each acknowledgement from its request's send. Acknowledgements are read on a thread
/// of their own while the burst is sent (so that none waits in a full receive buffer),
/// for at most [`LIMIT`]; nothing is sent again, so a lost one is missing from the
/// samples.
fn burst(target: SocketAddr, frames: &[Vec<u8>]) -> Vec<Duration> {
    let socket = burst_socket();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let receiver = socket.try_clone().expect("clone the client socket");
    let count = frames.len();
    let acks = std::thread::spawn(move || {
        let mut arrived = vec![None; count];
        let mut buf = [0u8; 2048];
        let start = Instant::now();
        let mut answered = 0;
        while answered < count && start.elapsed() < LIMIT {
            let Ok((n, _)) = receiver.recv_from(&mut buf) else {
                continue;
            };
            if let Ok(Message::Ack(a)) = wire::decode(&buf[..n]).map(|f| f.message) {
                let i = a.request as usize;
                if (1..=count).contains(&i) && arrived[i - 1].is_none() {
                    arrived[i - 1] = Some(Instant::now());
                    answered += 1;
                }
            }
        }
        arrived
    });
    let mut sent_at = Vec::with_capacity(count);
    for frame in frames {
        sent_at.push(Instant::now());
        let _ = socket.send_to(frame, target);
    }
    let arrived = acks.join().unwrap_or_default();
    sent_at
        .iter()
        .zip(arrived)
        .filter_map(|(sent, arrived)| Some(arrived?.saturating_duration_since(*sent)))
        .collect()
}

/// A client socket whose receive buffer holds a whole burst of acknowledgements (a
/// directory that commits a burst in one write answers it at once).
fn burst_socket() -> UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    socket.bind(&any.into()).expect("bind the client socket");
    socket.into()
}

/// Runs the throughput comparison.
pub fn run(report: &mut Report) -> Result<(), String> {
    report.section(&format!(
        "Request throughput (one client, {WINDOW} and {WIDE_WINDOW} requests in flight, loopback)"
    ));
    let (mut echo, echo_addr) = Spawned::echo()?;
    // One client holds every registration: lift the per-address and per-network
    // budgets (1024 and 4096 by default), which would refuse the rest.
    let unlimited = (3 * REQUESTS).to_string();
    let directory = Directory::start(&DirectorySpec {
        capacity: 3 * REQUESTS + 1024,
        extra: [
            "--registrations-per-address",
            &unlimited,
            "--registrations-per-network",
            &unlimited,
        ]
        .map(String::from)
        .to_vec(),
        ..DirectorySpec::default()
    })?;
    let runs = [
        measure(echo_addr, directory.addr, "tp", WINDOW),
        measure(echo_addr, directory.addr, "tw", WIDE_WINDOW),
    ];
    echo.kill();
    let frames = register_frames(&names("tb", BURST), Duration::from_secs(300));
    let burst = Summary::of(&burst(directory.addr, &frames));
    let mut rows = Vec::new();
    for m in &runs {
        let baseline = m.baseline();
        rows.push(vec![
            m.window.to_string(),
            "raw UDP echo (baseline, mean of before and after)".to_string(),
            num(baseline, 0),
            "1.00×".into(),
            format!(
                "{} + {} answered",
                m.echo_before.answered, m.echo_after.answered
            ),
        ]);
        for (what, p) in [
            ("registrations (new names, durable)", &m.registered),
            ("renewals (same registrant, same content)", &m.renewals),
        ] {
            rows.push(vec![
                m.window.to_string(),
                what.to_string(),
                num(per_second(p), 0),
                ratio(per_second(p), baseline),
                format!(
                    "{} answered, {} refused, {} sent in {:.2} s",
                    p.answered,
                    p.rejected,
                    p.sent,
                    p.elapsed.as_secs_f64()
                ),
            ]);
        }
    }
    report.table(
        &["in flight", "requests", "per second", "vs echo", "detail"],
        &rows,
    );
    report.line(&format!(
        "\n{BURST} new registrations sent at once, register → acknowledged: {} of {BURST} \
         answered, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms.",
        burst.count, burst.p50, burst.p99, burst.max
    ));
    let figures: Vec<serde_json::Value> = runs
        .iter()
        .map(|m| {
            serde_json::json!({
                "window": m.window,
                "echo_per_s": m.baseline(),
                "echo_before_per_s": per_second(&m.echo_before),
                "echo_after_per_s": per_second(&m.echo_after),
                "registrations_per_s": per_second(&m.registered),
                "renewals_per_s": per_second(&m.renewals),
            })
        })
        .collect();
    report.record(
        "throughput",
        serde_json::json!({"windows": figures, "burst_register_to_ack": burst.json()}),
    );
    Ok(())
}
