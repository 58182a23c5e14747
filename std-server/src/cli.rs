//! The command line of the `herald` binary (clap definitions only; the commands are in
//! [`commands`](crate::commands)).

use crate::client::ClientOptions;
use crate::config::{Options, DEFAULT_CAPACITY};
use crate::logging::LogFormat;
use crate::net::Interface;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default time the client commands wait for a directory, in seconds.
pub const DEFAULT_TIMEOUT_SECS: f64 = 3.0;
/// Default lease `herald register` asks for, in seconds.
pub const DEFAULT_LEASE_SECS: f64 = 15.0;

/// Herald: a service directory for small networks, announced over UDP multicast.
#[derive(Parser, Debug)]
#[command(
    name = "herald",
    version,
    propagate_version = true,
    after_help = "Exit status: 0 done; 1 failed (e.g. no directory answered, a request \
                  refused); 2 impossible configuration; 3 the data directory cannot be used \
                  (`serve`); 130 `register` interrupted (Ctrl-C, SIGTERM) before its registration \
                  was confirmed. Ctrl-C or SIGTERM stops `serve` and `watch`, and unregisters \
                  what `register` registered, with status 0."
)]
pub struct Cli {
    /// TOML config file; its keys are the `herald serve` flags with `_` for `-`
    /// (flags win over HERALD_* variables, variables over the file) [default: none]
    #[arg(long, global = true, env = "HERALD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format (logs go to standard error; set the level with RUST_LOG)
    #[arg(
        long,
        global = true,
        env = "HERALD_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a directory: take registrations, announce every change on the group
    Serve(Box<ServeArgs>),
    /// Register a service and keep it registered until Ctrl-C (then unregister it)
    Register(RegisterArgs),
    /// Unregister a service (registered from this host under the same name, or with
    /// the same --registrant)
    Unregister(UnregisterArgs),
    /// Print one line per service discovered, changed or unregistered, as it happens
    /// (the current registry first, then `ready: N services` once it is all in; `evicted`
    /// when the watch's table, 16384 services, was full and gave one up); with
    /// --subscribers, one per subscriber that came, changed or went
    Watch(WatchArgs),
    /// Print the directory's current registry and exit; with --subscribers, its
    /// unicast subscribers (all, or those --interested-in a name)
    List(ListArgs),
    /// Print a new key file (32 random bytes) for an authenticated environment, e.g.
    /// `(umask 077; herald keygen --id 1 > herald.key)`
    Keygen {
        /// The key's id (0 to 255): give the next key of a rotation another id
        #[arg(long, default_value_t = 1)]
        id: u8,
    },
    /// Print a shell completion script
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `herald serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The settings.
    #[command(flatten)]
    pub options: Options,
    /// Print the resolved settings as TOML (a valid config file) and exit
    #[arg(long)]
    pub print_config: bool,
}

/// Options of every client command.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Directory to use; repeat it (or separate with commas) to fail over in that order
    /// (a link-local IPv6 address with its scope id: [fe80::1%eth0]:37399)
    /// [default: the config file's advertise or bind address, else 127.0.0.1:37399]
    #[arg(
        long = "directory",
        short = 'd',
        env = "HERALD_DIRECTORY",
        value_delimiter = ',',
        value_name = "IP:PORT",
        value_parser = crate::interfaces::socket_addr
    )]
    pub directories: Vec<SocketAddr>,
    /// Environment [default: default]
    #[arg(long, env = "HERALD_ENVIRONMENT")]
    pub environment: Option<String>,
    /// Multicast group of the announcements, or `none`: directories are known only
    /// from --directory, and a watch subscribes to unicast deliveries
    /// [default: 237.37.37.1:37371]
    #[arg(long, env = "HERALD_GROUP", value_name = "IP:PORT|none")]
    pub group: Option<crate::delivery::Group>,
    /// Interface the group is joined on: its IPv4 address, or for an IPv6 group its
    /// index or name (see `ip link`) [default: 127.0.0.1]
    #[arg(long, env = "HERALD_INTERFACE", value_name = "IP|INDEX|NAME")]
    pub interface: Option<Interface>,
    /// Seconds to wait for a directory's answer [default: 3]
    #[arg(long, env = "HERALD_TIMEOUT", value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Key file of the environment, when its directory uses one (see `herald keygen`)
    /// [default: the config file's key_file, else none]
    #[arg(long, env = "HERALD_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Key file of a second key also accepted, during a key rotation [default: the
    /// config file's accept_key_file, else none]
    #[arg(long, env = "HERALD_ACCEPT_KEY_FILE", value_name = "FILE")]
    pub accept_key_file: Option<PathBuf>,
}

fn seconds(setting: &'static str, secs: f64) -> Result<Duration, crate::config::ConfigError> {
    Duration::try_from_secs_f64(secs).map_err(|_| crate::config::ConfigError::Invalid {
        setting,
        message: format!("{secs} is not a number of seconds"),
    })
}

impl ClientArgs {
    /// The client options, with what the flags leave unset taken from the config file.
    pub fn options(&self, file: &Options) -> Result<ClientOptions, crate::config::ConfigError> {
        let directories = if self.directories.is_empty() {
            vec![file.directory_address()]
        } else {
            self.directories.clone()
        };
        let defaults = ClientOptions::default();
        let group = self.group.or(file.group);
        let interface = self.interface.or(file.interface).unwrap_or_default();
        Ok(ClientOptions {
            directories,
            environment: self
                .environment
                .clone()
                .or_else(|| file.environment.clone())
                .unwrap_or(defaults.environment),
            group: group.and_then(|g| g.addr()).unwrap_or(defaults.group),
            multicast: group != Some(crate::delivery::Group::None),
            interface,
            timeout: seconds("timeout", self.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS))?,
            capacity: file.capacity.unwrap_or(DEFAULT_CAPACITY),
            keys: crate::keys::load_keys(
                self.key_file.as_deref().or(file.key_file.as_deref()),
                self.accept_key_file
                    .as_deref()
                    .or(file.accept_key_file.as_deref()),
            )?,
            ..defaults
        })
    }
}

fn parse_meta(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

/// `herald register`.
#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// Service name: 1 to 64 bytes of UTF-8, inner spaces allowed; `SERVICE/INSTANCE`
    /// registers one instance of SERVICE (e.g. billing/$(hostname))
    pub name: String,
    /// Where the service can be reached (1 to 4 addresses; a link-local IPv6 address
    /// with its scope id, [fe80::1%eth0]:80, which listeners see in their own zone)
    #[arg(required = true, value_name = "IP:PORT", value_parser = crate::interfaces::socket_addr)]
    pub locations: Vec<SocketAddr>,
    /// Metadata pair (repeatable; 96 bytes in all)
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub meta: Vec<(String, String)>,
    /// Lease to ask for, in seconds; the directory clamps it to its bounds and the
    /// registration is renewed at about a third of it [default: 15]
    #[arg(long, env = "HERALD_LEASE", value_name = "SECS")]
    pub lease: Option<f64>,
    /// Register once and exit; the lease then runs out unless renewed
    #[arg(long)]
    pub once: bool,
    /// Registrant id: only it may renew or remove the registration [default: a random
    /// secret for this service name kept in the state directory
    /// (~/.local/state/herald/registrants), so a restarted registrant on the same host
    /// takes its name back]
    #[arg(long, env = "HERALD_REGISTRANT", value_name = "ID")]
    pub registrant: Option<u64>,
    /// Connection options.
    #[command(flatten)]
    pub client: ClientArgs,
}

impl RegisterArgs {
    /// The lease asked for.
    pub fn lease(&self) -> Result<Duration, crate::config::ConfigError> {
        seconds("lease", self.lease.unwrap_or(DEFAULT_LEASE_SECS))
    }
}

/// `herald unregister`.
#[derive(Args, Debug)]
pub struct UnregisterArgs {
    /// Service name
    pub name: String,
    /// Registrant id that registered it [default: the secret kept for this service
    /// name, as `herald register` uses]
    #[arg(long, env = "HERALD_REGISTRANT", value_name = "ID")]
    pub registrant: Option<u64>,
    /// Connection options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `herald watch`.
#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Only these services: an exact name, or a prefix ending in `*` (up to 4)
    /// [default: every service]
    #[arg(long = "interest", value_name = "NAME|PREFIX*")]
    pub interests: Vec<String>,
    /// One JSON object per line:
    /// {"event":"discovered"|"changed"|"unregistered"|"evicted","name":…,"locations":[…],"meta":{…}},
    /// and {"event":"ready","services":N} once the current registry is all in
    #[arg(long)]
    pub json: bool,
    /// Subscribe to unicast deliveries at the directory: `always`, or `auto` (when no
    /// beacon is heard on the group, as on networks that drop multicast); `--subscribe`
    /// alone is `always`. With --group none a watch always subscribes [default: auto]
    #[arg(long, value_name = "WHEN", num_args = 0..=1, default_missing_value = "always")]
    pub subscribe: Option<SubscribeWhen>,
    /// Watch the directory's unicast subscribers instead, from its HTTP API (needs
    /// --http): the table first (`came` lines, then `ready: N subscribers`), then one
    /// line per subscriber that came, changed its interests or address, or went
    /// (`unsubscribed` or `expired` when known); with --json one object per line,
    /// {"event":"came"|"changed"|"went",…} as `herald list --subscribers --json` prints
    /// a subscriber, and {"event":"ready","subscribers":N}
    #[arg(long, requires = "http", conflicts_with_all = ["interests", "subscribe"])]
    pub subscribers: bool,
    /// The directory's HTTP API.
    #[command(flatten)]
    pub api: HttpArgs,
    /// Connection options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The value of `herald watch --subscribe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SubscribeWhen {
    /// From the start.
    Always,
    /// When no beacon is heard on the group for a directory timeout.
    Auto,
    /// Never: the group only.
    Never,
}

impl SubscribeWhen {
    /// The library's option for it.
    pub fn mode(self) -> crate::client::Subscribe {
        match self {
            SubscribeWhen::Always => crate::client::Subscribe::Always,
            SubscribeWhen::Auto => crate::client::Subscribe::WithoutBeacons,
            SubscribeWhen::Never => crate::client::Subscribe::Never,
        }
    }
}

/// Where the directory's HTTP API is, for `--subscribers`.
#[derive(Args, Debug, Clone)]
pub struct HttpArgs {
    /// The directory's HTTP API (its `serve --http`), for --subscribers
    #[arg(long, value_name = "IP:PORT", requires = "subscribers")]
    pub http: Option<SocketAddr>,
    /// File holding the HTTP API's bearer token, when reads need it
    #[arg(long, value_name = "FILE", requires = "http")]
    pub http_token_file: Option<PathBuf>,
}

/// `herald list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// A JSON array of {"name":…,"locations":[…],"meta":{…}}; with --subscribers, of
    /// {"id":…,"address":…,"interests":[…],"since_unix_ms":…,"acked":…,"lag":…}; with
    /// --interested-in, {"name":…,"count":N,"subscribers":[…]}
    #[arg(long)]
    pub json: bool,
    /// List the directory's unicast subscribers instead (id, address, interests,
    /// since, last acknowledged version, lag), read from its HTTP API: needs --http
    #[arg(long, requires = "http")]
    pub subscribers: bool,
    /// With --subscribers: only those interested in this service name (an exact name
    /// or a prefix they listen to covers it), after a line with their count
    #[arg(long, value_name = "NAME", requires = "subscribers")]
    pub interested_in: Option<String>,
    /// The directory's HTTP API.
    #[command(flatten)]
    pub api: HttpArgs,
    /// Connection options.
    #[command(flatten)]
    pub client: ClientArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn client_options_fall_back_to_the_config_file() {
        let cli = Cli::try_parse_from(["herald", "list", "--group", "239.1.2.3:4000"]).unwrap();
        let Command::List(args) = cli.command else {
            panic!("not list")
        };
        let file = Options {
            advertise: Some("127.0.0.5:4001".parse().unwrap()),
            bind: Some("0.0.0.0:4001".parse().unwrap()),
            environment: Some("lab".into()),
            group: Some("239.9.9.9:1".parse().unwrap()),
            ..Options::default()
        };
        let o = args.client.options(&file).unwrap();
        assert_eq!(o.directories, ["127.0.0.5:4001".parse().unwrap()]);
        assert_eq!(o.environment, "lab");
        assert_eq!(o.group, "239.1.2.3:4000".parse().unwrap());
        assert_eq!(o.timeout, Duration::from_secs(3));
    }

    #[test]
    fn meta_needs_an_equals_sign() {
        assert_eq!(parse_meta("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_meta("ab").is_err());
        let err = Cli::try_parse_from(["herald", "register", "x", "127.0.0.1:1", "--meta", "k"]);
        assert!(err.is_err());
    }
}
