//! Configuration of `herald serve` and of the client commands.
//!
//! Every setting comes from, in order of precedence: a command-line flag, a `HERALD_*`
//! environment variable (both handled by clap), the TOML file given with `--config`, and
//! the built-in default. The file uses the flag names with `_` for `-`, e.g.
//! `interval_ms = 50`; `herald serve --print-config` shows the result.

use crate::net::Interface;
use clap::Args;
use herald_core::directory::{DEFAULT_GROUP, DEFAULT_GROUP_PORT, DEFAULT_REQUEST_PORT};
use herald_core::{DirectoryConfig, Duration, Environment, Location};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Default address `herald serve` takes requests on.
pub const DEFAULT_BIND: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_REQUEST_PORT);
/// Default multicast group for announcements.
pub const DEFAULT_GROUP_ADDR: SocketAddr = SocketAddr::new(
    IpAddr::V4(Ipv4Addr::new(
        DEFAULT_GROUP[0],
        DEFAULT_GROUP[1],
        DEFAULT_GROUP[2],
        DEFAULT_GROUP[3],
    )),
    DEFAULT_GROUP_PORT,
);
/// Default multicast TTL (hop limit): 1, the local link only.
pub const DEFAULT_TTL: u32 = 1;
/// Default processing interval (paces repeated notifications), in milliseconds.
pub const DEFAULT_INTERVAL_MS: u64 = 50;
/// Default number of unregistered notifications per removal.
pub const DEFAULT_NOTIFICATIONS: u8 = 20;
/// Default number of announcements of each new or changed registration.
pub const DEFAULT_REGISTRATION_ANNOUNCEMENTS: u8 = 3;
/// Default time between beacons, in milliseconds.
pub const DEFAULT_BEACON_INTERVAL_MS: u64 = 1_000;
/// Default time for one anti-entropy sweep of the whole registry, in milliseconds.
pub const DEFAULT_SWEEP_PERIOD_MS: u64 = 10_000;
/// Default largest datagram, in bytes.
pub const DEFAULT_MAX_DATAGRAM: usize = herald_core::wire::DEFAULT_MAX_DATAGRAM;
/// Default lease granted when a registrant asks for none, in seconds.
pub const DEFAULT_LEASE_SECS: u64 = 15;
/// Default shortest lease granted, in seconds.
pub const DEFAULT_MIN_LEASE_SECS: u64 = 1;
/// Default longest lease granted, in seconds.
pub const DEFAULT_MAX_LEASE_SECS: u64 = 300;
/// Default registry capacity (services, live and departed).
pub const DEFAULT_CAPACITY: usize = 16_384;
/// Default environment.
pub const DEFAULT_ENVIRONMENT: &str = "default";

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for these settings.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A key file could not be used.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyFileError),
    /// A setting has a value that cannot work.
    #[error("invalid setting {setting}: {message}")]
    Invalid {
        /// The setting's name.
        setting: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn invalid(setting: &'static str, message: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        setting,
        message: message.to_string(),
    }
}

