//! `herald serve`: the socket loop that drives the core [`Directory`].
//!
//! Each wake-up (a datagram arrived, the core's or the storage's deadline passed, a
//! write finished, or the store reported a change made elsewhere) follows the poll order
//! of the core: feed every datagram that arrived (draining the socket, up to
//! [`INBOX_DATAGRAMS`](crate::inbox::INBOX_DATAGRAMS) per system call, with a flush of
//! replies after every [`REPLY_QUEUE`] datagrams so none is dropped), tell the core the
//! time, hand the storage events to the backend, then send everything the core wants
//! sent. A flood is bounded work per wake-up: at most [`MAX_DATAGRAMS_PER_WAKE`]
//! datagrams are read before timers, sends and storage get their turn again. Each
//! datagram read also costs bounded sending, so a snapshot flood cannot leave a backlog
//! behind it: the core answers a snapshot request from an unverified address with one
//! cookie, keeps at most [`SNAPSHOT_QUEUE`](herald_core::SNAPSHOT_QUEUE) snapshot
//! answers (it drops the rest) and paces pages by byte budgets, and acknowledgements,
//! queued apart, leave first at every flush. Where the registry is kept is the
//! [`Backend`]'s business.
//!
//! **Group commit.** The redb store is written by its own thread, one write at a time,
//! so the loop keeps receiving and handling requests while an fsync runs. What the
//! directory sends after taking a change that must be durable is held here (in order)
//! until the write holding that change is on disk, then sent; when the write fails none
//! of it is sent, and the directory turns each held acknowledgement into a
//! `storage_unavailable` refusal (clients retry). A write starts at the end of a
//! wake-up, or when the one before ends: it takes everything that accumulated meanwhile.
//! While the changes of a wake-up wait for a write that can only start once the one in
//! flight ends, the loop leaves what the directory would send in the directory, and
//! takes it when that write ends (or once [`REPLY_QUEUE`] datagrams are in, so that no
//! reply is dropped): it would wait for the same write either way, and the registrations
//! of every wake-up meanwhile then share announcements instead of one each. At most
//! [`HELD_MAX`] datagrams are held: when that many wait, the loop stops reading the
//! socket (and draining the directory) until the write is done, so memory stays bounded
//! whatever the disk does and nothing is dropped.

use crate::backend::{Backend, Input, Start};
use crate::clock::{unix_micros, Clock};
use crate::config::{ServeSettings, StoreSettings};
use crate::dropped::{DropLog, Dropped};
use crate::inbox::Inbox;
use crate::metrics::{self, Shared, Snapshot};
use crate::net;
use crate::outbox::Outbox;
use crate::storage::{StorageError, Store};
use crate::systemd::Notifier;
use crate::view::Feed;
use herald_core::directory::SubscriberSlot;
use herald_core::{Directory, Location, Slot, Version, REPLY_QUEUE};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;

/// Most datagrams read in one wake-up before timers, sends and storage run again.
pub const MAX_DATAGRAMS_PER_WAKE: usize = 4096;
/// Most datagrams held back until a write is on disk; beyond it the loop stops reading
/// the socket until the write is done.
pub const HELD_MAX: usize = 8192;
/// How often the registry size in the metrics is refreshed (it costs a pass over the
/// registry).
const METRICS_REFRESH: Duration = Duration::from_millis(250);

/// Why `herald serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data directory could not be used.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The etcd store could not be used.
    #[error("cannot use the etcd store {url}: {detail}")]
    Etcd {
        /// The store, `etcd://…`.
        url: String,
        /// What failed.
        detail: String,
    },
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
    #[error("the store holds more than --capacity {capacity} services: raise it")]
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

/// Raises the soft limit of open file descriptors to the hard one (as Go's runtime does),
/// so that connections to the HTTP and DNS interfaces, each bounded in time, cannot use
/// up a soft limit of 1,024 that the system left low for old programs' sake.
fn raise_descriptor_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open file limit"),
            Err(e) => tracing::debug!(error = %e, soft, "cannot raise the open file limit"),
        }
    }
}

