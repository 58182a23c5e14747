//! `herald serve`: the socket loop that drives the core [`Directory`].
//!
//! Each wake-up (a datagram arrived, or the core's deadline passed) follows the poll
//! order of the core: feed every datagram that arrived (draining the socket, with a
//! flush of replies after every [`REPLY_QUEUE`] datagrams so none is dropped), tell the
//! core the time, send everything it wants sent, then write the wake-up's storage events
//! in one transaction. A flood is bounded work per wake-up: at most
//! [`MAX_DATAGRAMS_PER_WAKE`] datagrams are read before timers, sends and storage get
//! their turn again.

use crate::clock::{unix_micros, Clock};
use crate::config::ServeSettings;
use crate::dropped::{DropLog, Dropped};
use crate::metrics::{self, Shared, Snapshot};
use crate::net;
use crate::storage::{Batch, StorageError, Store};
use herald_core::{Directory, DirectoryEvent, Location, Slot, Version, REPLY_QUEUE};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

/// Most datagrams read in one wake-up before timers, sends and storage run again.
pub const MAX_DATAGRAMS_PER_WAKE: usize = 4096;
/// Renewals are written at once but synced to disk at most this late (a durable write
/// of a new, changed or removed service syncs them sooner). A crash loses at most this
/// much of the leases' extensions; registrants renew well before their leases end.
const SYNC_RENEWALS_AFTER: Duration = Duration::from_secs(1);
/// How often the registry size in the metrics is refreshed (it costs a pass over the
/// registry).
const METRICS_REFRESH: Duration = Duration::from_millis(250);
/// Receive buffer: the largest datagram UDP can carry.
const RECV_BUFFER: usize = 65_536;

/// Why `herald serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data directory could not be used.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A socket could not be set up.
    #[error("cannot bind {what} {addr}: {source}")]
    Bind {
        /// Which socket.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The advertised address is not reachable.
    #[error("cannot advertise {addr}: {reason}")]
    Advertise {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: herald_core::LocationError,
    },
    /// The stored registry does not fit the configured capacity.
    #[error("the data directory holds more than --capacity {capacity} services: raise it")]
    Capacity {
        /// The configured capacity.
        capacity: usize,
    },
    /// The core refused the configuration.
    #[error("invalid directory configuration: {0}")]
    Config(herald_core::directory::ConfigError),
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}

/// Runs the directory until `shutdown` completes, then writes what is pending and
/// returns.
pub async fn run(
    settings: ServeSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let clock = Clock::new();
    let (store, loaded) = Store::open(&settings.data_dir, clock.wall())?;
    let mut config = settings.directory.clone();
    let socket = net::directory_socket(
        settings.bind,
        config.group,
        settings.interface,
        settings.ttl,
    )
    .map_err(|source| ServeError::Bind {
        what: "request socket",
        addr: settings.bind,
        source,
    })?;
    let advertise = match settings.advertise {
        Some(addr) => addr,
        None => socket.local_addr()?,
    };
    config.address =
        Location::from_socket_addr(advertise).map_err(|reason| ServeError::Advertise {
            addr: advertise,
            reason,
        })?;
    config.version_floor = Version(loaded.as_of.0.max(unix_micros()));
    let mut slots: Vec<Slot> = vec![None; settings.capacity];
    let mut index = vec![0u32; settings.capacity];
    let mut directory =
        Directory::new(config.clone(), &mut slots, &mut index).map_err(ServeError::Config)?;
    let restored = loaded.records.len();
    for record in loaded.records {
        directory
            .restore(clock.now(), record)
            .map_err(|_| ServeError::Capacity {
                capacity: settings.capacity,
            })?;
    }
    let shared = match settings.metrics {
        Some(addr) => {
            let listener = metrics::bind(addr)
                .await
                .map_err(|source| ServeError::Bind {
                    what: "metrics endpoint",
                    addr,
                    source,
                })?;
            tracing::info!(address = %listener.local_addr()?, "metrics at /metrics");
            let shared = Shared::default();
            tokio::spawn(metrics::serve(listener, shared.clone()));
            Some(shared)
        }
        None => None,
    };
    tracing::info!(
        address = %config.address,
        group = %config.group,
        interface = %settings.interface,
        environment = %config.environment,
        signing_key = ?config.keys.as_ref().map(|k| k.signing().id()),
        data = %store.path().display(),
        restored,
        live = directory.live(),
        "herald directory serving"
    );
    let mut shell = Shell {
        socket,
        clock,
        store,
        recv: vec![0; RECV_BUFFER],
        send: vec![0; config.max_datagram],
        snapshot: Snapshot::default(),
        shared,
        published: None,
        drops: DropLog::default(),
        unsynced_since: None,
    };
    shell.serve(&mut directory, shutdown).await;
    tracing::info!(live = directory.live(), "herald directory stopped");
    Ok(())
}

