//! The background task of a client: it owns a core [`Client`] and its sockets, follows
//! the core's poll order, and answers the calls of [`Herald`](super::Herald),
//! [`Registered`](super::Registered) and [`Watch`](super::Watch) from the core's events.

use super::types::{EventKind, ServiceInfo, WatchEvent, WatchUpdate};
use super::{environment, random_bits, ClientOptions, Error, Grant};
use crate::clock::{unix_micros, Clock};
use crate::dropped::{DropLog, Dropped};
use crate::net;
use crate::outbox::Outbox;
use herald_core::client::MAX_DIRECTORIES;
use herald_core::{
    Client, ClientConfig, ClientEvent, Duration as CoreDuration, Environment, Interest, Location,
    Registration, RejectReason, Service, ServiceName,
};
use std::io;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// Most services one client registers at once.
pub const MAX_OWN: usize = 32;
/// Calls waiting for the task.
const COMMAND_QUEUE: usize = 64;
/// Most datagrams read from one socket in one wake-up.
const MAX_DATAGRAMS_PER_WAKE: usize = 4096;
/// Receive buffer: the largest datagram UDP can carry.
const RECV_BUFFER: usize = 65_536;

/// Where a call's answer goes.
pub type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// A call from a handle to the task.
pub enum Command {
    /// Register (or update) a service.
    Register {
        /// What to register (boxed: the other commands are small).
        registration: Box<Registration>,
        /// The answer.
        reply: Reply<Grant>,
    },
    /// Unregister a service by name.
    Unregister {
        /// The name.
        name: ServiceName,
        /// The answer, if anyone waits for it.
        reply: Option<Reply<()>>,
    },
    /// Keep a registration without unregistering it when the handles are gone.
    Detach {
        /// The name.
        name: ServiceName,
    },
    /// Fetch the registry.
    List {
        /// The answer.
        reply: Reply<Vec<ServiceInfo>>,
    },
    /// End the subscription to unicast deliveries (an orderly stop of a watch).
    Unsubscribe {
        /// Told once the unsubscription is sent.
        sent: oneshot::Sender<()>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Register { registration, .. } => write!(f, "Register({})", registration.name),
            Command::Unregister { name, .. } => write!(f, "Unregister({name})"),
            Command::Detach { name } => write!(f, "Detach({name})"),
            Command::List { .. } => f.write_str("List"),
            Command::Unsubscribe { .. } => f.write_str("Unsubscribe"),
        }
    }
}

/// A call waiting for the core, with its deadline (`None`: wait as long as the core
/// keeps trying).
struct Waiting<T> {
    name: Option<ServiceName>,
    reply: Option<Reply<T>>,
    deadline: Option<Instant>,
    /// The client's count of `storage_unavailable` refusals when the call began: a call
    /// that times out after more of them reports that reason, not silence.
    unstored_at: u64,
}

/// The task's state.
pub struct Driver<'a> {
    client: Client<'a, MAX_OWN>,
    clock: Clock,
    socket: UdpSocket,
    /// The request socket's address (its family says how to address IPv4).
    local: std::net::SocketAddr,
    group: Option<UdpSocket>,
    recv: Vec<u8>,
    send: Vec<u8>,
    /// What one wake-up sends, in one system call.
    outbox: Outbox,
    environment: Environment,
    timeout: Duration,
    events: Option<mpsc::UnboundedSender<WatchUpdate>>,
    /// The watch was told its first snapshot is in.
    ready: bool,
    registering: Vec<Waiting<Grant>>,
    unregistering: Vec<Waiting<()>>,
    listing: Vec<Waiting<Vec<ServiceInfo>>>,
    /// Registrations left to their lease when the handles are gone.
    detached: Vec<ServiceName>,
    /// The group and its interface (where link-local locations heard are placed).
    link: (std::net::SocketAddr, net::Interface),
    /// The id of the key this client signs with, if any (for error messages).
    signing_key: Option<u8>,
    drops: DropLog,
    /// Waiting for the unsubscription to be sent.
    unsubscribing: Vec<oneshot::Sender<()>>,
}

/// The handles' side of a started task.
type Started = (
    mpsc::Sender<Command>,
    Option<mpsc::UnboundedReceiver<WatchUpdate>>,
);