/// Runs the directory until `shutdown` completes, then writes what is pending and
/// returns.
pub async fn run(
    settings: ServeSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let clock = Clock::new();
    raise_descriptor_limit();
    // The redb store is opened first, so that a data directory that cannot be used is
    // reported before anything else.
    let local = match settings.store {
        StoreSettings::Redb => Some(Store::open(&settings.data_dir, clock.wall())?),
        StoreSettings::Etcd(_) => None,
    };
    let mut config = settings.directory.clone();
    config.admission.cookie_secret = cookie_secret()?;
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
    let (mut backend, start) = match local {
        Some((store, loaded)) => (Backend::local(store)?, Start::Local(loaded)),
        None => open_etcd(&settings, &clock, advertise).await?,
    };
    config.version_floor = Version(start.as_of().0.max(unix_micros()));
    let mut slots: Vec<Slot> = vec![None; settings.capacity];
    let mut index = vec![0u32; settings.capacity];
    let mut subscribers: Vec<SubscriberSlot> = vec![None; settings.delivery.subscribers];
    let mut directory = Directory::new(config.clone(), &mut slots, &mut index)
        .map_err(ServeError::Config)?
        .with_subscribers(&mut subscribers);
    let restored =
        backend
            .start(&mut directory, &clock, start)
            .map_err(|_| ServeError::Capacity {
                capacity: settings.capacity,
            })?;
    let shared = match settings.metrics {
        None if settings.http.is_some() => Some(Shared::default()),
        None => None,
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
    };
    let (feed, dns_truncated) =
        start_interfaces(&settings, &config, advertise, shared.clone()).await?;
    let mut shell = Shell {
        notify: Notifier::from_env(),
        writable: true,
        socket,
        clock,
        backend,
        inbox: Inbox::default(),
        send: vec![0; config.max_datagram],
        snapshot: Snapshot::default(),
        shared,
        published: None,
        drops: DropLog::default(),
        feed,
        dns_truncated,
        held: VecDeque::new(),
        unpolled: 0,
        deferred: false,
        outbox: Outbox::default(),
        subscribers: crate::subscribers::Table::default(),
    };
    // The metrics, health and the interfaces' copy of the registry are right before
    // anyone is told the directory serves.
    shell.publish(&directory);
    shell.observe(&directory, directory.as_of());
    let signing_key = config.keys.as_ref().map(|k| k.signing().id());
    match shell.backend.location() {
        crate::backend::Location::Data(data) => tracing::info!(
            address = %config.address,
            group = %config.group,
            interface = %settings.interface,
            environment = %config.environment,
            signing_key = ?signing_key,
            store = "redb",
            data = %data,
            restored,
            subscribers = directory.subscriber_count(),
            delivery = ?settings.delivery.delivery,
            live = directory.live(),
            "herald directory serving"
        ),
        crate::backend::Location::Etcd { url, prefix } => tracing::info!(
            address = %config.address,
            group = %config.group,
            interface = %settings.interface,
            environment = %config.environment,
            signing_key = ?signing_key,
            store = %url,
            prefix = %prefix,
            restored,
            subscribers = directory.subscriber_count(),
            delivery = ?settings.delivery.delivery,
            live = directory.live(),
            "herald directory serving"
        ),
    }
    shell
        .notify
        .ready(&format!("serving {} services", directory.live()));
    shell.serve(&mut directory, shutdown).await;
    tracing::info!(live = directory.live(), "herald directory stopped");
    Ok(())
}

