//! The async client library: register services, unregister by name, watch events as a
//! [`Stream`](tokio_stream::Stream), list the registry, with failover across several
//! directories.
//!
//! ```no_run
//! # async fn demo() -> Result<(), herald_server::client::Error> {
//! use herald_server::client::{registration, ClientOptions, Herald, Watch};
//! use tokio_stream::StreamExt;
//!
//! let options = ClientOptions::default(); // the directory at 127.0.0.1:37399
//! let herald = Herald::connect(options.clone()).await?;
//! let reg = registration("billing", &["127.0.0.1:8080".parse().unwrap()], &[])?;
//! let handle = herald.register(reg).await?; // renewed in the background
//!
//! let mut watch = Watch::start(options, Default::default()).await?;
//! while let Some(event) = watch.next().await {
//!     println!("{event:?}");
//! #   break;
//! }
//! handle.unregister().await?; // or drop it: a best-effort unregister
//! # Ok(()) }
//! ```
//!
//! Each [`Herald`] or [`Watch`] runs one background task that drives a core
//! [`Client`](herald_core::Client) over its own sockets; it stops when the last handle
//! to it is dropped (after releasing what it still had registered).

pub mod api;
mod driver;
mod http;
mod types;

pub use herald_core::Subscribe;
pub use types::{registration, EventKind, ServiceInfo, WatchEvent, WatchUpdate};

use crate::keys::{load_keys, KeyFileError};
use crate::net::Interface;
use driver::{Command, Driver, Reply};
use herald_core::auth::Keys;
use herald_core::interest::InterestError;
use herald_core::{
    ClientError, Environment, Interest, LocationError, MetadataError, NameError, Registration,
    RejectReason, ServiceName,
};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A service name was refused.
    #[error("invalid service name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why.
        reason: NameError,
    },
    /// A location was refused.
    #[error("invalid location: {0}")]
    InvalidLocation(LocationError),
    /// Metadata was refused.
    #[error("invalid metadata: {0}")]
    InvalidMetadata(MetadataError),
    /// An address or interface cannot work here: a link-local address without a scope
    /// id, a scope id or interface that names no interface of this host, a group and
    /// an interface that do not fit.
    #[error("{0}")]
    Unreachable(String),
    /// The environment name was refused.
    #[error("invalid environment {name:?}: {reason}")]
    InvalidEnvironment {
        /// The name given.
        name: String,
        /// Why.
        reason: NameError,
    },
    /// The interest was refused.
    #[error("{0}")]
    InvalidInterest(InterestError),
    /// Without multicast (`--group none`) no directory can be learned from beacons:
    /// one must be given.
    #[error("with --group none, directories are known only from --directory: give one")]
    NoDirectoryConfigured,
    /// More directories than a client can use.
    #[error("too many directories: at most {max}")]
    TooManyDirectories {
        /// The limit.
        max: usize,
    },
    /// The core refused the call or the settings.
    #[error("{0}")]
    Client(ClientError),
    /// The directory serves another environment.
    #[error(
        "environment mismatch: this client uses environment {ours:?}, but the directory \
         serves environment {theirs:?}"
    )]
    WrongEnvironment {
        /// This client's environment.
        ours: String,
        /// The directory's.
        theirs: String,
    },
    /// The directory refused the request for another reason.
    #[error("rejected by the directory: {reason} ({})", reason.label())]
    Rejected {
        /// Why.
        reason: RejectReason,
    },
    /// No directory answered in time.
    #[error("no directory answered within {timeout:?} (tried {directories}); {hint}")]
    NoDirectory {
        /// How long the call waited.
        timeout: Duration,
        /// The directories tried.
        directories: String,
        /// What to check: a directory of an authenticated environment does not answer
        /// a client without its key (or with another key) at all.
        hint: String,
    },
    /// A socket could not be set up.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    /// The background task is gone (the runtime is shutting down).
    #[error("the client task has stopped")]
    Stopped,
}

