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
pub const DEFAULT_REGISTRATION_ANNOUNCEMENTS: u8 = 1;
/// Default time between beacons, in milliseconds.
pub const DEFAULT_BEACON_INTERVAL_MS: u64 = 1_000;
/// Default time for one anti-entropy sweep of the whole registry, in milliseconds: a
/// slow safety net (listeners that miss an announcement ask for what they lack).
pub const DEFAULT_SWEEP_PERIOD_MS: u64 = 600_000;
/// Default largest datagram, in bytes.
pub const DEFAULT_MAX_DATAGRAM: usize = herald_core::wire::DEFAULT_MAX_DATAGRAM;
/// Default lease granted when a registrant asks for none, in seconds.
pub const DEFAULT_LEASE_SECS: u64 = 15;
/// Default grace after a restart before restored leases may expire, in seconds.
pub const DEFAULT_RESTORE_GRACE_SECS: u64 = 15;
/// Default shortest lease granted, in seconds.
pub const DEFAULT_MIN_LEASE_SECS: u64 = 1;
/// Default longest lease granted, in seconds.
pub const DEFAULT_MAX_LEASE_SECS: u64 = 300;
/// Default registry capacity (services, live and departed).
pub const DEFAULT_CAPACITY: usize = 16_384;
/// Default live registrations one address may hold.
pub const DEFAULT_REGISTRATIONS_PER_ADDRESS: u32 = 1024;
/// Default live registrations one /24 (IPv4) or /64 (IPv6) network may hold.
pub const DEFAULT_REGISTRATIONS_PER_NETWORK: u32 = 4096;
/// Default subscriptions one address may hold.
pub const DEFAULT_SUBSCRIPTIONS_PER_ADDRESS: u32 = 64;
/// Default subscriptions one /24 (IPv4) or /64 (IPv6) network may hold.
pub const DEFAULT_SUBSCRIPTIONS_PER_NETWORK: u32 = 512;
/// Default snapshot bytes per second for one source address.
pub const DEFAULT_SNAPSHOT_SOURCE_RATE: u32 = 1 << 20;
/// Default snapshot bytes per second for all sources together.
pub const DEFAULT_SNAPSHOT_RATE: u32 = 8 << 20;
/// Default environment.
pub const DEFAULT_ENVIRONMENT: &str = "default";
/// Default store: the embedded database in the data directory.
pub const DEFAULT_STORE: &str = "redb";
/// Default prefix of every key Herald keeps in etcd.
pub const DEFAULT_ETCD_PREFIX: &str = "/herald";
/// Default TTL of the publisher's etcd lease, in milliseconds.
pub const DEFAULT_PUBLISHER_LEASE_MS: u64 = 3_000;

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
    /// Address to take requests on; announcements also come from it (a link-local
    /// IPv6 address with its scope id: [fe80::1%eth0]:37399) [default: 127.0.0.1:37399]
    #[arg(long, env = "HERALD_BIND", value_name = "IP:PORT", value_parser = crate::interfaces::socket_addr)]
    #[serde(default, deserialize_with = "crate::interfaces::optional_socket_addr")]
    pub bind: Option<SocketAddr>,
    /// Address clients reach this directory at, announced on the group; required when
    /// binding a wildcard address [default: the bind address]
    #[arg(long, env = "HERALD_ADVERTISE", value_name = "IP:PORT", value_parser = crate::interfaces::socket_addr)]
    #[serde(default, deserialize_with = "crate::interfaces::optional_socket_addr")]
    pub advertise: Option<SocketAddr>,
    /// Multicast group and port for announcements: IPv4, or IPv6 such as
    /// `[ff15::3737]:37371` (site-local) or `[ff02::3737]:37371` (link-local, needs
    /// --interface); or `none`: nothing is sent to a multicast address, listeners
    /// subscribe by unicast [default: 237.37.37.1:37371]
    #[arg(long, env = "HERALD_GROUP", value_name = "IP:PORT|none")]
    pub group: Option<crate::delivery::Group>,
    /// How changes reach listeners: `multicast` (the group only), `unicast` (to
    /// subscribers only) or `both` [default: both; unicast with --group none]
    #[arg(long, env = "HERALD_DELIVERY", value_name = "MODE")]
    pub delivery: Option<crate::delivery::Delivery>,
    /// Subscriber table size: listeners held at once for unicast delivery
    /// [default: 1024]
    #[arg(long, env = "HERALD_SUBSCRIBERS", value_name = "N")]
    pub subscribers: Option<usize>,
    /// Interface for multicast: its IPv4 address, or for an IPv6 group its index or
    /// name (see `ip link`) [default: 127.0.0.1]
    #[arg(long, env = "HERALD_INTERFACE", value_name = "IP|INDEX|NAME")]
    pub interface: Option<Interface>,
    /// Multicast TTL (hop limit) [default: 1]
    #[arg(long, env = "HERALD_TTL")]
    pub ttl: Option<u32>,
    /// Environment served; requests from others are rejected [default: default]
    #[arg(long, env = "HERALD_ENVIRONMENT")]
    pub environment: Option<String>,
    /// Where the registry is stored with `--store redb` [default: $XDG_STATE_HOME/herald,
    /// else ~/.local/state/herald]
    #[arg(long, env = "HERALD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Registry store: `redb` (embedded, in --data-dir) or
    /// `etcd://HOST:PORT[,HOST:PORT…]` (shared by the directories of a cluster, which
    /// elect one publisher per group; needs a build with `--features etcd`)
    /// [default: redb]
    #[arg(long, env = "HERALD_STORE", value_name = "STORE")]
    pub store: Option<String>,
    /// Prefix of the keys kept in etcd: `PREFIX/ENVIRONMENT/services/NAME` and
    /// `PREFIX/ENVIRONMENT/publisher/GROUP` [default: /herald]
    #[arg(long, env = "HERALD_ETCD_PREFIX", value_name = "PREFIX")]
    pub etcd_prefix: Option<String>,
    /// TTL of the publisher's etcd lease: a publisher that dies is replaced this long
    /// after its last keep-alive (at least 1000, rounded up to whole seconds)
    /// [default: 3000]
    #[arg(long, env = "HERALD_PUBLISHER_LEASE_MS", value_name = "MS")]
    pub publisher_lease_ms: Option<u64>,
    /// Processing interval: paces repeated notifications, never a first announcement
    /// [default: 50]
    #[arg(long, env = "HERALD_INTERVAL_MS", value_name = "MS")]
    pub interval_ms: Option<u64>,
    /// How many times each removal is announced [default: 20]
    #[arg(long, env = "HERALD_NOTIFICATIONS", value_name = "N")]
    pub notifications: Option<u8>,
    /// How many times each new or changed registration is announced: at once, then one
    /// per processing interval (a listener that misses it repairs from the next
    /// announcement or beacon) [default: 1]
    #[arg(long, env = "HERALD_REGISTRATION_ANNOUNCEMENTS", value_name = "N")]
    pub registration_announcements: Option<u8>,
    /// Time between beacons ("directory available here", with the registry version)
    /// [default: 1000]
    #[arg(long, env = "HERALD_BEACON_INTERVAL_MS", value_name = "MS")]
    pub beacon_interval_ms: Option<u64>,
    /// Time for one anti-entropy sweep of the whole registry on the group, a safety net
    /// behind repair on demand [default: 600000]
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
    /// After a restart, no restored lease ends sooner than this (capped at the longest
    /// lease), so registrants renew before anything expires [default: 15]
    #[arg(long, env = "HERALD_RESTORE_GRACE_SECS", value_name = "SECS")]
    pub restore_grace_secs: Option<u64>,
    /// Registry capacity: services held at once, live or departed [default: 16384]
    #[arg(long, env = "HERALD_CAPACITY", value_name = "N")]
    pub capacity: Option<usize>,
    /// Live registrations one source address may hold; more are refused with
    /// `source_budget` [default: 1024]
    #[arg(long, env = "HERALD_REGISTRATIONS_PER_ADDRESS", value_name = "N")]
    pub registrations_per_address: Option<u32>,
    /// Live registrations one /24 (IPv4) or /64 (IPv6) network may hold [default: 4096]
    #[arg(long, env = "HERALD_REGISTRATIONS_PER_NETWORK", value_name = "N")]
    pub registrations_per_network: Option<u32>,
    /// Unicast subscriptions one source address may hold; more are refused with
    /// `source_budget` [default: 64]
    #[arg(long, env = "HERALD_SUBSCRIPTIONS_PER_ADDRESS", value_name = "N")]
    pub subscriptions_per_address: Option<u32>,
    /// Unicast subscriptions one /24 (IPv4) or /64 (IPv6) network may hold
    /// [default: 512]
    #[arg(long, env = "HERALD_SUBSCRIPTIONS_PER_NETWORK", value_name = "N")]
    pub subscriptions_per_network: Option<u32>,
    /// Snapshot bytes per second one verified source address may receive
    /// [default: 1048576]
    #[arg(long, env = "HERALD_SNAPSHOT_SOURCE_RATE", value_name = "BYTES")]
    pub snapshot_source_rate: Option<u32>,
    /// Snapshot bytes per second all sources together may receive [default: 8388608]
    #[arg(long, env = "HERALD_SNAPSHOT_RATE", value_name = "BYTES")]
    pub snapshot_rate: Option<u32>,
    /// Serve Prometheus metrics at http://ADDR/metrics [default: off]
    #[arg(long, env = "HERALD_METRICS", value_name = "IP:PORT")]
    pub metrics: Option<SocketAddr>,
    /// Serve the HTTP/JSON API, the Server-Sent Events watch and the live page at
    /// http://ADDR/ (also /healthz and /metrics) [default: off; e.g. 127.0.0.1:37380]
    #[arg(long, env = "HERALD_HTTP", value_name = "IP:PORT")]
    pub http: Option<SocketAddr>,
    /// File holding the bearer token HTTP writes (PUT, DELETE) need; required for HTTP
    /// writes in an authenticated environment [default: none, writes are open]
    #[arg(long, env = "HERALD_HTTP_TOKEN_FILE", value_name = "FILE")]
    pub http_token_file: Option<PathBuf>,
    /// HTTP reads need the bearer token too (except /healthz) [default: false]
    #[arg(long, env = "HERALD_HTTP_TOKEN_READS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub http_token_reads: Option<bool>,
    /// Answer DNS queries (UDP and TCP) for the registry at ADDR [default: off; e.g.
    /// 127.0.0.1:8600]
    #[arg(long, env = "HERALD_DNS", value_name = "IP:PORT")]
    pub dns: Option<SocketAddr>,
    /// The DNS domain the registry is served under [default: herald.]
    #[arg(long, env = "HERALD_DNS_DOMAIN", value_name = "DOMAIN")]
    pub dns_domain: Option<String>,
    /// TTL of DNS answers, in seconds (0 to 3600) [default: 0]
    #[arg(long, env = "HERALD_DNS_TTL", value_name = "SECS")]
    pub dns_ttl: Option<u32>,
    /// Bytes per second one source address may receive in DNS answers over UDP larger
    /// than 3x their query; past it such answers come truncated, and the resolver asks
    /// again over TCP [default: 32768]
    #[arg(long, env = "HERALD_DNS_SOURCE_RATE", value_name = "BYTES")]
    pub dns_source_rate: Option<u32>,
    /// The same for all sources together [default: 262144]
    #[arg(long, env = "HERALD_DNS_RATE", value_name = "BYTES")]
    pub dns_rate: Option<u32>,
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
    /// Data directory (of the redb store).
    pub data_dir: PathBuf,
    /// Where the registry is kept.
    pub store: StoreSettings,
    /// Registry capacity.
    pub capacity: usize,
    /// Delivery mode and subscriber table size.
    pub delivery: crate::delivery::DeliverySettings,
    /// Metrics endpoint.
    pub metrics: Option<SocketAddr>,
    /// The HTTP API and page.
    pub http: Option<crate::http::HttpSettings>,
    /// The DNS interface.
    pub dns: Option<crate::dns::DnsSettings>,
    /// The core's settings (the address and version floor are set at start-up).
    pub directory: DirectoryConfig,
}