/// Binds and starts the HTTP and DNS interfaces that are on; the feed that keeps their
/// registry copy, if any is, and the count of DNS answers sent truncated for want of
/// byte budget.
async fn start_interfaces(
    settings: &ServeSettings,
    config: &herald_core::DirectoryConfig,
    advertise: SocketAddr,
    shared: Option<Shared>,
) -> Result<(Option<Feed>, Arc<AtomicU64>), ServeError> {
    let dns_truncated = Arc::new(AtomicU64::new(0));
    if settings.http.is_none() && settings.dns.is_none() {
        return Ok((None, dns_truncated));
    }
    let (feed, view) = Feed::new();
    let feed = feed.on_link(net::link_zone(
        config.group,
        settings.interface,
        Some(config.address),
    ));
    if let Some(http) = &settings.http {
        let listener = crate::http::bind(http.addr)
            .await
            .map_err(|source| ServeError::Bind {
                what: "HTTP listener",
                addr: http.addr,
                source,
            })?;
        tracing::info!(address = %listener.local_addr()?, "HTTP API and page");
        let writer = crate::http::write::Writer::new(
            advertise,
            config.environment.as_str().to_owned(),
            config.group,
            config.keys.clone(),
            http.token.is_some(),
        );
        let api = crate::http::Api::new(http, view.clone(), shared.unwrap_or_default(), writer);
        tokio::spawn(crate::http::serve(listener, api));
    }
    if let Some(dns) = &settings.dns {
        let (udp, tcp) = crate::dns::bind(dns.addr)
            .await
            .map_err(|source| ServeError::Bind {
                what: "DNS socket",
                addr: dns.addr,
                source,
            })?;
        tracing::info!(address = %udp.local_addr()?, domain = %dns.domain, "DNS");
        tokio::spawn(crate::dns::serve(
            udp,
            tcp,
            dns.clone(),
            view,
            dns_truncated.clone(),
        ));
    }
    Ok((Some(feed), dns_truncated))
}

/// The secret that keys this run's snapshot cookies, from the operating system.
fn cookie_secret() -> io::Result<[u8; 32]> {
    use std::io::Read;
    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut secret)?;
    Ok(secret)
}

/// Connects to etcd and reads the registry.
#[cfg(feature = "etcd")]
async fn open_etcd(
    settings: &ServeSettings,
    clock: &Clock,
    advertise: SocketAddr,
) -> Result<(Backend, Start), ServeError> {
    let StoreSettings::Etcd(etcd) = &settings.store else {
        unreachable!("only an etcd store is opened here");
    };
    let failed = |e: crate::cluster::StartError| ServeError::Etcd {
        url: e.url,
        detail: e.detail,
    };
    let mut cluster = crate::cluster::Cluster::connect(
        etcd,
        settings.directory.environment.as_str(),
        settings.directory.group,
        advertise,
    )
    .await
    .map_err(failed)?;
    let loaded = cluster.load(clock.wall()).await.map_err(failed)?;
    Ok((Backend::Etcd(Box::new(cluster)), Start::Etcd(loaded)))
}

/// Without the `etcd` feature the configuration refuses an etcd store; this is never
/// reached.
#[cfg(not(feature = "etcd"))]
async fn open_etcd(
    settings: &ServeSettings,
    _clock: &Clock,
    _advertise: SocketAddr,
) -> Result<(Backend, Start), ServeError> {
    Err(ServeError::Etcd {
        url: format!("{}", settings.store),
        detail: "this herald was built without etcd support: rebuild it with `--features etcd`"
            .to_owned(),
    })
}

/// The directory's sockets, clock and storage.
struct Shell {
    /// The service manager (systemd), told of readiness, liveness and storage trouble.
    notify: Notifier,
    /// The storage took the last write (for the manager's status line).
    writable: bool,
    socket: UdpSocket,
    clock: Clock,
    backend: Backend,
    /// Datagrams read together.
    inbox: Inbox,
    send: Vec<u8>,
    snapshot: Snapshot,
    shared: Option<Shared>,
    published: Option<std::time::Instant>,
    drops: DropLog,
    /// The registry copy of the HTTP and DNS interfaces, when one is on.
    feed: Option<Feed>,
    /// DNS answers sent truncated for want of byte budget.
    dns_truncated: Arc<AtomicU64>,
    /// Datagrams waiting for a write to be on disk, in the order the directory gave
    /// them: the write's number, the destination and the bytes.
    held: VecDeque<(u64, SocketAddr, Vec<u8>)>,
    /// Datagrams the directory took since `poll_transmit` was last drained (each may
    /// queue a reply: at [`REPLY_QUEUE`] it is drained whatever the writes).
    unpolled: usize,
    /// The last flush left what the directory would send in it, for when the write in
    /// flight is done.
    deferred: bool,
    /// Datagrams about to leave together.
    outbox: Outbox,
    /// When each subscription was first seen, for the listing.
    subscribers: crate::subscribers::Table,
}

