//! Raw requests: Herald frames encoded with `herald-core` and sent from a plain UDP
//! socket, with a bounded window of outstanding requests. The same pump drives the
//! directory and the echo server, so both see the same client.

use herald_core::wire::{self, Message};
use herald_core::{Duration as CoreDuration, Environment, Location, Registration, ServiceName};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Registrant id of every raw registration of a run.
pub const REGISTRANT: u64 = 0x6865_7261_6c64;

/// A Register frame (also a renewal when sent again) for `name`, lease `lease`.
pub fn register_frame(request: u32, name: &str, port: u16, lease: Duration) -> Vec<u8> {
    let location = Location::new(Ipv4Addr::LOCALHOST.into(), port.max(1)).expect("location");
    let registration = Registration::new(ServiceName::new(name).expect("name"), &[location])
        .expect("registration");
    let request = wire::RegisterRequest {
        request,
        registrant: REGISTRANT,
        // Request ids grow, so they order this tool's requests as a client's clock does.
        sequence: u64::from(request),
        lease: CoreDuration::from_millis(lease.as_millis() as u64),
        registration,
    };
    let mut buf = [0u8; 1400];
    let n = wire::encode(&Environment::default(), &request, &mut buf).expect("encode");
    buf[..n].to_vec()
}

/// An Unregister frame for `name`.
pub fn unregister_frame(request: u32, name: &str) -> Vec<u8> {
    let request = wire::UnregisterRequest {
        request,
        registrant: REGISTRANT,
        sequence: u64::from(request),
        name: ServiceName::new(name).expect("name"),
    };
    let mut buf = [0u8; 256];
    let n = wire::encode(&Environment::default(), &request, &mut buf).expect("encode");
    buf[..n].to_vec()
}

/// Register frames for `names` (request ids 1, 2, …).
pub fn register_frames(names: &[String], lease: Duration) -> Vec<Vec<u8>> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| register_frame(i as u32 + 1, name, 10_000 + (i % 50_000) as u16, lease))
        .collect()
}

/// `count` service names `prefix-00000`, `prefix-00001`, …
pub fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i:06}")).collect()
}

/// The request id an answer is for: an Ack's or Reject's, or a Register's (echoed).
fn answered_request(bytes: &[u8]) -> Option<(u32, bool)> {
    match wire::decode(bytes).ok()?.message {
        Message::Ack(a) => Some((a.request, true)),
        Message::Reject(r) => Some((r.request, false)),
        Message::Register(r) => Some((r.request, true)),
        Message::Unregister(r) => Some((r.request, true)),
        _ => None,
    }
}

/// What a pump achieved.
#[derive(Clone, Copy, Debug)]
pub struct Pumped {
    /// Distinct requests answered positively (Ack, or the echo).
    pub answered: usize,
    /// Distinct requests refused.
    pub rejected: usize,
    /// Datagrams sent (retries included).
    pub sent: usize,
    /// Time from the first send to the last answer.
    pub elapsed: Duration,
}

/// Sends `frames` (request id `i + 1` for frame `i`) to `target`, at most `window`
/// outstanding, resending unanswered ones after a quiet 20 ms, until every one is
/// answered or `limit` has passed.
pub fn pump(target: SocketAddr, frames: &[Vec<u8>], window: usize, limit: Duration) -> Pumped {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("client socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let mut done = vec![false; frames.len()];
    let mut queue: VecDeque<usize> = (0..frames.len()).collect();
    let (mut answered, mut rejected, mut sent, mut outstanding) = (0, 0, 0, 0usize);
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    let mut last = start;
    while answered + rejected < frames.len() && start.elapsed() < limit {
        while outstanding < window {
            let Some(i) = queue.pop_front() else { break };
            if done[i] {
                continue;
            }
            if socket.send_to(&frames[i], target).is_ok() {
                sent += 1;
                outstanding += 1;
            }
        }
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                outstanding = outstanding.saturating_sub(1);
                if let Some((id, ok)) = answered_request(&buf[..n]) {
                    let i = id as usize;
                    if (1..=frames.len()).contains(&i) && !done[i - 1] {
                        done[i - 1] = true;
                        last = Instant::now();
                        if ok {
                            answered += 1;
                        } else {
                            rejected += 1;
                        }
                    }
                }
            }
            Err(_) => {
                outstanding = 0;
                if queue.is_empty() {
                    queue.extend((0..frames.len()).filter(|&i| !done[i]));
                }
            }
        }
    }
    Pumped {
        answered,
        rejected,
        sent,
        elapsed: last - start,
    }
}

/// Waits until the directory at `addr` answers (an Unregister of a name nobody holds is
/// acknowledged).
pub fn wait_until_answering(addr: SocketAddr, limit: Duration) -> Result<(), String> {
    let frame = vec![unregister_frame(1, "herald-bench-probe")];
    let start = Instant::now();
    while start.elapsed() < limit {
        if pump(addr, &frame, 1, Duration::from_millis(100)).answered == 1 {
            return Ok(());
        }
    }
    Err(format!("no answer from {addr} within {limit:?}"))
}

/// Registers `count` services `prefix-…` with lease `lease` at `addr` (window 64, at
/// most `limit`); returns how many were acknowledged and how long it took.
pub fn populate(
    addr: SocketAddr,
    prefix: &str,
    count: usize,
    lease: Duration,
    limit: Duration,
) -> Pumped {
    let frames = register_frames(&names(prefix, count), lease);
    pump(addr, &frames, 64, limit)
}