/// Where `herald serve` keeps its registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSettings {
    /// The embedded redb database in the data directory (one directory alone).
    Redb,
    /// An etcd cluster shared by several directories.
    Etcd(EtcdSettings),
}

/// How to reach etcd and where in it the registry lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdSettings {
    /// Client endpoints, `HOST:PORT` each, in the order given.
    pub endpoints: Vec<String>,
    /// Key prefix, without a trailing `/`.
    pub prefix: String,
    /// TTL of the publisher's lease, in whole seconds (at least 1).
    pub publisher_lease_secs: u64,
}

impl EtcdSettings {
    /// The store as it was given: `etcd://HOST:PORT,…`.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoints.join(","))
    }
}

impl std::fmt::Display for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreSettings::Redb => f.write_str(DEFAULT_STORE),
            StoreSettings::Etcd(etcd) => f.write_str(&etcd.url()),
        }
    }
}

const STORE_FORMS: &str = "expected `redb` or `etcd://HOST:PORT[,HOST:PORT…]`";

/// Checks one `HOST:PORT` of an etcd URL.
fn etcd_endpoint(endpoint: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("endpoint {endpoint:?} {why} ({STORE_FORMS})"));
    if endpoint.is_empty() {
        return bad("is empty");
    }
    if endpoint.contains('/') {
        return bad(
            "has a path: only HOST:PORT is allowed (set the key prefix with --etcd-prefix)",
        );
    }
    if endpoint.contains('@') || endpoint.contains('?') || endpoint.contains('#') {
        return bad("is not HOST:PORT");
    }
    let (host, port) = match endpoint.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port),
        _ => return bad("has no port"),
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return bad(&format!("has an invalid port {port:?}")),
    }
    if let Some(inner) = host.strip_prefix('[') {
        let ok = inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
        if !ok {
            return bad("has an invalid IPv6 address (write it as [ADDR]:PORT)");
        }
    } else if host.is_empty() {
        return bad("has no host");
    } else if host.contains(':') {
        return bad("has an IPv6 address without brackets (write it as [ADDR]:PORT)");
    } else if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        return bad("has an invalid host name");
    }
    Ok(endpoint.to_owned())
}