/// The settings of `herald serve`: flags, `HERALD_*` variables and the keys of the
/// config file. Unset values fall back to the next source, then to the default.
#[derive(Args, Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Address to take requests on; announcements also come from it
    /// [default: 127.0.0.1:37399]
    #[arg(long, env = "HERALD_BIND", value_name = "IP:PORT")]
    pub bind: Option<SocketAddr>,
    /// Address clients reach this directory at, announced on the group; required when
    /// binding a wildcard address [default: the bind address]
    #[arg(long, env = "HERALD_ADVERTISE", value_name = "IP:PORT")]
    pub advertise: Option<SocketAddr>,
    /// Multicast group and port for announcements [default: 237.37.37.1:37371]
    #[arg(long, env = "HERALD_GROUP", value_name = "IP:PORT")]
    pub group: Option<SocketAddr>,
    /// Interface for multicast: its IPv4 address, or its index for an IPv6 group
    /// [default: 127.0.0.1]
    #[arg(long, env = "HERALD_INTERFACE", value_name = "IP|INDEX")]
    pub interface: Option<Interface>,
    /// Multicast TTL (hop limit) [default: 1]
    #[arg(long, env = "HERALD_TTL")]
    pub ttl: Option<u32>,
    /// Environment served; requests from others are rejected [default: default]
    #[arg(long, env = "HERALD_ENVIRONMENT")]
    pub environment: Option<String>,
    /// Where the registry is stored [default: $XDG_STATE_HOME/herald, else
    /// ~/.local/state/herald]
    #[arg(long, env = "HERALD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Processing interval: paces repeated notifications, never a first announcement
    /// [default: 50]
    #[arg(long, env = "HERALD_INTERVAL_MS", value_name = "MS")]
    pub interval_ms: Option<u64>,
    /// How many times each removal is announced [default: 20]
    #[arg(long, env = "HERALD_NOTIFICATIONS", value_name = "N")]
    pub notifications: Option<u8>,
    /// How many times each new or changed registration is announced: at once, then one
    /// per processing interval [default: 3]
    #[arg(long, env = "HERALD_REGISTRATION_ANNOUNCEMENTS", value_name = "N")]
    pub registration_announcements: Option<u8>,
    /// Time between beacons ("directory available here", with the registry version)
    /// [default: 1000]
    #[arg(long, env = "HERALD_BEACON_INTERVAL_MS", value_name = "MS")]
    pub beacon_interval_ms: Option<u64>,
    /// Time for one anti-entropy sweep of the whole registry on the group [default: 10000]
    #[arg(long, env = "HERALD_SWEEP_PERIOD_MS", value_name = "MS")]
    pub sweep_period_ms: Option<u64>,
    /// Largest datagram sent, in bytes (512 to 65507) [default: 1400]
    #[arg(long, env = "HERALD_MAX_DATAGRAM", value_name = "BYTES")]
    pub max_datagram: Option<usize>,
    /// Lease granted when a registrant asks for none [default: 15]
    #[arg(long, env = "HERALD_DEFAULT_LEASE_SECS", value_name = "SECS")]
    pub default_lease_secs: Option<u64>,
    /// Shortest lease granted [default: 1]
    #[arg(long, env = "HERALD_MIN_LEASE_SECS", value_name = "SECS")]
    pub min_lease_secs: Option<u64>,
    /// Longest lease granted [default: 300]
    #[arg(long, env = "HERALD_MAX_LEASE_SECS", value_name = "SECS")]
    pub max_lease_secs: Option<u64>,
    /// Registry capacity: services held at once, live or departed [default: 16384]
    #[arg(long, env = "HERALD_CAPACITY", value_name = "N")]
    pub capacity: Option<usize>,
    /// Serve Prometheus metrics at http://ADDR/metrics [default: off]
    #[arg(long, env = "HERALD_METRICS", value_name = "IP:PORT")]
    pub metrics: Option<SocketAddr>,
    /// Key file of the environment: every frame is signed with it, and frames without a
    /// valid signature are dropped (see `herald keygen`) [default: none, frames are not
    /// authenticated]
    #[arg(long, env = "HERALD_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Key file of a second key also accepted, during a key rotation [default: none]
    #[arg(long, env = "HERALD_ACCEPT_KEY_FILE", value_name = "FILE")]
    pub accept_key_file: Option<PathBuf>,
}

/// Reads a config file (`None`: no file, all unset).
pub fn read_file(path: Option<&Path>) -> Result<Options, ConfigError> {
    let Some(path) = path else {
        return Ok(Options::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })
}

/// The default data directory: `$XDG_STATE_HOME/herald`, else
/// `$HOME/.local/state/herald`, else `./herald-data`. (`$HERALD_DATA_DIR` and
/// `--data-dir` come before it.)
pub fn default_data_dir() -> PathBuf {
    let non_empty = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty());
    if let Some(state) = non_empty("XDG_STATE_HOME") {
        return PathBuf::from(state).join("herald");
    }
    match non_empty("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/herald"),
        None => PathBuf::from("herald-data"),
    }
}

/// Everything `herald serve` needs, resolved and checked.
#[derive(Clone, Debug)]
pub struct ServeSettings {
    /// Request socket address.
    pub bind: SocketAddr,
    /// The advertised address, when configured (else the bound address is used).
    pub advertise: Option<SocketAddr>,
    /// Multicast interface.
    pub interface: Interface,
    /// Multicast TTL.
    pub ttl: u32,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Registry capacity.
    pub capacity: usize,
    /// Metrics endpoint.
    pub metrics: Option<SocketAddr>,
    /// The core's settings (the address and version floor are set at start-up).
    pub directory: DirectoryConfig,
}