/// How a client reaches the directories.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Directories in order of preference (at most 4); more are learned from beacons.
    /// Default: `127.0.0.1:37399`.
    pub directories: Vec<SocketAddr>,
    /// Environment (default `default`).
    pub environment: String,
    /// Multicast group of the announcements (default `237.37.37.1:37371`).
    pub group: SocketAddr,
    /// Listen to the group at all (default true). Without (`--group none`), directories
    /// are known only from `directories`, and a watch always subscribes to unicast
    /// deliveries.
    pub multicast: bool,
    /// When a watch subscribes to unicast deliveries at its directory (default
    /// [`Subscribe::Never`]: it hears the group only; `WithoutBeacons`: when it hears no
    /// beacon on the group). It unsubscribes when the watch is dropped.
    pub subscribe: Subscribe,
    /// Interface the group is joined on (default `127.0.0.1`).
    pub interface: Interface,
    /// Who registers: only this id may renew or remove what it registered: keep it
    /// secret. `None`: a random id per client (see [`registrant::kept`](crate::registrant::kept)
    /// to take names back after a restart).
    pub registrant: Option<u64>,
    /// Lease asked for (default 15 s; the directory clamps it).
    pub lease: Duration,
    /// How long a call waits for an answer before failing with
    /// [`Error::NoDirectory`] (default 3 s).
    pub timeout: Duration,
    /// Most services a watch or a list holds (default 16384).
    pub capacity: usize,
    /// The environment's keys (default none: unauthenticated). A directory with keys
    /// ignores a client without them. Load them from key files with
    /// [`ClientOptions::with_key_files`] or [`keys::load_keys`](crate::keys::load_keys).
    pub keys: Option<Keys>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            directories: vec![crate::config::DEFAULT_BIND],
            environment: crate::config::DEFAULT_ENVIRONMENT.to_owned(),
            group: crate::config::DEFAULT_GROUP_ADDR,
            multicast: true,
            subscribe: Subscribe::Never,
            interface: Interface::default(),
            registrant: None,
            lease: Duration::from_secs(15),
            timeout: Duration::from_secs(3),
            capacity: crate::config::DEFAULT_CAPACITY,
            keys: None,
        }
    }
}

impl ClientOptions {
    /// Signs with the key in the key file `signing` and also accepts the one in
    /// `also_accepted` (during a rotation). See [`keys`](crate::keys) for the format.
    pub fn with_key_files(
        mut self,
        signing: &Path,
        also_accepted: Option<&Path>,
    ) -> Result<Self, KeyFileError> {
        self.keys = load_keys(Some(signing), also_accepted)?;
        Ok(self)
    }
}

/// The host's name (from the kernel), or `localhost` when unknown.
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// 64 random bits (a registrant id per client, and the entropy of its request ids).
fn random_bits() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

/// A client for registering, unregistering and listing.
#[derive(Clone, Debug)]
pub struct Herald {
    commands: mpsc::Sender<Command>,
}

impl Herald {
    /// Starts a client (its sockets and background task).
    pub async fn connect(options: ClientOptions) -> Result<Herald, Error> {
        let (commands, _) = Driver::start(options, None).await?;
        Ok(Herald { commands })
    }

    async fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Registers a service and keeps it registered (renewing its lease) until the handle
    /// is unregistered or dropped.
    pub async fn register(&self, registration: Registration) -> Result<Registered, Error> {
        let info = self
            .call(|reply| Command::Register {
                registration: Box::new(registration),
                reply,
            })
            .await?;
        Ok(Registered {
            info,
            commands: self.commands.clone(),
            released: false,
        })
    }

    /// Unregisters `name`, registered by this client or by an earlier one with the same
    /// registrant id. Fails when no directory confirms it within the timeout; the client
    /// keeps trying the directories in turn meanwhile, for up to a lease, while it runs.
    pub async fn unregister(&self, name: &str) -> Result<(), Error> {
        let name = ServiceName::new(name).map_err(|reason| Error::InvalidName {
            name: name.to_owned(),
            reason,
        })?;
        self.call(|reply| Command::Unregister {
            name,
            reply: Some(reply),
        })
        .await
    }

    /// The directory's current registry, in name order.
    pub async fn list(&self) -> Result<Vec<ServiceInfo>, Error> {
        self.call(|reply| Command::List { reply }).await
    }
}

/// What the directory granted.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The service.
    pub name: ServiceName,
    /// The lease granted (renewed at about a third of it).
    pub lease: Duration,
    /// The directory that accepted it.
    pub directory: SocketAddr,
}