impl StoreSettings {
    /// Parses `--store` and checks the etcd settings that go with it. A binary built
    /// without the `etcd` feature refuses an etcd store.
    pub fn resolve(store: &str, prefix: &str, lease_ms: u64) -> Result<Self, ConfigError> {
        let store = store.trim();
        if store == DEFAULT_STORE {
            return Ok(StoreSettings::Redb);
        }
        let Some(rest) = store.strip_prefix("etcd://") else {
            return Err(invalid("store", format!("{store:?}: {STORE_FORMS}")));
        };
        let endpoints = rest
            .split(',')
            .map(|e| etcd_endpoint(e.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("store", format!("{store:?}: {e}")))?;
        let trimmed = prefix.trim_end_matches('/');
        if !trimmed.starts_with('/')
            || trimmed.len() < 2
            || trimmed.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(invalid(
                "etcd-prefix",
                format!(
                    "{prefix:?}: expected a key prefix such as /herald (a `/` and at least one \
                     more character, no spaces or control characters)"
                ),
            ));
        }
        if lease_ms < 1_000 {
            return Err(invalid(
                "publisher-lease-ms",
                format!("{lease_ms}: etcd leases last whole seconds, at least 1000 ms"),
            ));
        }
        let settings = EtcdSettings {
            endpoints,
            prefix: trimmed.to_owned(),
            publisher_lease_secs: lease_ms.div_ceil(1_000),
        };
        if cfg!(not(feature = "etcd")) {
            return Err(invalid(
                "store",
                format!(
                    "{store:?}: this herald was built without etcd support; rebuild it with \
                     `--features etcd` (e.g. `cargo install --path std-server --features \
                     etcd`), which needs protoc"
                ),
            ));
        }
        Ok(StoreSettings::Etcd(settings))
    }
}

