//! Listeners of the cluster benchmark, each recording what it sees with the time it saw
//! it, so that the orchestrating thread can ask afterwards "when did X first happen
//! after t0" without being on the listener's path:
//!
//! * [`watch`]: the std client library's [`Watch`] (what an application uses); records
//!   its `discovered` / `changed` / `unregistered` events.
//! * [`probe`]: herald-core's [`Client`] driven directly (the same state machine the
//!   library drives, with a thinner shell) so that its current directory can be read:
//!   records every beacon heard on the group (sender, publishing flag) and every change
//!   of the directory the client follows. The library does not expose the latter.

use herald_core::wire::{self, Message};
use herald_core::{Client, ClientConfig, Interest, Location};
use herald_server::client::{ClientOptions, EventKind, Watch};
use herald_server::clock::{unix_micros, Clock};
use herald_server::net::{self, Interface};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::runtime::Runtime;
use tokio_stream::StreamExt;

/// Services a probe can hold.
const PROBE_CAPACITY: usize = 4_096;
/// Datagrams read from one socket per wake-up.
const MAX_DATAGRAMS_PER_WAKE: usize = 1_024;

/// Something a listener saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// An event of the std library's watch, by service name.
    Event(EventKind, String),
    /// A beacon from the directory at `from`, saying whether it publishes.
    Beacon {
        /// The directory's request address.
        from: SocketAddr,
        /// Its publishing flag.
        publishing: bool,
    },
    /// The probe's client now follows this directory.
    Current(SocketAddr),
}

/// What a listener saw, with when (appended by the listener's task).
#[derive(Default)]
pub struct Log {
    entries: Mutex<Vec<(Instant, Seen)>>,
    changed: Condvar,
}

impl Log {
    fn push(&self, seen: Seen) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.push((Instant::now(), seen));
        self.changed.notify_all();
    }

    /// When the first entry at or after `since` that `wanted` accepts arrived, waiting
    /// for it until `until`.
    pub fn wait(
        &self,
        since: Instant,
        until: Instant,
        wanted: impl Fn(&Seen) -> bool,
    ) -> Option<Instant> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut scanned = entries.partition_point(|(at, _)| *at < since);
        loop {
            if let Some((at, _)) = entries[scanned..].iter().find(|(_, s)| wanted(s)) {
                return Some(*at);
            }
            scanned = entries.len();
            let left = until.checked_duration_since(Instant::now())?;
            if left.is_zero() {
                return None;
            }
            entries = self
                .changed
                .wait_timeout(entries, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// How many entries at or after `since` (and before `until`) `wanted` accepts.
    pub fn count(&self, since: Instant, until: Instant, wanted: impl Fn(&Seen) -> bool) -> usize {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .filter(|(at, s)| *at >= since && *at < until && wanted(s))
            .count()
    }

    /// The directory the probe followed last (before `at`).
    pub fn current_at(&self, at: Instant) -> Option<SocketAddr> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .filter(|(t, _)| *t <= at)
            .filter_map(|(_, s)| match s {
                Seen::Current(d) => Some(*d),
                _ => None,
            })
            .next_back()
    }
}