/// The directory's sockets, clock and storage.
struct Shell {
    socket: UdpSocket,
    clock: Clock,
    store: Store,
    recv: Vec<u8>,
    send: Vec<u8>,
    snapshot: Snapshot,
    shared: Option<Shared>,
    published: Option<std::time::Instant>,
    drops: DropLog,
    /// Since when lease renewals have been written but not synced to disk.
    unsynced_since: Option<std::time::Instant>,
}

impl Shell {
    async fn serve(&mut self, directory: &mut Directory<'_>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let mut deadline = directory
                .poll_timeout()
                .map(|t| self.clock.std(t))
                .unwrap_or_else(|| std::time::Instant::now() + Duration::from_secs(3600));
            if let Some(since) = self.unsynced_since {
                deadline = deadline.min(since + SYNC_RENEWALS_AFTER);
            }
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                ready = self.socket.readable() => {
                    if let Err(e) = ready {
                        tracing::warn!(error = %e, "socket not readable");
                    }
                }
                () = tokio::time::sleep_until(deadline.into()) => {}
            }
            self.wake(directory).await;
        }
        // Send and store whatever the last wake-up left, and make it all durable.
        self.wake(directory).await;
        self.sync();
    }

    /// One wake-up, in the core's poll order.
    async fn wake(&mut self, directory: &mut Directory<'_>) {
        let mut since_flush = 0;
        for _ in 0..MAX_DATAGRAMS_PER_WAKE {
            match self.socket.try_recv_from(&mut self.recv) {
                Ok((len, from)) => {
                    self.snapshot.bytes_in += len as u64;
                    directory.handle_datagram(self.clock.now(), from, &self.recv[..len]);
                    self.drops.observe(Dropped::from(directory.stats()), from);
                    since_flush += 1;
                    if since_flush == REPLY_QUEUE {
                        self.flush(directory).await;
                        since_flush = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => tracing::debug!(error = %e, "receive failed"),
            }
        }
        self.drops.report(std::time::Instant::now());
        directory.handle_timeout(self.clock.now());
        self.flush(directory).await;
        if self
            .unsynced_since
            .is_some_and(|t| t.elapsed() >= SYNC_RENEWALS_AFTER)
        {
            self.sync();
        }
        self.publish(directory);
    }

    /// Makes written renewals durable.
    fn sync(&mut self) {
        if self.unsynced_since.take().is_some() {
            if let Err(e) = self.store.sync() {
                self.snapshot.storage_errors += 1;
                tracing::error!(error = %e, "storage sync failed");
            }
        }
    }

    /// Stores what changed, then sends every datagram the directory wants sent: an
    /// acknowledgement never leaves before the change it confirms is on disk.
    async fn flush(&mut self, directory: &mut Directory<'_>) {
        self.persist(directory);
        while let Some(t) = directory.poll_transmit(self.clock.now(), &mut self.send) {
            let bytes = &self.send[..t.len];
            match self.socket.send_to(bytes, t.destination).await {
                Ok(n) => self.snapshot.bytes_out += n as u64,
                Err(e) => tracing::debug!(to = %t.destination, error = %e, "send failed"),
            }
        }
    }

    /// Writes this wake-up's storage events in one transaction.
    fn persist(&mut self, directory: &mut Directory<'_>) {
        let wall = self.clock.wall();
        let mut batch = Batch::default();
        while let Some(event) = directory.poll_event() {
            match event {
                DirectoryEvent::Stored(record) => batch.stored(record, wall),
                DirectoryEvent::Renewed(record) => batch.renewed(record, wall),
                DirectoryEvent::Removed(name) => batch.removed(&name),
            }
        }
        if batch.is_empty() {
            return;
        }
        batch.as_of(directory.as_of());
        match self.store.save(&batch) {
            Ok(()) => {
                self.snapshot.storage_writes += 1;
                if batch.is_durable() {
                    self.unsynced_since = None;
                } else {
                    self.unsynced_since
                        .get_or_insert_with(std::time::Instant::now);
                }
            }
            Err(e) => {
                self.snapshot.storage_errors += 1;
                tracing::error!(error = %e, records = batch.len(), "storage write failed");
            }
        }
    }

    /// Refreshes the metrics snapshot: the counters every wake-up, the registry size
    /// (a pass over the registry) at most every [`METRICS_REFRESH`].
    fn publish(&mut self, directory: &Directory<'_>) {
        let Some(shared) = &self.shared else { return };
        let now = std::time::Instant::now();
        if self.published.is_none_or(|t| now - t >= METRICS_REFRESH) {
            self.published = Some(now);
            self.snapshot.live = directory.live() as u64;
            self.snapshot.entries = directory.len() as u64;
        }
        self.snapshot.directory = *directory.stats();
        *shared.lock().unwrap_or_else(|p| p.into_inner()) = self.snapshot;
    }
}
