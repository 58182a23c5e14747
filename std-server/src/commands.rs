//! What each `herald` subcommand does, and how its results are printed.

use crate::cli::{
    Cli, ClientArgs, Command, HttpArgs, ListArgs, RegisterArgs, UnregisterArgs, WatchArgs,
};
use crate::client::api::{DirectoryApi, SubscriberUpdate};
use crate::client::{registration, ClientOptions, Herald, ServiceInfo, Watch, WatchUpdate};
use crate::config::{self, ConfigError, Options};
use crate::display::visible;
use crate::serve::{self, ServeError};
use clap::CommandFactory;
use herald_core::Interest;
use std::io::Write;
use std::net::SocketAddr;

/// Why a command failed (printed as `herald: …`; see [`Failure::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The directory failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// A client call failed.
    #[error(transparent)]
    Client(#[from] crate::client::Error),
    /// A call to a directory's HTTP API failed.
    #[error(transparent)]
    Api(#[from] crate::client::api::ApiError),
    /// Printing failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// SIGINT or SIGTERM arrived before the command had finished.
    #[error("interrupted before {0}")]
    Interrupted(&'static str),
}

impl Failure {
    /// The exit status: 2 for a configuration error, 3 for a data directory that cannot
    /// be used (corrupt, unreadable, not writable, full, or in use by another process),
    /// 130 when interrupted, 1 otherwise. Restarting does not help with 2 or 3 (the
    /// systemd unit does not).
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Config(_) => 2,
            Failure::Serve(ServeError::Storage(_)) => 3,
            Failure::Interrupted(_) => 130,
            _ => 1,
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled: a signal that arrives in between (while
/// a registration is being made, a directory is starting) is kept, not fatal.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let signals = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => Some((term, int)),
        _ => {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            None
        }
    };
    async move {
        let Some((mut term, mut int)) = signals else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
    }
}

/// Runs the command `cli` asks for.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    let file = config::read_file(cli.config.as_deref())?;
    match cli.command {
        Command::Serve(args) => {
            let options = args.options.or(file);
            if args.print_config {
                let text = toml::to_string(&options.with_defaults())
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                print!("{text}");
                return Ok(());
            }
            serve::run(options.serve_settings()?, shutdown_signal()).await?;
            Ok(())
        }
        Command::Register(args) => register(args, &file).await,
        Command::Unregister(args) => unregister(args, &file).await,
        Command::Watch(args) => watch(args, &file).await,
        Command::List(args) => list(args, &file).await,
        Command::Keygen { id } => {
            print!("{}", crate::keys::generate(id)?);
            Ok(())
        }
        Command::Completions { shell } => {
            let mut stdout = std::io::stdout();
            clap_complete::generate(shell, &mut Cli::command(), "herald", &mut stdout);
            Ok(())
        }
    }
}

/// Client options with the registrant `herald register` uses for `name`.
fn registrant_options(
    client: &ClientArgs,
    file: &Options,
    name: &str,
    registrant: Option<u64>,
) -> Result<ClientOptions, Failure> {
    let mut options = client.options(file)?;
    let registrant = match registrant {
        Some(id) => id,
        None => {
            let refused = |message: String| ConfigError::Invalid {
                setting: "registrant",
                message,
            };
            let dir = crate::registrant::default_dir().ok_or_else(|| {
                refused(
                    "no state directory to keep this service's registrant secret in (set \
                     XDG_STATE_HOME or HOME), or give --registrant ID"
                        .to_owned(),
                )
            })?;
            crate::registrant::kept(&dir, name).map_err(|e| {
                refused(format!(
                    "cannot keep this service's registrant secret in {}: {e}; fix that, or \
                     give --registrant ID",
                    dir.display()
                ))
            })?
        }
    };
    options.registrant = Some(registrant);
    Ok(options)
}

/// How long an interrupted `herald register` tries to take back a registration that
/// may have been accepted before it stops.
const INTERRUPTED_UNREGISTER: std::time::Duration = std::time::Duration::from_secs(3);

async fn register(args: RegisterArgs, file: &Options) -> Result<(), Failure> {
    // From here on Ctrl-C unregisters (or abandons the registration) instead of killing
    // the process with the service left registered.
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut options = registrant_options(&args.client, file, &args.name, args.registrant)?;
    options.lease = args.lease()?;
    let registration = registration(&args.name, &args.locations, &args.meta)?;
    let herald = Herald::connect(options).await?;
    let name = registration.name.to_string();
    let handle = tokio::select! {
        handle = herald.register(registration) => handle?,
        () = &mut stop => {
            // The directory may have accepted it already: take it back, briefly.
            let _ = tokio::time::timeout(INTERRUPTED_UNREGISTER, herald.unregister(&name)).await;
            return Err(Failure::Interrupted("the registration was confirmed"));
        }
    };
    let grant = handle.grant();
    println!(
        "registered {} with {} (lease {:.1}s)",
        grant.name,
        grant.directory,
        grant.lease.as_secs_f64()
    );
    if args.once {
        handle.detach();
        return Ok(());
    }
    stop.await;
    handle.unregister().await?;
    println!("unregistered {name}");
    Ok(())
}

async fn unregister(args: UnregisterArgs, file: &Options) -> Result<(), Failure> {
    let options = registrant_options(&args.client, file, &args.name, args.registrant)?;
    let herald = Herald::connect(options).await?;
    herald.unregister(&args.name).await?;
    println!("unregistered {}", args.name);
    Ok(())
}

/// `name 1.2.3.4:80,5.6.7.8:80 key=value …`, hidden characters escaped
/// ([`visible`]).
fn text_line(s: &ServiceInfo) -> String {
    let locations: Vec<String> = s.locations.iter().map(|l| l.to_string()).collect();
    let mut line = format!("{} {}", visible(&s.name), locations.join(","));
    for (k, v) in &s.meta {
        line.push_str(&format!(" {}={}", visible(k), visible(v)));
    }
    line
}

/// One line of `herald watch`: `discovered name 1.2.3.4:80 key=value`, or `ready: 3
/// services` once the first snapshot is in; each a JSON object with `--json`.
fn update_line(update: &WatchUpdate, json: bool) -> Result<String, Failure> {
    if json {
        return serde_json::to_string(update).map_err(|e| std::io::Error::other(e).into());
    }
    Ok(match update {
        WatchUpdate::Ready { services: 1 } => "ready: 1 service".to_owned(),
        WatchUpdate::Ready { services } => format!("ready: {services} services"),
        WatchUpdate::Event(event) => {
            format!("{} {}", event.kind.as_str(), text_line(&event.service))
        }
    })
}

async fn watch(args: WatchArgs, file: &Options) -> Result<(), Failure> {
    if let (true, Some(http)) = (args.subscribers, args.api.http) {
        return watch_subscribers(&args, http, file).await;
    }
    let mut options = args.client.options(file)?;
    options.subscribe = args
        .subscribe
        .unwrap_or(crate::cli::SubscribeWhen::Auto)
        .mode();
    // A configuration error (status 2) rather than the library's refusal (status 1).
    if options.multicast {
        crate::net::check_multicast(options.group, options.interface).map_err(|message| {
            ConfigError::Invalid {
                setting: "interface",
                message,
            }
        })?;
    }
    let interest = Interest::parse_all(args.interests.iter().map(String::as_str))
        .map_err(crate::client::Error::InvalidInterest)?;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut watch = Watch::start(options, interest).await?;
    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            () = &mut stop => {
                watch.close().await;
                return Ok(());
            }
            update = watch.next_update() => {
                let Some(update) = update else { return Ok(()) };
                writeln!(stdout, "{}", update_line(&update, args.json)?)?;
                stdout.flush()?;
            }
        }
    }
}