impl Options {
    /// Each setting from `self`, else from `fallback`.
    pub fn or(self, fallback: Options) -> Options {
        Options {
            bind: self.bind.or(fallback.bind),
            advertise: self.advertise.or(fallback.advertise),
            group: self.group.or(fallback.group),
            interface: self.interface.or(fallback.interface),
            ttl: self.ttl.or(fallback.ttl),
            environment: self.environment.or(fallback.environment),
            data_dir: self.data_dir.or(fallback.data_dir),
            interval_ms: self.interval_ms.or(fallback.interval_ms),
            notifications: self.notifications.or(fallback.notifications),
            registration_announcements: self
                .registration_announcements
                .or(fallback.registration_announcements),
            beacon_interval_ms: self.beacon_interval_ms.or(fallback.beacon_interval_ms),
            sweep_period_ms: self.sweep_period_ms.or(fallback.sweep_period_ms),
            max_datagram: self.max_datagram.or(fallback.max_datagram),
            default_lease_secs: self.default_lease_secs.or(fallback.default_lease_secs),
            min_lease_secs: self.min_lease_secs.or(fallback.min_lease_secs),
            max_lease_secs: self.max_lease_secs.or(fallback.max_lease_secs),
            capacity: self.capacity.or(fallback.capacity),
            metrics: self.metrics.or(fallback.metrics),
            key_file: self.key_file.or(fallback.key_file),
            accept_key_file: self.accept_key_file.or(fallback.accept_key_file),
        }
    }

    /// Every unset setting at its default (`metrics`, `advertise` and the key files stay
    /// off).
    pub fn with_defaults(self) -> Options {
        self.or(Options {
            bind: Some(DEFAULT_BIND),
            advertise: None,
            group: Some(DEFAULT_GROUP_ADDR),
            interface: Some(Interface::default()),
            ttl: Some(DEFAULT_TTL),
            environment: Some(DEFAULT_ENVIRONMENT.to_owned()),
            data_dir: Some(default_data_dir()),
            interval_ms: Some(DEFAULT_INTERVAL_MS),
            notifications: Some(DEFAULT_NOTIFICATIONS),
            registration_announcements: Some(DEFAULT_REGISTRATION_ANNOUNCEMENTS),
            beacon_interval_ms: Some(DEFAULT_BEACON_INTERVAL_MS),
            sweep_period_ms: Some(DEFAULT_SWEEP_PERIOD_MS),
            max_datagram: Some(DEFAULT_MAX_DATAGRAM),
            default_lease_secs: Some(DEFAULT_LEASE_SECS),
            min_lease_secs: Some(DEFAULT_MIN_LEASE_SECS),
            max_lease_secs: Some(DEFAULT_MAX_LEASE_SECS),
            capacity: Some(DEFAULT_CAPACITY),
            metrics: None,
            key_file: None,
            accept_key_file: None,
        })
    }

    /// The environment, validated.
    pub fn environment(&self) -> Result<Environment, ConfigError> {
        let name = self.environment.as_deref().unwrap_or(DEFAULT_ENVIRONMENT);
        Environment::new(name).map_err(|e| invalid("environment", format!("{name:?}: {e}")))
    }

    /// Resolves and checks the settings for `herald serve`.
    pub fn serve_settings(self) -> Result<ServeSettings, ConfigError> {
        let o = self.with_defaults();
        let environment = o.environment()?;
        let bind = o.bind.unwrap_or(DEFAULT_BIND);
        let group = o.group.unwrap_or(DEFAULT_GROUP_ADDR);
        if bind.ip().is_unspecified() && o.advertise.is_none() {
            return Err(invalid(
                "advertise",
                format!(
                    "the directory binds {bind}, which nobody can reach: set --advertise \
                     to the address clients should use"
                ),
            ));
        }
        // The placeholder is replaced by the real address once the socket is bound.
        let placeholder = o.advertise.unwrap_or(bind);
        let address = Location::new(placeholder.ip(), placeholder.port().max(1))
            .map_err(|e| invalid("advertise", e))?;
        let secs = |v: Option<u64>| Duration::from_secs(v.unwrap_or(0));
        let mut directory = DirectoryConfig::new(address, group);
        directory.environment = environment;
        directory.interval = Duration::from_millis(o.interval_ms.unwrap_or(DEFAULT_INTERVAL_MS));
        directory.notifications = o.notifications.unwrap_or(DEFAULT_NOTIFICATIONS);
        directory.registration_announcements = o
            .registration_announcements
            .unwrap_or(DEFAULT_REGISTRATION_ANNOUNCEMENTS);
        directory.beacon_interval =
            Duration::from_millis(o.beacon_interval_ms.unwrap_or(DEFAULT_BEACON_INTERVAL_MS));
        directory.sweep_period =
            Duration::from_millis(o.sweep_period_ms.unwrap_or(DEFAULT_SWEEP_PERIOD_MS));
        directory.max_datagram = o.max_datagram.unwrap_or(DEFAULT_MAX_DATAGRAM);
        directory.default_lease = secs(o.default_lease_secs);
        directory.min_lease = secs(o.min_lease_secs);
        directory.max_lease = secs(o.max_lease_secs);
        directory.keys =
            crate::keys::load_keys(o.key_file.as_deref(), o.accept_key_file.as_deref())?;
        directory.validate().map_err(|e| invalid("directory", e))?;
        let capacity = o.capacity.unwrap_or(DEFAULT_CAPACITY);
        if capacity == 0 || u32::try_from(capacity).is_err() {
            return Err(invalid("capacity", "must be 1 to 4294967295"));
        }
        Ok(ServeSettings {
            bind,
            advertise: o.advertise,
            interface: o.interface.unwrap_or_default(),
            ttl: o.ttl.unwrap_or(DEFAULT_TTL),
            data_dir: o.data_dir.unwrap_or_else(default_data_dir),
            capacity,
            metrics: o.metrics,
            directory,
        })
    }