/// A live registration. Unregister it with [`Registered::unregister`]; dropping it
/// unregisters with a best effort.
#[derive(Debug)]
pub struct Registered {
    info: Grant,
    commands: mpsc::Sender<Command>,
    released: bool,
}

impl Registered {
    /// What the directory granted.
    pub fn grant(&self) -> &Grant {
        &self.info
    }

    /// Lets go of the handle without unregistering. The client keeps renewing the
    /// lease while any other handle to it lives; once none does, renewals stop and the
    /// directory keeps the service until its lease runs out.
    pub fn detach(mut self) {
        self.released = true;
        let _ = self.commands.try_send(Command::Detach {
            name: self.info.name.clone(),
        });
    }

    /// Unregisters the service and waits for the directory to confirm it.
    pub async fn unregister(mut self) -> Result<(), Error> {
        self.released = true;
        let (tx, rx) = oneshot::channel();
        let command = Command::Unregister {
            name: self.info.name.clone(),
            reply: Some(tx),
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.commands.try_send(Command::Unregister {
                name: self.info.name.clone(),
                reply: None,
            });
        }
    }
}

/// A stream of discovered, changed and unregistered services of interest (and, through
/// [`next_update`](Watch::next_update), of the moment the first snapshot is in).
#[derive(Debug)]
pub struct Watch {
    events: mpsc::UnboundedReceiver<WatchUpdate>,
    _commands: mpsc::Sender<Command>,
}

impl Watch {
    /// Starts watching `interest` (empty: every service). The current registry arrives
    /// first, as `discovered` events.
    pub async fn start(options: ClientOptions, interest: Interest) -> Result<Watch, Error> {
        let (commands, events) = Driver::start(options, Some(interest)).await?;
        Ok(Watch {
            events: events.ok_or(Error::Stopped)?,
            _commands: commands,
        })
    }
}

impl Watch {
    /// The next update: an event, or (once, after the first snapshot's events) that
    /// the watch is ready. `None` when the watch has stopped.
    pub async fn next_update(&mut self) -> Option<WatchUpdate> {
        self.events.recv().await
    }

    /// An orderly stop: ends the subscription to unicast deliveries, if any (the
    /// directory stops delivering at once instead of when the lease runs out), and
    /// returns once that is sent.
    pub async fn close(self) {
        let (sent, done) = oneshot::channel();
        if self
            ._commands
            .send(Command::Unsubscribe { sent })
            .await
            .is_ok()
        {
            let _ = done.await;
        }
    }
}

/// The events only (the ready mark is skipped).
impl tokio_stream::Stream for Watch {
    type Item = WatchEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WatchEvent>> {
        loop {
            match self.events.poll_recv(cx) {
                Poll::Ready(Some(WatchUpdate::Ready { .. })) => continue,
                Poll::Ready(Some(WatchUpdate::Event(event))) => return Poll::Ready(Some(event)),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Parses an environment name into the core's type, with a typed error.
fn environment(name: &str) -> Result<Environment, Error> {
    Environment::new(name).map_err(|reason| Error::InvalidEnvironment {
        name: name.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_what_is_wrong() {
        let e = Error::WrongEnvironment {
            ours: "staging".into(),
            theirs: "prod".into(),
        };
        let text = e.to_string();
        assert!(
            text.contains("\"staging\"") && text.contains("\"prod\""),
            "{text}"
        );
        let e = Error::Rejected {
            reason: RejectReason::NameHeld,
        };
        assert!(e.to_string().contains("name_held"));
    }

    #[tokio::test]
    async fn only_a_client_that_joins_the_group_needs_its_interface() {
        // Nothing is sent: connecting opens the sockets only.
        let ipv6 = ClientOptions {
            directories: vec!["[::1]:9".parse().unwrap()],
            group: "[ff15::3737]:37371".parse().unwrap(),
            ..ClientOptions::default()
        };
        // A registrant (the HTTP API's writer is one) does not join the group.
        assert!(Herald::connect(ipv6.clone()).await.is_ok());
        // A listener does, and is told why it cannot.
        let Err(err) = Watch::start(ipv6, Interest::all()).await else {
            panic!("a listener with an IPv4 interface on an IPv6 group started")
        };
        assert!(matches!(err, Error::Unreachable(_)), "{err}");
    }
}