/// The HTTP API at `http`, with the token of `--http-token-file` if given and the
/// client timeout.
fn directory_api(
    api: &HttpArgs,
    http: SocketAddr,
    client: &ClientArgs,
    file: &Options,
) -> Result<DirectoryApi, Failure> {
    let timeout = client.options(file)?.timeout;
    let token = match &api.http_token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| ConfigError::Invalid {
                    setting: "http-token-file",
                    message: format!("{}: {e}", path.display()),
                })?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    Ok(DirectoryApi::new(http)
        .with_token(token)
        .with_timeout(timeout))
}

/// `herald list --subscribers [--interested-in NAME]`: from the directory's HTTP API.
async fn list_subscribers(
    args: &ListArgs,
    http: SocketAddr,
    file: &Options,
) -> Result<(), Failure> {
    let api = directory_api(&args.api, http, &args.client, file)?;
    let (heading, rows) = match &args.interested_in {
        Some(name) => {
            let interested = api.interested_in(name).await?;
            if args.json {
                let text = serde_json::to_string(&interested).map_err(std::io::Error::other)?;
                writeln!(std::io::stdout().lock(), "{text}")?;
                return Ok(());
            }
            let count = match interested.count {
                1 => "1 subscriber".to_owned(),
                n => format!("{n} subscribers"),
            };
            (
                Some(format!("{count} interested in {name}")),
                interested.subscribers,
            )
        }
        None => (None, api.subscribers().await?),
    };
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let text = serde_json::to_string(&rows).map_err(std::io::Error::other)?;
        writeln!(stdout, "{text}")?;
        return Ok(());
    }
    if let Some(heading) = heading {
        writeln!(stdout, "{heading}")?;
    }
    for s in &rows {
        writeln!(stdout, "{}", crate::subscribers::text_line(s))?;
    }
    Ok(())
}