    /// The directory a client on the same host should use: the advertised address,
    /// else the bind address, else the default.
    pub fn directory_address(&self) -> SocketAddr {
        self.advertise.or(self.bind).unwrap_or(DEFAULT_BIND)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: Options,
    }

    #[test]
    fn flags_win_over_file_and_file_over_defaults() {
        let file: Options =
            toml::from_str("bind = \"127.0.0.1:4000\"\ninterval_ms = 20\nenvironment = \"file\"\n")
                .unwrap();
        let flags = Cli::try_parse_from(["x", "--bind", "127.0.0.1:5000"])
            .unwrap()
            .options;
        let o = flags.or(file).with_defaults();
        assert_eq!(o.bind, Some("127.0.0.1:5000".parse().unwrap()));
        assert_eq!(o.interval_ms, Some(20));
        assert_eq!(o.environment.as_deref(), Some("file"));
        assert_eq!(o.notifications, Some(DEFAULT_NOTIFICATIONS));
        let s = o.serve_settings().unwrap();
        assert_eq!(s.directory.interval, Duration::from_millis(20));
        assert_eq!(s.directory.environment.as_str(), "file");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let err = toml::from_str::<Options>("bnid = \"127.0.0.1:1\"").unwrap_err();
        assert!(err.message().contains("bnid"), "{err}");
    }

    #[test]
    fn wildcard_bind_needs_an_advertised_address() {
        let o = Options {
            bind: Some("0.0.0.0:37399".parse().unwrap()),
            ..Options::default()
        };
        let err = o.clone().serve_settings().unwrap_err().to_string();
        assert!(err.contains("--advertise"), "{err}");
        let o = Options {
            advertise: Some("192.0.2.7:37399".parse().unwrap()),
            ..o
        };
        assert!(o.serve_settings().is_ok());
    }

    #[test]
    fn impossible_values_are_refused() {
        let bad = [
            Options {
                environment: Some("two words".into()),
                ..Options::default()
            },
            Options {
                min_lease_secs: Some(10),
                default_lease_secs: Some(5),
                ..Options::default()
            },
            Options {
                group: Some("10.0.0.1:1".parse().unwrap()),
                ..Options::default()
            },
            Options {
                capacity: Some(0),
                ..Options::default()
            },
        ];
        for o in bad {
            assert!(o.clone().serve_settings().is_err(), "{o:?}");
        }
    }

    #[test]
    fn help_states_every_default() {
        use clap::CommandFactory;
        let help = Cli::command().render_help().to_string();
        for default in [
            DEFAULT_BIND.to_string(),
            DEFAULT_GROUP_ADDR.to_string(),
            Interface::default().to_string(),
            DEFAULT_TTL.to_string(),
            DEFAULT_ENVIRONMENT.to_string(),
            DEFAULT_INTERVAL_MS.to_string(),
            DEFAULT_NOTIFICATIONS.to_string(),
            DEFAULT_REGISTRATION_ANNOUNCEMENTS.to_string(),
            DEFAULT_BEACON_INTERVAL_MS.to_string(),
            DEFAULT_SWEEP_PERIOD_MS.to_string(),
            DEFAULT_MAX_DATAGRAM.to_string(),
            DEFAULT_LEASE_SECS.to_string(),
            DEFAULT_MIN_LEASE_SECS.to_string(),
            DEFAULT_MAX_LEASE_SECS.to_string(),
            DEFAULT_CAPACITY.to_string(),
        ] {
            assert!(
                help.contains(&format!("[default: {default}]")),
                "{default}\n{help}"
            );
        }
    }
}