impl Options {
    /// Each setting from `self`, else from `fallback`.
    pub fn or(self, fallback: Options) -> Options {
        Options {
            bind: self.bind.or(fallback.bind),
            advertise: self.advertise.or(fallback.advertise),
            group: self.group.or(fallback.group),
            delivery: self.delivery.or(fallback.delivery),
            subscribers: self.subscribers.or(fallback.subscribers),
            interface: self.interface.or(fallback.interface),
            ttl: self.ttl.or(fallback.ttl),
            environment: self.environment.or(fallback.environment),
            data_dir: self.data_dir.or(fallback.data_dir),
            store: self.store.or(fallback.store),
            etcd_prefix: self.etcd_prefix.or(fallback.etcd_prefix),
            publisher_lease_ms: self.publisher_lease_ms.or(fallback.publisher_lease_ms),
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
            restore_grace_secs: self.restore_grace_secs.or(fallback.restore_grace_secs),
            capacity: self.capacity.or(fallback.capacity),
            registrations_per_address: self
                .registrations_per_address
                .or(fallback.registrations_per_address),
            registrations_per_network: self
                .registrations_per_network
                .or(fallback.registrations_per_network),
            subscriptions_per_address: self
                .subscriptions_per_address
                .or(fallback.subscriptions_per_address),
            subscriptions_per_network: self
                .subscriptions_per_network
                .or(fallback.subscriptions_per_network),
            snapshot_source_rate: self.snapshot_source_rate.or(fallback.snapshot_source_rate),
            snapshot_rate: self.snapshot_rate.or(fallback.snapshot_rate),
            metrics: self.metrics.or(fallback.metrics),
            http: self.http.or(fallback.http),
            http_token_file: self.http_token_file.or(fallback.http_token_file),
            http_token_reads: self.http_token_reads.or(fallback.http_token_reads),
            dns: self.dns.or(fallback.dns),
            dns_domain: self.dns_domain.or(fallback.dns_domain),
            dns_ttl: self.dns_ttl.or(fallback.dns_ttl),
            dns_source_rate: self.dns_source_rate.or(fallback.dns_source_rate),
            dns_rate: self.dns_rate.or(fallback.dns_rate),
            key_file: self.key_file.or(fallback.key_file),
            accept_key_file: self.accept_key_file.or(fallback.accept_key_file),
        }
    }

