//! The systemd notification protocol (`sd_notify`), for a unit with `Type=notify` and
//! `WatchdogSec=`: one datagram per message on the unix socket named by
//! `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket), nothing more.
//!
//! `herald serve` says `READY=1` once it serves, `WATCHDOG=1` from its socket loop at
//! half the watchdog interval (`WATCHDOG_USEC`, when `WATCHDOG_PID` is unset or is this
//! process), a `STATUS=` line when its storage stops or starts taking writes, and
//! `STOPPING=1` when it stops. Without `NOTIFY_SOCKET` every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// A connection to the service manager (or to nothing).
#[derive(Debug, Default)]
pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
    /// Half the watchdog interval, when the manager asked for pings.
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` (none set: a notifier
    /// that does nothing).
    pub fn from_env() -> Notifier {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let watchdog_for_us = var("WATCHDOG_PID")
            .is_none_or(|pid| pid.parse::<u32>().ok() == Some(std::process::id()));
        let watchdog = var("WATCHDOG_USEC")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&us| us > 0 && watchdog_for_us)
            .map(|us| Duration::from_micros(us / 2));
        match var("NOTIFY_SOCKET") {
            Some(path) => Notifier::to(&path, watchdog),
            None => Notifier::default(),
        }
    }

    /// Notifies the socket at `path` (`@name`: abstract), pinging the watchdog every
    /// `watchdog` if given.
    pub fn to(path: &str, watchdog: Option<Duration>) -> Notifier {
        let address = match path.strip_prefix('@') {
            Some(name) => abstract_address(name),
            None => std::os::unix::net::SocketAddr::from_pathname(path),
        };
        let socket = match (UnixDatagram::unbound(), address) {
            (Ok(socket), Ok(address)) => Some((socket, address)),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(socket = path, error = %e, "cannot notify systemd");
                None
            }
        };
        Notifier {
            socket,
            watchdog,
            last_ping: None,
        }
    }

    /// Sends one message (`KEY=value` lines); failures are logged, never fatal.
    pub fn send(&self, message: &str) {
        if let Some((socket, address)) = &self.socket {
            if let Err(e) = socket.send_to_addr(message.as_bytes(), address) {
                tracing::debug!(error = %e, message, "systemd notification failed");
            }
        }
    }

    /// The directory serves.
    pub fn ready(&mut self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
        self.last_ping = Some(Instant::now());
    }

    /// Called from every wake-up of the socket loop: pings the watchdog when half its
    /// interval has passed.
    pub fn alive(&mut self) {
        let Some(every) = self.watchdog else { return };
        let now = Instant::now();
        if self
            .last_ping
            .is_none_or(|t| now.duration_since(t) >= every)
        {
            self.last_ping = Some(now);
            self.send("WATCHDOG=1");
        }
    }

    /// When the next watchdog ping is due, if the manager asked for them.
    pub fn deadline(&self) -> Option<Instant> {
        let every = self.watchdog?;
        Some(self.last_ping.map_or_else(Instant::now, |t| t + every))
    }

    /// The directory is stopping.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }
}

#[cfg(target_os = "linux")]
fn abstract_address(name: &str) -> std::io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
}

#[cfg(not(target_os = "linux"))]
fn abstract_address(_name: &str) -> std::io::Result<std::os::unix::net::SocketAddr> {
    Err(std::io::Error::other(
        "abstract unix sockets exist on Linux only",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn ready_watchdog_and_stopping_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let manager = UnixDatagram::bind(&path).unwrap();
        manager
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut n = Notifier::to(path.to_str().unwrap(), Some(Duration::ZERO));
        n.ready("serving");
        assert_eq!(received(&manager), "READY=1\nSTATUS=serving");
        n.alive();
        assert_eq!(received(&manager), "WATCHDOG=1");
        n.stopping();
        assert_eq!(received(&manager), "STOPPING=1");
    }

    #[test]
    fn without_a_socket_nothing_happens() {
        let mut n = Notifier::default();
        n.ready("x");
        n.alive();
        assert!(n.deadline().is_none());
    }
}