/// A listener's task and what it saw; the task stops when this is dropped.
pub struct Listener {
    /// What it saw.
    pub log: Arc<Log>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the std library's watch of every service with `options`.
pub fn watch(runtime: &Runtime, options: ClientOptions) -> Result<Listener, String> {
    let log = Arc::new(Log::default());
    let mut watch = runtime
        .block_on(Watch::start(options, Interest::all()))
        .map_err(|e| format!("watch: {e}"))?;
    let into = log.clone();
    let task = runtime.spawn(async move {
        // Ends when the watch ends or the task is aborted.
        while let Some(event) = watch.next().await {
            into.push(Seen::Event(event.kind, event.service.name));
        }
    });
    Ok(Listener { log, task })
}

/// Starts a probe: herald-core's client listening to every service of `group`, told
/// about `directories`.
pub fn probe(
    runtime: &Runtime,
    directories: &[SocketAddr],
    group: SocketAddr,
) -> Result<Listener, String> {
    let mut config = ClientConfig::new(0x0070_726f_6265);
    for &d in directories {
        let location = Location::from_socket_addr(d).map_err(|e| format!("{d}: {e}"))?;
        config
            .directories
            .push(location)
            .map_err(|_| "too many directories for a client".to_string())?;
    }
    config.interest = Some(Interest::all());
    let first = directories.first().copied().unwrap_or(group);
    let (socket, group_socket) = runtime
        .block_on(async {
            Ok::<_, std::io::Error>((
                net::request_socket(first)?,
                net::group_listener(group, Interface::default())?,
            ))
        })
        .map_err(|e| format!("probe sockets: {e}"))?;
    let log = Arc::new(Log::default());
    let task = runtime.spawn(run_probe(config, socket, group_socket, log.clone()));
    Ok(Listener { log, task })
}

/// The probe's loop, in the core's poll order; runs until aborted.
async fn run_probe(mut config: ClientConfig, socket: UdpSocket, group: UdpSocket, log: Arc<Log>) {
    let mut slots = vec![None; PROBE_CAPACITY];
    let mut index = vec![0u32; PROBE_CAPACITY];
    let clock = Clock::new();
    config.clock_floor = unix_micros();
    let mut client: Client<'_> = match Client::new(config, &mut slots, &mut index) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("[cluster] probe: {e}");
            return;
        }
    };
    client.request_snapshot(clock.now());
    let mut recv = vec![0u8; 65_536];
    let mut send = vec![0u8; wire::DEFAULT_MAX_DATAGRAM];
    let mut following = None;
    loop {
        let soon = Instant::now() + Duration::from_secs(1);
        let deadline = client
            .poll_timeout()
            .map_or(soon, |t| clock.std(t).min(soon));
        tokio::select! {
            _ = socket.readable() => {}
            _ = group.readable() => {}
            () = tokio::time::sleep_until(deadline.into()) => {}
        }
        for (s, is_group) in [(&socket, false), (&group, true)] {
            for _ in 0..MAX_DATAGRAMS_PER_WAKE {
                let Ok((len, from)) = s.try_recv_from(&mut recv) else {
                    break;
                };
                let bytes = &recv[..len];
                if is_group {
                    if let Ok(frame) = wire::decode(bytes) {
                        if let Message::Beacon(b) = frame.message {
                            log.push(Seen::Beacon {
                                from: b.directory.socket_addr(),
                                publishing: b.publishing,
                            });
                        }
                    }
                }
                client.handle_datagram(clock.now(), from, bytes);
            }
        }
        client.handle_timeout(clock.now());
        while let Some(t) = client.poll_transmit(clock.now(), &mut send) {
            let _ = socket.send_to(&send[..t.len], t.destination).await;
        }
        // Events are drained (the client reports directory changes there too); the
        // directory it follows is read from the client itself, which also gives the
        // first one.
        while client.poll_event().is_some() {}
        let now_following = client.current_directory().map(|d| d.socket_addr());
        if now_following != following {
            following = now_following;
            if let Some(d) = following {
                log.push(Seen::Current(d));
            }
        }
    }
}

/// Accepts a watch event of `kind` about `name`.
pub fn event(kind: EventKind, name: &str) -> impl Fn(&Seen) -> bool + '_ {
    move |s| matches!(s, Seen::Event(k, n) if *k == kind && n == name)
}

/// Accepts a beacon from `from` that says it publishes.
pub fn publishing_beacon(from: SocketAddr) -> impl Fn(&Seen) -> bool {
    move |s| matches!(s, Seen::Beacon { from: f, publishing: true } if *f == from)
}

/// Accepts the probe moving to `to`.
pub fn follows(to: SocketAddr) -> impl Fn(&Seen) -> bool {
    move |s| *s == Seen::Current(to)
}