/// One line of `herald watch --subscribers`: `came ID ADDRESS INTERESTS …`, `went …
/// (expired)`, `ready: 2 subscribers`; each a JSON object with `--json`.
fn subscriber_line(update: &SubscriberUpdate, json: bool) -> Result<String, Failure> {
    if json {
        return serde_json::to_string(update).map_err(|e| std::io::Error::other(e).into());
    }
    Ok(match update {
        SubscriberUpdate::Ready { subscribers: 1 } => "ready: 1 subscriber".to_owned(),
        SubscriberUpdate::Ready { subscribers } => format!("ready: {subscribers} subscribers"),
        SubscriberUpdate::Change(change) => {
            let mut line = format!(
                "{} {}",
                change.kind.as_str(),
                crate::subscribers::text_line(&change.subscriber)
            );
            match change.ended {
                Some(crate::client::api::Ended::Unsubscribed) => line.push_str(" (unsubscribed)"),
                Some(crate::client::api::Ended::Expired) => line.push_str(" (expired)"),
                None => {}
            }
            line
        }
    })
}

/// `herald watch --subscribers`: the directory's subscriber feed until Ctrl-C.
async fn watch_subscribers(
    args: &WatchArgs,
    http: SocketAddr,
    file: &Options,
) -> Result<(), Failure> {
    let api = directory_api(&args.api, http, &args.client, file)?;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut feed = tokio::select! {
        feed = api.watch_subscribers() => feed?,
        () = &mut stop => return Ok(()),
    };
    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            () = &mut stop => return Ok(()),
            update = feed.next() => {
                writeln!(stdout, "{}", subscriber_line(&update?, args.json)?)?;
                stdout.flush()?;
            }
        }
    }
}

async fn list(args: ListArgs, file: &Options) -> Result<(), Failure> {
    if let (true, Some(http)) = (args.subscribers, args.api.http) {
        return list_subscribers(&args, http, file).await;
    }
    let herald = Herald::connect(args.client.options(file)?).await?;
    let services = herald.list().await?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let text = serde_json::to_string(&services).map_err(std::io::Error::other)?;
        writeln!(stdout, "{text}")?;
    } else {
        for s in &services {
            writeln!(stdout, "{}", text_line(s))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name or metadata with a character that reverses the text or hides is printed
    /// with it escaped; before, `herald list` and `herald watch` printed it as is.
    #[test]
    fn a_text_line_escapes_hidden_characters() {
        let service = ServiceInfo {
            name: "evil\u{202e}gnp.exe".to_owned(),
            locations: vec!["127.0.0.1:80".parse().unwrap()],
            meta: [("zone\u{200b}".to_owned(), "eu\u{2066}".to_owned())].into(),
            version: 1,
        };
        assert_eq!(
            text_line(&service),
            "evil\\u{202e}gnp.exe 127.0.0.1:80 zone\\u{200b}=eu\\u{2066}"
        );
    }
}