/// What woke the serve loop.
enum Wake {
    Shutdown,
    Input(Input),
    Ready,
}

impl Shell {
    async fn serve(&mut self, directory: &mut Directory<'_>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            // While what the directory sends waits for the write in flight, so do its
            // timers: that write's end wakes the loop (a timer whose sending is left
            // undone, a sweep page say, would otherwise wake it again at once).
            let mut deadline = (!self.deferred)
                .then(|| directory.poll_timeout())
                .flatten()
                .map(|t| self.clock.std(t))
                .unwrap_or_else(|| std::time::Instant::now() + Duration::from_secs(3600));
            for at in [self.backend.deadline(), self.notify.deadline()]
                .into_iter()
                .flatten()
            {
                deadline = deadline.min(at);
            }
            let woke = tokio::select! {
                biased;
                () = &mut shutdown => Wake::Shutdown,
                input = self.backend.input() => Wake::Input(input),
                ready = self.socket.readable(), if !self.is_full() => {
                    if let Err(e) = ready {
                        tracing::warn!(error = %e, "socket not readable");
                    }
                    Wake::Ready
                }
                () = tokio::time::sleep_until(deadline.into()) => Wake::Ready,
            };
            match woke {
                Wake::Shutdown => break,
                Wake::Input(input) => {
                    if self.backend.handle(input, directory, &self.clock).await {
                        // A write is done and the next one started: what the
                        // wake-ups meanwhile left is taken now, before more requests.
                        self.flush(directory).await;
                    } else {
                        self.unsend(directory).await;
                    }
                }
                Wake::Ready => {}
            }
            self.wake(directory).await;
        }
        self.notify.stopping();
        // Store whatever the last wake-up left and make it all durable, then send what
        // waited for it.
        self.wake(directory).await;
        if !self.backend.close(directory, &self.clock).await {
            self.unsend(directory).await;
        }
        // A directory that stopped publishing at close beacons so.
        self.flush(directory).await;
    }

    /// A write failed: nothing held for it leaves. The directory turns each held
    /// acknowledgement into a `storage_unavailable` refusal, sent at once.
    async fn unsend(&mut self, directory: &mut Directory<'_>) {
        let held = std::mem::take(&mut self.held);
        for (i, (_, to, datagram)) in held.into_iter().enumerate() {
            directory.unsent(to, &datagram);
            if (i + 1) % REPLY_QUEUE == 0 {
                self.flush(directory).await;
            }
        }
        self.flush(directory).await;
    }

    /// True when the held datagrams reached [`HELD_MAX`]: reading stops until a write
    /// is done.
    fn is_full(&self) -> bool {
        self.held.len() >= HELD_MAX
    }

    /// One wake-up, in the core's poll order.
    async fn wake(&mut self, directory: &mut Directory<'_>) {
        let mut read = 0;
        while read < MAX_DATAGRAMS_PER_WAKE && !self.is_full() {
            // Never more than the directory's reply queue takes before a flush.
            let room = REPLY_QUEUE
                .saturating_sub(self.unpolled)
                .min(MAX_DATAGRAMS_PER_WAKE - read);
            let got = self.inbox.receive(&self.socket, room);
            if got == 0 {
                break;
            }
            read += got;
            for i in 0..got {
                let (datagram, from) = self.inbox.get(i);
                self.snapshot.bytes_in += datagram.len() as u64;
                directory.handle_datagram(self.clock.now(), from, datagram);
                self.drops.observe(Dropped::from(directory.stats()), from);
            }
            self.unpolled += got;
            if self.unpolled >= REPLY_QUEUE {
                self.flush(directory).await;
            }
        }
        self.drops.report(std::time::Instant::now());
        directory.handle_timeout(self.clock.now());
        self.flush(directory).await;
        // The wake-up's changes go to disk together (or with the next write).
        self.backend.commit(directory, &self.clock);
        if self
            .backend
            .deadline()
            .is_some_and(|t| t <= std::time::Instant::now())
        {
            self.backend.tick(directory, &self.clock).await;
            // What the store brought in (after an outage) is announced at once.
            self.flush(directory).await;
        }
        self.publish(directory);
        self.tell_manager();
    }

    /// Pings the service manager's watchdog, and tells it when storage stops or starts
    /// taking writes.
    fn tell_manager(&mut self) {
        self.notify.alive();
        let writable = self.backend.status().writable;
        if writable != self.writable {
            self.writable = writable;
            self.notify.send(if writable {
                "STATUS=serving"
            } else {
                "STATUS=storage failing: changes are refused with storage_unavailable"
            });
        }
    }

    /// Hands what changed to the backend, then sends every datagram the directory wants
    /// sent, or holds it until the changes it may show are on disk: an acknowledgement
    /// never leaves before the change it confirms is stored.
    async fn flush(&mut self, directory: &mut Directory<'_>) {
        self.backend.persist(directory, &self.clock).await;
        let marks = self.backend.marks(directory);
        // The HTTP and DNS interfaces see a change once it is durable, before its
        // acknowledgement leaves.
        self.observe(directory, marks.durable_version);
        while let Some(&(needed, to, _)) = self.held.front() {
            if needed > marks.done {
                break;
            }
            if let Some((_, _, bytes)) = self.held.pop_front() {
                if self.outbox.push(&bytes, to) {
                    self.send_outbox().await;
                }
            }
        }
        // Behind the write in flight, what the directory would send now waits for the
        // next write, which starts only when this one is done: it is taken then, so that
        // the changes of every wake-up meanwhile share announcements (not one each).
        self.deferred = marks.behind_write_in_flight() && self.unpolled < REPLY_QUEUE;
        if self.deferred {
            self.send_outbox().await;
            return;
        }
        self.unpolled = 0;
        if marks.settled() && self.held.is_empty() {
            while let Some(t) = directory.poll_transmit(self.clock.now(), &mut self.send) {
                if self.outbox.push(&self.send[..t.len], t.destination) {
                    self.send_outbox().await;
                }
            }
            self.send_outbox().await;
            return;
        }
        // What was released leaves before anything is held after it.
        self.send_outbox().await;
        while !self.is_full() {
            let Some(t) = directory.poll_transmit(self.clock.now(), &mut self.send) else {
                break;
            };
            let bytes = self.send[..t.len].to_vec();
            self.held.push_back((marks.needed, t.destination, bytes));
        }
    }

    /// Sends what the outbox holds.
    async fn send_outbox(&mut self) {
        self.snapshot.bytes_out += self.outbox.send(&self.socket).await;
    }

    /// Brings the HTTP and DNS interfaces' copy of the registry up to date, up to
    /// `durable` (the newest version on disk).
    fn observe(&mut self, directory: &Directory<'_>, durable: Version) {
        if let Some(feed) = &mut self.feed {
            feed.observe(directory, &self.clock, durable);
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
            self.snapshot.subscribers = self.subscribers.refresh(directory, unix_micros() / 1_000);
            // The rows only for the HTTP interface's listing, when it is on.
            if let Some(feed) = &mut self.feed {
                feed.set_subscribers(self.subscribers.rows(directory), directory);
            }
        }
        self.snapshot.directory = *directory.stats();
        self.snapshot.store = self.backend.status();
        self.snapshot.publishing = directory.is_publishing();
        self.snapshot.dns_truncated = self.dns_truncated.load(Ordering::Relaxed);
        *shared.lock().unwrap_or_else(|p| p.into_inner()) = self.snapshot;
    }
}
