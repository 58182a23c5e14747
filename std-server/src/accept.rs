//! Taking TCP connections under caps, for every TCP interface of the directory (HTTP,
//! the metrics endpoint, DNS over TCP): at most a fixed number are served at once, and
//! further ones wait in the kernel's backlog, holding no descriptor of the directory's;
//! and at most an eighth of them come from one source (an IPv4 address, or an IPv6
//! /64), so that one host cannot hold every slot and shut the others out: a connection
//! past its source's share is taken and closed at once (after a short refusal, where
//! the interface has one). Each interface also closes its idle connections after a
//! timeout; with both, clients cannot use up the process's file descriptors (which its
//! storage needs too). A proxy in front of an interface counts as one source.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Pause after a failed accept (out of descriptors, say) before the next.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The share of an interface's connections one source may hold: one in this many.
pub const SOURCE_SHARE: usize = 8;

/// Most connections served at once from one source, of `max` in all.
pub const fn per_source(max: usize) -> usize {
    if max < SOURCE_SHARE {
        1
    } else {
        max / SOURCE_SHARE
    }
}

/// Where a connection comes from, as its share is counted: an IPv4 address (an
/// IPv4-mapped IPv6 one included), or the /64 of an IPv6 address (one host may hold
/// a whole /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl Source {
    fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source::V4(v4.octets()),
            IpAddr::V6(v6) => {
                let mut prefix = [0u8; 8];
                prefix.copy_from_slice(&v6.octets()[..8]);
                Source::V6(prefix)
            }
        }
    }
}

/// An HTTP/1.1 answer `429 Too Many Requests` with `body` (of `content_type`), closing
/// the connection: the refusal of the HTTP interfaces.
pub fn http_refusal(content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The reason a connection past its source's share is refused, for `max` connections.
pub fn refusal_reason(max: usize) -> String {
    format!(
        "too many connections from this address: at most {} of {max} at once",
        per_source(max)
    )
}

/// The connections being served, counted per source.
#[derive(Default)]
struct Sources(Mutex<HashMap<Source, usize>>);

impl Sources {
    /// Counts a connection from `source` unless it holds `max` already.
    fn take(self: &Arc<Self>, source: Source, max: usize) -> Option<SourceSlot> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(source).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            sources: self.clone(),
            source,
        })
    }
}

/// One connection of a source's share, given back when dropped.
struct SourceSlot {
    sources: Arc<Sources>,
    source: Source,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut counts = self.sources.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.source);
            }
        }
    }
}

/// Accepts connections on `listener` for ever, serving each with `serve` in a task of
/// its own, at most `max` at once and [`per_source`]`(max)` from one source. A
/// connection past its source's share gets `refusal` (as much of it as the socket
/// takes at once; nothing when empty) and is closed. `what` names the interface in the
/// logs.
pub async fn serve_bounded<F, S>(
    listener: TcpListener,
    max: usize,
    refusal: &'static [u8],
    what: &'static str,
    serve: S,
) where
    S: Fn(TcpStream, SocketAddr) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max));
    let sources = Arc::new(Sources::default());
    let share = per_source(max);
    loop {
        // Never closed: a permit always comes.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(interface = what, error = %e, "cannot accept a connection");
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        let Some(source_slot) = sources.take(Source::of(peer.ip()), share) else {
            tracing::debug!(
                interface = what,
                %peer,
                "refused a connection: its source holds {share} already"
            );
            // Best effort, never waiting: the refusal fits a fresh socket's buffer.
            let _ = stream.try_write(refusal);
            continue;
        };
        let connection = serve(stream, peer);
        tokio::spawn(async move {
            connection.await;
            drop(source_slot);
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_an_ipv4_address_or_an_ipv6_slash_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            Source::of(ip("10.0.0.1")),
            Source::of(ip("::ffff:10.0.0.1"))
        );
        assert_ne!(Source::of(ip("10.0.0.1")), Source::of(ip("10.0.0.2")));
        assert_eq!(
            Source::of(ip("2001:db8::1")),
            Source::of(ip("2001:db8::ffff:1"))
        );
        assert_ne!(
            Source::of(ip("2001:db8::1")),
            Source::of(ip("2001:db8:0:1::1"))
        );
    }

    #[test]
    fn a_source_holds_at_most_its_share_and_gets_it_back() {
        let sources = Arc::new(Sources::default());
        let a = Source::of("127.0.0.1".parse().unwrap());
        let b = Source::of("127.0.0.2".parse().unwrap());
        let held: Vec<_> = (0..3).map(|_| sources.take(a, 3).unwrap()).collect();
        assert!(sources.take(a, 3).is_none());
        assert!(sources.take(b, 3).is_some());
        drop(held);
        assert!(sources.take(a, 3).is_some());
        assert_eq!(per_source(512), 64);
        assert_eq!(per_source(4), 1);
    }
}