impl Driver<'_> {
    /// Checks the options, opens the sockets and starts the task. With an interest, the
    /// task also listens to the group and streams events.
    pub async fn start(
        options: ClientOptions,
        interest: Option<Interest>,
    ) -> Result<Started, Error> {
        let env = environment(&options.environment)?;
        let mut config = ClientConfig::new(options.registrant.unwrap_or_else(random_bits));
        config.environment = env.clone();
        if options.directories.len() > MAX_DIRECTORIES {
            return Err(Error::TooManyDirectories {
                max: MAX_DIRECTORIES,
            });
        }
        for &d in &options.directories {
            crate::interfaces::check_scope(d).map_err(Error::Unreachable)?;
            let location = Location::from_socket_addr(d).map_err(Error::InvalidLocation)?;
            // Cannot fail: the length was checked above.
            let _ = config.directories.push(location);
        }
        config.lease = CoreDuration::from_millis(options.lease.as_millis() as u64);
        let signing_key = options.keys.as_ref().map(|k| k.signing().id());
        config.keys = options.keys.clone();
        let listening = interest.is_some();
        config.interest = interest;
        // Without multicast, nothing reaches a listener but unicast deliveries.
        config.subscribe = if options.multicast {
            options.subscribe
        } else {
            herald_core::Subscribe::Always
        };
        if !options.multicast && options.directories.is_empty() {
            return Err(Error::NoDirectoryConfigured);
        }
        let socket = net::client_socket(options.group, &options.directories)?;
        // Without a configured directory, beacons on the group say where one is.
        let group = if options.multicast && (listening || options.directories.is_empty()) {
            net::check_multicast(options.group, options.interface).map_err(Error::Unreachable)?;
            Some(net::group_listener(options.group, options.interface)?)
        } else {
            None
        };
        let link = (options.group, options.interface);
        let local = socket.local_addr()?;
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let (events, stream) = if listening {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let (ready, started) = oneshot::channel();
        let capacity = options.capacity.max(1);
        let max_datagram = config.max_datagram;
        tokio::spawn(async move {
            let mut slots = vec![None; capacity];
            let mut index = vec![0u32; capacity];
            let clock = Clock::new();
            // Request counters follow the wall clock from the core's first `now`.
            config.clock_floor = unix_micros();
            // And request ids apart from another process's of the same registrant
            // started in the same microsecond (or under a clock set back).
            config.entropy = random_bits();
            let client = match Client::new(config, &mut slots, &mut index) {
                Ok(client) => client,
                Err(e) => {
                    let _ = ready.send(Err(Error::Client(e)));
                    return;
                }
            };
            let _ = ready.send(Ok(()));
            let mut driver = Driver {
                client,
                clock,
                socket,
                local,
                group,
                recv: vec![0; RECV_BUFFER],
                send: vec![0; max_datagram],
                outbox: Outbox::default(),
                environment: env,
                timeout: options.timeout,
                events,
                ready: false,
                registering: Vec::new(),
                unregistering: Vec::new(),
                listing: Vec::new(),
                detached: Vec::new(),
                link,
                signing_key,
                drops: DropLog::default(),
                unsubscribing: Vec::new(),
            };
            if listening {
                driver.client.request_snapshot(driver.clock.now());
            }
            driver.run(receiver).await;
        });
        started.await.map_err(|_| Error::Stopped)??;
        Ok((commands, stream))
    }
}

async fn readable(socket: &Option<UdpSocket>) -> io::Result<()> {
    match socket {
        Some(s) => s.readable().await,
        None => std::future::pending().await,
    }
}

