//! Readiness without sleeping: ask a directory for a snapshot, the way a client does,
//! until it answers.

use herald_core::wire::{self, Message, SnapshotRequest};
use herald_core::{Environment, Interest};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Asks `directory` for one snapshot page every 100 ms until a valid answer comes from
/// it (a page or a rejection), or `timeout`. Returns the kind of answer.
pub fn probe(
    directory: SocketAddr,
    environment: &str,
    timeout: Duration,
) -> Result<String, String> {
    let env = Environment::new(environment).map_err(|e| format!("environment: {e}"))?;
    let any = match directory {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind((any, 0)).map_err(|e| format!("bind: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let request = SnapshotRequest {
        request: 0x5eed,
        max_pages: 1,
        after: None,
        interest: Interest::all(),
        cookie: None,
        since: None,
    };
    let mut out = [0u8; 512];
    let len = wire::encode(&env, &request, &mut out).map_err(|e| format!("encode: {e:?}"))?;
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + timeout;
    let max_tries = timeout.as_millis() / 100 + 1;
    for _ in 0..max_tries {
        // Unreachable ports answer with ICMP errors: just try again.
        let _ = socket.send_to(&out[..len], directory);
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            if from != directory {
                continue;
            }
            match wire::decode(&buf[..n]).map(|f| f.message) {
                Ok(Message::SnapshotPage(..)) => return Ok("snapshot page".into()),
                Ok(Message::Cookie(..)) => return Ok("cookie".into()),
                Ok(Message::Reject(r)) => return Ok(format!("reject {}", r.reason.label())),
                _ => continue,
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    Err(format!("no answer from {directory} within {timeout:?}"))
}