    /// Every unset setting at its default (`metrics`, `http`, `dns`, `advertise` and the
    /// key files stay off).
    pub fn with_defaults(self) -> Options {
        self.or(Options {
            bind: Some(DEFAULT_BIND),
            advertise: None,
            group: Some(DEFAULT_GROUP_ADDR.into()),
            delivery: None,
            subscribers: Some(crate::delivery::DEFAULT_SUBSCRIBERS),
            interface: Some(Interface::default()),
            ttl: Some(DEFAULT_TTL),
            environment: Some(DEFAULT_ENVIRONMENT.to_owned()),
            data_dir: Some(default_data_dir()),
            store: Some(DEFAULT_STORE.to_owned()),
            etcd_prefix: Some(DEFAULT_ETCD_PREFIX.to_owned()),
            publisher_lease_ms: Some(DEFAULT_PUBLISHER_LEASE_MS),
            interval_ms: Some(DEFAULT_INTERVAL_MS),
            notifications: Some(DEFAULT_NOTIFICATIONS),
            registration_announcements: Some(DEFAULT_REGISTRATION_ANNOUNCEMENTS),
            beacon_interval_ms: Some(DEFAULT_BEACON_INTERVAL_MS),
            sweep_period_ms: Some(DEFAULT_SWEEP_PERIOD_MS),
            max_datagram: Some(DEFAULT_MAX_DATAGRAM),
            default_lease_secs: Some(DEFAULT_LEASE_SECS),
            min_lease_secs: Some(DEFAULT_MIN_LEASE_SECS),
            max_lease_secs: Some(DEFAULT_MAX_LEASE_SECS),
            restore_grace_secs: Some(DEFAULT_RESTORE_GRACE_SECS),
            capacity: Some(DEFAULT_CAPACITY),
            registrations_per_address: Some(DEFAULT_REGISTRATIONS_PER_ADDRESS),
            registrations_per_network: Some(DEFAULT_REGISTRATIONS_PER_NETWORK),
            subscriptions_per_address: Some(DEFAULT_SUBSCRIPTIONS_PER_ADDRESS),
            subscriptions_per_network: Some(DEFAULT_SUBSCRIPTIONS_PER_NETWORK),
            snapshot_source_rate: Some(DEFAULT_SNAPSHOT_SOURCE_RATE),
            snapshot_rate: Some(DEFAULT_SNAPSHOT_RATE),
            metrics: None,
            http: None,
            http_token_file: None,
            http_token_reads: Some(false),
            dns: None,
            dns_domain: Some(crate::dns::DEFAULT_DOMAIN.to_owned()),
            dns_ttl: Some(0),
            dns_source_rate: Some(crate::dns::DEFAULT_SOURCE_RATE),
            dns_rate: Some(crate::dns::DEFAULT_RATE),
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
        let delivery = crate::delivery::resolve(o.group, o.delivery, o.subscribers)?;
        let group = delivery.group;
        if bind.ip().is_unspecified() && o.advertise.is_none() {
            return Err(invalid(
                "advertise",
                format!(
                    "the directory binds {bind}, which nobody can reach: set --advertise \
                     to the address clients should use"
                ),
            ));
        }
        if bind.is_ipv4() != group.is_ipv4() {
            return Err(invalid(
                "group",
                format!(
                    "the group {group} and the bind address {bind} are of different IP \
                     families: announcements go out of the request socket, so both must be \
                     IPv4 or both IPv6"
                ),
            ));
        }
        if let Some(advertise) = o.advertise.filter(|a| a.is_ipv4() != bind.is_ipv4()) {
            return Err(invalid(
                "advertise",
                format!(
                    "{advertise} and the bind address {bind} are of different IP families: \
                     clients take only what comes from the advertised address, and \
                     everything comes from the bind address"
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
        directory.multicast = delivery.multicast;
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
        directory.restore_grace = secs(o.restore_grace_secs);
        let admission = &mut directory.admission;
        admission.registrations_per_address = o
            .registrations_per_address
            .unwrap_or(DEFAULT_REGISTRATIONS_PER_ADDRESS);
        admission.registrations_per_network = o
            .registrations_per_network
            .unwrap_or(DEFAULT_REGISTRATIONS_PER_NETWORK);
        admission.subscriptions_per_address = o
            .subscriptions_per_address
            .unwrap_or(DEFAULT_SUBSCRIPTIONS_PER_ADDRESS);
        admission.subscriptions_per_network = o
            .subscriptions_per_network
            .unwrap_or(DEFAULT_SUBSCRIPTIONS_PER_NETWORK);
        admission.snapshot_source_rate = o
            .snapshot_source_rate
            .unwrap_or(DEFAULT_SNAPSHOT_SOURCE_RATE);
        admission.snapshot_rate = o.snapshot_rate.unwrap_or(DEFAULT_SNAPSHOT_RATE);
        directory.keys =
            crate::keys::load_keys(o.key_file.as_deref(), o.accept_key_file.as_deref())?;
        directory.validate().map_err(|e| invalid("directory", e))?;
        let capacity = o.capacity.unwrap_or(DEFAULT_CAPACITY);
        if capacity == 0 || u32::try_from(capacity).is_err() {
            return Err(invalid("capacity", "must be 1 to 4294967295"));
        }
        check_memory(capacity, available_memory())?;
        let ttl = o.ttl.unwrap_or(DEFAULT_TTL);
        if ttl > 255 {
            return Err(invalid(
                "ttl",
                format!("{ttl} is not a multicast TTL (hop limit): use 0 to 255"),
            ));
        }
        let interface = o.interface.unwrap_or_default();
        crate::net::check_multicast(group, interface).map_err(|e| invalid("interface", e))?;
        let store = StoreSettings::resolve(
            o.store.as_deref().unwrap_or(DEFAULT_STORE),
            o.etcd_prefix.as_deref().unwrap_or(DEFAULT_ETCD_PREFIX),
            o.publisher_lease_ms.unwrap_or(DEFAULT_PUBLISHER_LEASE_MS),
        )?;
        let http = http_settings(&o)?;
        let dns = dns_settings(&o)?;
        Ok(ServeSettings {
            bind,
            advertise: o.advertise,
            interface,
            ttl,
            data_dir: o.data_dir.unwrap_or_else(default_data_dir),
            store,
            capacity,
            delivery,
            metrics: o.metrics,
            http,
            dns,
            directory,
        })
    }

    /// The directory a client on the same host should use: the advertised address,
    /// else the bind address, else the default.
    pub fn directory_address(&self) -> SocketAddr {
        self.advertise.or(self.bind).unwrap_or(DEFAULT_BIND)
    }
}

/// The HTTP listener's settings, with the token read from its file.
fn http_settings(o: &Options) -> Result<Option<crate::http::HttpSettings>, ConfigError> {
    let Some(addr) = o.http else {
        if o.http_token_file.is_some() {
            return Err(invalid("http-token-file", "set --http too"));
        }
        return Ok(None);
    };
    let token = match &o.http_token_file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    "http-token-file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let token = text.trim().to_owned();
            if token.len() < 16 || !token.chars().all(|c| c.is_ascii_graphic()) {
                return Err(invalid(
                    "http-token-file",
                    format!(
                        "{} must hold one token of at least 16 printable ASCII characters",
                        path.display()
                    ),
                ));
            }
            Some(token)
        }
    };
    let token_reads = o.http_token_reads.unwrap_or(false);
    if token_reads && token.is_none() {
        return Err(invalid("http-token-reads", "needs --http-token-file"));
    }
    Ok(Some(crate::http::HttpSettings {
        addr,
        token,
        token_reads,
    }))
}

/// The DNS interface's settings, the domain checked.
fn dns_settings(o: &Options) -> Result<Option<crate::dns::DnsSettings>, ConfigError> {
    let Some(addr) = o.dns else {
        return Ok(None);
    };
    let domain = o
        .dns_domain
        .as_deref()
        .unwrap_or(crate::dns::DEFAULT_DOMAIN);
    let domain = crate::dns::parse_domain(domain).map_err(|e| invalid("dns-domain", e))?;
    let ttl = o.dns_ttl.unwrap_or(0);
    if ttl > 3600 {
        return Err(invalid(
            "dns-ttl",
            format!("{ttl} s is too long for live data: use 0 to 3600"),
        ));
    }
    let rate = |value: Option<u32>, default, name| match value.unwrap_or(default) {
        0 => Err(invalid(
            name,
            "0 bytes per second would truncate every larger answer: give at least 1".to_owned(),
        )),
        rate => Ok(rate),
    };
    Ok(Some(crate::dns::DnsSettings {
        addr,
        domain,
        ttl,
        source_rate: rate(
            o.dns_source_rate,
            crate::dns::DEFAULT_SOURCE_RATE,
            "dns-source-rate",
        )?,
        rate: rate(o.dns_rate, crate::dns::DEFAULT_RATE, "dns-rate")?,
    }))
}

/// Bytes of memory the registry takes per unit of `--capacity` (a slot and its index).
pub const BYTES_PER_SERVICE: usize =
    std::mem::size_of::<herald_core::Slot>() + std::mem::size_of::<u32>();

/// Memory this machine has available (`MemAvailable` in `/proc/meminfo`), if known.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// Refuses a capacity whose registry would not fit in `available` bytes of memory
/// (allocating it would abort the process).
fn check_memory(capacity: usize, available: Option<u64>) -> Result<(), ConfigError> {
    let needed = (capacity as u64).saturating_mul(BYTES_PER_SERVICE as u64);
    match available {
        Some(available) if needed > available => {
            let gb = |b: u64| b as f64 / 1e9;
            Err(invalid(
                "capacity",
                format!(
                    "{capacity} services need {:.1} GB of memory ({BYTES_PER_SERVICE} bytes \
                     each), more than the {:.1} GB available: lower --capacity",
                    gb(needed),
                    gb(available)
                ),
            ))
        }
        _ => Ok(()),
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

    /// What `--help` says a setting defaults to is the default used: each `[default:
    /// …]` shown for a setting the defaults fill equals that default.
    #[test]
    fn every_default_the_help_shows_is_the_default_used() {
        use clap::CommandFactory;
        let defaults = toml::Value::try_from(Options::default().with_defaults()).unwrap();
        let mut checked = 0;
        for arg in Cli::command().get_arguments() {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let Some((_, shown)) = help.split_once("[default: ") else {
                continue;
            };
            let shown = shown.split(']').next().unwrap_or_default();
            if shown.contains(' ') {
                // Described in words (it depends on the machine, say).
                continue;
            }
            let value = match defaults.get(arg.get_id().as_str()) {
                Some(toml::Value::String(s)) => s.clone(),
                Some(toml::Value::Integer(i)) => i.to_string(),
                Some(toml::Value::Boolean(b)) => b.to_string(),
                // Not filled by the defaults (off unless set, or derived): the help
                // describes it in words.
                _ => continue,
            };
            assert_eq!(shown, value, "--{}: the help's default", arg.get_id());
            checked += 1;
        }
        assert!(checked >= 20, "only {checked} defaults checked");
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
    fn budgets_come_from_flags_and_file_keys() {
        let file: Options = toml::from_str(
            "registrations_per_network = 300
snapshot_rate = 5000
subscriptions_per_network = 90
",
        )
        .unwrap();
        let flags = Cli::try_parse_from([
            "x",
            "--registrations-per-address",
            "20",
            "--subscriptions-per-address",
            "3",
        ])
        .unwrap()
        .options;
        let s = flags.or(file).serve_settings().unwrap();
        let admission = &s.directory.admission;
        assert_eq!(admission.registrations_per_address, 20);
        assert_eq!(admission.registrations_per_network, 300);
        assert_eq!(admission.snapshot_rate, 5000);
        assert_eq!(admission.snapshot_source_rate, DEFAULT_SNAPSHOT_SOURCE_RATE);
        assert_eq!(admission.subscriptions_per_address, 3);
        assert_eq!(admission.subscriptions_per_network, 90);
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
            Options {
                group: Some("[ff15::3737]:37371".parse().unwrap()),
                interface: Some(Interface::Index(0)),
                ..Options::default()
            },
            Options {
                bind: Some("0.0.0.0:37399".parse().unwrap()),
                advertise: Some("[2001:db8::1]:37399".parse().unwrap()),
                ..Options::default()
            },
            Options {
                registrations_per_address: Some(0),
                ..Options::default()
            },
            Options {
                snapshot_rate: Some(0),
                ..Options::default()
            },
            Options {
                dns: Some("127.0.0.1:8600".parse().unwrap()),
                dns_source_rate: Some(0),
                ..Options::default()
            },
            Options {
                dns: Some("127.0.0.1:8600".parse().unwrap()),
                dns_rate: Some(0),
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
            DEFAULT_REGISTRATIONS_PER_ADDRESS.to_string(),
            DEFAULT_REGISTRATIONS_PER_NETWORK.to_string(),
            DEFAULT_SUBSCRIPTIONS_PER_ADDRESS.to_string(),
            DEFAULT_SUBSCRIPTIONS_PER_NETWORK.to_string(),
            DEFAULT_SNAPSHOT_SOURCE_RATE.to_string(),
            DEFAULT_SNAPSHOT_RATE.to_string(),
            DEFAULT_STORE.to_string(),
            DEFAULT_ETCD_PREFIX.to_string(),
            DEFAULT_PUBLISHER_LEASE_MS.to_string(),
        ] {
            assert!(
                help.contains(&format!("[default: {default}]")),
                "{default}\n{help}"
            );
        }
    }

    #[test]
    fn store_forms() {
        let redb = StoreSettings::resolve("redb", "/herald", 3000).unwrap();
        assert_eq!(redb, StoreSettings::Redb);
        assert_eq!(redb.to_string(), "redb");
        let etcd = StoreSettings::resolve(
            "etcd://127.0.0.1:2379,etcd-2.example:2379,[::1]:2380",
            "/herald/",
            2001,
        );
        if cfg!(feature = "etcd") {
            let StoreSettings::Etcd(etcd) = etcd.unwrap() else {
                panic!("not etcd")
            };
            assert_eq!(
                etcd.endpoints,
                ["127.0.0.1:2379", "etcd-2.example:2379", "[::1]:2380"]
            );
            assert_eq!(etcd.prefix, "/herald");
            assert_eq!(etcd.publisher_lease_secs, 3);
            assert_eq!(
                etcd.url(),
                "etcd://127.0.0.1:2379,etcd-2.example:2379,[::1]:2380"
            );
        } else {
            let err = etcd.unwrap_err().to_string();
            assert!(err.contains("--features etcd"), "{err}");
        }
    }

    #[test]
    fn bad_stores_are_refused_with_a_reason() {
        for (store, prefix, lease, needle) in [
            ("etcd", "/herald", 3000, "expected `redb` or `etcd://"),
            ("redis://127.0.0.1:1", "/herald", 3000, "expected `redb`"),
            ("etcd://", "/herald", 3000, "is empty"),
            ("etcd://127.0.0.1", "/herald", 3000, "has no port"),
            ("etcd://127.0.0.1:0", "/herald", 3000, "invalid port"),
            ("etcd://127.0.0.1:99999", "/herald", 3000, "invalid port"),
            ("etcd://127.0.0.1:2379/x", "/herald", 3000, "--etcd-prefix"),
            ("etcd://a:1,,b:2", "/herald", 3000, "is empty"),
            ("etcd://::1:2379", "/herald", 3000, "without brackets"),
            ("etcd://[zz]:2379", "/herald", 3000, "invalid IPv6"),
            ("etcd://u@h:1", "/herald", 3000, "not HOST:PORT"),
            ("etcd://h%:1", "/herald", 3000, "invalid host name"),
            ("etcd://h:1", "herald", 3000, "etcd-prefix"),
            ("etcd://h:1", "/", 3000, "etcd-prefix"),
            ("etcd://h:1", "/a b", 3000, "etcd-prefix"),
            ("etcd://h:1", "/herald", 999, "at least 1000"),
        ] {
            let err = StoreSettings::resolve(store, prefix, lease)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{store} {prefix} {lease}: {err}");
        }
    }

    #[test]
    fn store_settings_come_from_every_source() {
        let file: Options =
            toml::from_str("store = \"etcd://127.0.0.1:1\"\npublisher_lease_ms = 1500\n").unwrap();
        let flags = Cli::try_parse_from(["x", "--etcd-prefix", "/cluster-a"])
            .unwrap()
            .options;
        let o = flags.or(file).with_defaults();
        assert_eq!(o.store.as_deref(), Some("etcd://127.0.0.1:1"));
        assert_eq!(o.etcd_prefix.as_deref(), Some("/cluster-a"));
        assert_eq!(o.publisher_lease_ms, Some(1500));
        let redb = Options::default().serve_settings().unwrap();
        assert_eq!(redb.store, StoreSettings::Redb);
    }
}