impl Driver<'_> {
    async fn run(&mut self, mut commands: mpsc::Receiver<Command>) {
        let mut open = true;
        loop {
            if !open && self.idle() {
                break;
            }
            let deadline = self.deadline();
            tokio::select! {
                command = commands.recv(), if open => match command {
                    Some(command) => {
                        self.command(command);
                        // Calls made together share one wake-up (and one send).
                        for _ in 1..COMMAND_QUEUE {
                            match commands.try_recv() {
                                Ok(command) => self.command(command),
                                Err(_) => break,
                            }
                        }
                    }
                    None => {
                        open = false;
                        self.release_all();
                    }
                },
                ready = self.socket.readable() => {
                    if let Err(e) = ready {
                        tracing::debug!(error = %e, "request socket");
                    }
                }
                ready = readable(&self.group) => {
                    if let Err(e) = ready {
                        tracing::debug!(error = %e, "group socket");
                    }
                }
                () = tokio::time::sleep_until(deadline.into()) => {}
            }
            self.wake().await;
        }
    }

    /// Nothing left to do once every handle is gone: what is still registered is
    /// detached (left to its lease), and no unregistration is in flight.
    fn idle(&self) -> bool {
        self.unregistering.is_empty()
            && self
                .client
                .registrations()
                .all(|r| self.detached.contains(&r.name))
    }

    fn deadline(&self) -> Instant {
        let calls = self
            .registering
            .iter()
            .filter_map(|w| w.deadline)
            .chain(self.unregistering.iter().filter_map(|w| w.deadline))
            .chain(self.listing.iter().filter_map(|w| w.deadline));
        let core = self.client.poll_timeout().map(|t| self.clock.std(t));
        calls
            .chain(core)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    fn waiting<T>(&self, name: Option<ServiceName>, reply: Option<Reply<T>>) -> Waiting<T> {
        let deadline = reply.as_ref().map(|_| Instant::now() + self.timeout);
        Waiting {
            name,
            reply,
            deadline,
            unstored_at: self.client.stats().storage_unavailable,
        }
    }

    fn command(&mut self, command: Command) {
        let now = self.clock.now();
        match command {
            Command::Register {
                registration,
                reply,
            } => {
                let name = registration.name.clone();
                self.detached.retain(|n| *n != name);
                match self.client.register(now, *registration) {
                    Ok(()) => {
                        let w = self.waiting(Some(name), Some(reply));
                        self.registering.push(w);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(Error::Client(e)));
                    }
                }
            }
            Command::Unregister { name, reply } => {
                self.detached.retain(|n| *n != name);
                if let Err(e) = self.unregister(&name) {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(e));
                    }
                    return;
                }
                let w = self.waiting(Some(name), reply);
                self.unregistering.push(w);
            }
            Command::Detach { name } => self.detached.push(name),
            Command::List { reply } => {
                if self.listing.is_empty() {
                    self.client.request_snapshot(now);
                }
                let w = self.waiting(None, Some(reply));
                self.listing.push(w);
            }
            Command::Unsubscribe { sent } => {
                self.client.unsubscribe(now);
                self.unsubscribing.push(sent);
            }
        }
    }

    /// Unregisters `name`, also when this client did not register it (an earlier
    /// process with the same registrant id did).
    fn unregister(&mut self, name: &ServiceName) -> Result<(), Error> {
        self.client
            .release(self.clock.now(), name)
            .map_err(Error::Client)
    }

    /// Every handle is gone: unregister what is still registered.
    fn release_all(&mut self) {
        let names: Vec<ServiceName> = self
            .client
            .registrations()
            .map(|r| r.name.clone())
            .filter(|name| !self.detached.contains(name))
            .collect();
        // An orderly stop: the directory stops delivering at once.
        if self.client.is_subscribed() {
            self.client.unsubscribe(self.clock.now());
        }
        for name in names {
            if self.client.unregister(self.clock.now(), &name).is_ok() {
                tracing::debug!(%name, "releasing on drop");
                let w = self.waiting(Some(name), None);
                self.unregistering.push(w);
            }
        }
    }

    /// One wake-up, in the core's poll order.
    async fn wake(&mut self) {
        self.drain(false);
        self.drain(true);
        self.drops.report(Instant::now());
        self.client.handle_timeout(self.clock.now());
        while let Some(t) = self.client.poll_transmit(self.clock.now(), &mut self.send) {
            let to = net::mapped_for(self.local, t.destination);
            if self.outbox.push(&self.send[..t.len], to) {
                self.outbox.send(&self.socket).await;
            }
        }
        self.outbox.send(&self.socket).await;
        for sent in self.unsubscribing.drain(..) {
            let _ = sent.send(());
        }
        while let Some(event) = self.client.poll_event() {
            self.event(event);
        }
        self.expire();
    }

    /// Feeds every datagram that arrived on one socket (bounded per wake-up).
    fn drain(&mut self, group: bool) {
        let socket = if group {
            match &self.group {
                Some(s) => s,
                None => return,
            }
        } else {
            &self.socket
        };
        for _ in 0..MAX_DATAGRAMS_PER_WAKE {
            match socket.try_recv_from(&mut self.recv) {
                Ok((len, from)) => {
                    let from = net::unmapped(from);
                    self.client
                        .handle_datagram(self.clock.now(), from, &self.recv[..len]);
                    self.drops.observe(Dropped::from(self.client.stats()), from);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => tracing::debug!(error = %e, "receive failed"),
            }
        }
    }

    /// The zone link-local locations heard here are placed in ([`net::link_zone`]).
    fn zone(&self) -> u32 {
        let (group, interface) = self.link;
        net::link_zone(group, interface, self.client.current_directory())
    }

    fn emit(&mut self, kind: EventKind, service: &Service) {
        let event = WatchEvent {
            kind,
            service: ServiceInfo::on_link(service, self.zone()),
        };
        self.update(WatchUpdate::Event(event));
    }

    /// Hands `update` to the watch, if there is one still listening.
    fn update(&mut self, update: WatchUpdate) {
        if let Some(events) = &self.events {
            if events.send(update).is_err() {
                self.events = None;
            }
        }
    }

    /// The directories this client knows, for error messages.
    fn tried(&self) -> String {
        let tried: Vec<String> = self.client.directories().map(|d| d.to_string()).collect();
        if tried.is_empty() {
            "none known".to_owned()
        } else {
            tried.join(", ")
        }
    }

    /// What to check when no directory answers, after what this client sent and
    /// heard (a directory that answers, but not in a way this client takes, shows up
    /// here rather than as silence).
    fn hint(&self) -> String {
        let stats = self.client.stats();
        let traffic = format!(
            "{} datagrams sent, {} received ({} malformed, {} of another environment, {} \
             from unknown directories)",
            stats.datagrams_out,
            stats.datagrams_in,
            stats.malformed,
            stats.wrong_environment,
            stats.foreign_directory
        );
        let check = match self.signing_key {
            None => "check that the directory runs, and the environment; a directory \
                     with a key ignores clients without it (give one with --key-file or \
                     HERALD_KEY_FILE)"
                .to_owned(),
            Some(id) => format!(
                "check that the directory runs with the same environment and key (this \
                 client signs with key id {id}; {} frames failed authentication here)",
                stats.unauthenticated
            ),
        };
        format!("{check}; {traffic}")
    }

    fn no_directory(&self) -> impl FnMut() -> Error {
        let (timeout, directories, hint) = (self.timeout, self.tried(), self.hint());
        move || Error::NoDirectory {
            timeout,
            directories: directories.clone(),
            hint: hint.clone(),
        }
    }

    fn event(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Discovered(s) => self.emit(EventKind::Discovered, &s),
            ClientEvent::Changed(s) => self.emit(EventKind::Changed, &s),
            ClientEvent::Unregistered(s) => self.emit(EventKind::Unregistered, &s),
            ClientEvent::Evicted(s) => self.emit(EventKind::Evicted, &s),
            ClientEvent::Registered {
                name,
                lease,
                directory,
            } => {
                tracing::info!(%name, %directory, lease_ms = lease.as_millis(), "registered");
                let grant = Grant {
                    name: name.clone(),
                    lease: Duration::from_micros(lease.as_micros()),
                    directory: directory.socket_addr(),
                };
                answer(&mut self.registering, Some(&name), || Ok(grant.clone()));
            }
            ClientEvent::Rejected {
                name,
                reason,
                directory_environment,
            } => {
                let ours = self.environment.as_str().to_owned();
                let theirs = directory_environment.as_str().to_owned();
                let error = || rejection(reason, &ours, &theirs);
                let answered = match &name {
                    Some(name) => {
                        answer(&mut self.registering, Some(name), || Err(error()))
                            + answer(&mut self.unregistering, Some(name), || Err(error()))
                    }
                    None => answer(&mut self.listing, None, || Err(error())),
                };
                // A caller who waits hears it; otherwise (a renewal) it is worth a warning.
                if answered == 0 {
                    tracing::warn!(name = ?name, error = %error(), "rejected");
                }
            }
            ClientEvent::Released { name, confirmed } => {
                tracing::info!(%name, confirmed, "unregistered");
                let mut no_directory = self.no_directory();
                answer(&mut self.unregistering, Some(&name), || {
                    if confirmed {
                        Ok(())
                    } else {
                        Err(no_directory())
                    }
                });
            }
            ClientEvent::Unreachable => {
                tracing::warn!(
                    directories = %self.tried(),
                    hint = %self.hint(),
                    "no directory answers"
                );
                // The core keeps trying; calls fail at their own deadline, not now: a
                // directory slow to answer (a durable write on a busy disk) still
                // answers within the caller's timeout.
            }
            ClientEvent::DirectoryChanged(directory) => {
                tracing::info!(%directory, "using directory");
            }
            ClientEvent::SnapshotComplete { services } => {
                tracing::debug!(services, "snapshot complete");
                if !self.ready {
                    self.ready = true;
                    self.update(WatchUpdate::Ready { services });
                }
                let zone = self.zone();
                let list: Vec<ServiceInfo> = self
                    .client
                    .services()
                    .map(|s| ServiceInfo::on_link(s, zone))
                    .collect();
                answer(&mut self.listing, None, || Ok(list.clone()));
            }
        }
    }

    /// Fails the registrations and lists that `fail` picks (abandoning the
    /// registrations in the core). An unregistration keeps going in the core after its
    /// caller stops waiting.
    fn fail_calls(&mut self, mut fail: impl FnMut(Option<Instant>) -> bool) {
        let mut silence = self.no_directory();
        let unstored = self.client.stats().storage_unavailable;
        // The directory answered, but could not store the change: say so.
        let mut no_directory = |since: u64| {
            if unstored > since {
                Error::Rejected {
                    reason: RejectReason::StorageUnavailable,
                }
            } else {
                silence()
            }
        };
        let now = self.clock.now();
        let registering = std::mem::take(&mut self.registering);
        for mut w in registering {
            if !fail(w.deadline) {
                self.registering.push(w);
                continue;
            }
            if let Some(name) = &w.name {
                let _ = self.client.unregister(now, name);
            }
            if let Some(reply) = w.reply.take() {
                let _ = reply.send(Err(no_directory(w.unstored_at)));
            }
        }
        self.listing.retain_mut(|w| {
            let failed = fail(w.deadline);
            if failed {
                if let Some(reply) = w.reply.take() {
                    let _ = reply.send(Err(no_directory(w.unstored_at)));
                }
            }
            !failed
        });
        for w in self.unregistering.iter_mut().filter(|w| fail(w.deadline)) {
            w.deadline = None;
            if let Some(reply) = w.reply.take() {
                let _ = reply.send(Err(no_directory(w.unstored_at)));
            }
        }
    }

    /// Calls past their deadline fail. Checked at every wake-up, so the error (which
    /// names the directories tried) is only built when a call is due.
    fn expire(&mut self) {
        let now = Instant::now();
        let due = |deadline: Option<Instant>| deadline.is_some_and(|d| d <= now);
        let any = self.registering.iter().any(|w| due(w.deadline))
            || self.listing.iter().any(|w| due(w.deadline))
            || self.unregistering.iter().any(|w| due(w.deadline));
        if any {
            self.fail_calls(due);
        }
    }
}

fn rejection(reason: RejectReason, ours: &str, theirs: &str) -> Error {
    match reason {
        RejectReason::WrongEnvironment => Error::WrongEnvironment {
            ours: ours.to_owned(),
            theirs: theirs.to_owned(),
        },
        reason => Error::Rejected { reason },
    }
}

/// Answers (and removes) every waiting call for `name`; how many callers were told.
fn answer<T>(
    waiting: &mut Vec<Waiting<T>>,
    name: Option<&ServiceName>,
    mut result: impl FnMut() -> Result<T, Error>,
) -> usize {
    let mut told = 0;
    waiting.retain_mut(|w| {
        if w.name.as_ref() != name {
            return true;
        }
        if let Some(reply) = w.reply.take() {
            told += usize::from(reply.send(result()).is_ok());
        }
        false
    });
    told
}
