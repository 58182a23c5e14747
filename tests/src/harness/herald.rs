//! The `herald` binary as the suites drive it: a directory ([`Directory`]), watchers
//! ([`Watcher`]), registrants and the one-shot commands (`list`, `unregister`).

use super::binary;
use super::host::Host;
use super::metrics::{self, Metrics};
use super::ports;
use super::process::Proc;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a directory may take to answer its first probe.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a one-shot command (`list`, `unregister`, `register --once`) may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// What the client commands need to reach a directory.
#[derive(Clone, Debug)]
pub struct Connect {
    /// Directories, in order of preference.
    pub directories: Vec<SocketAddr>,
    /// The environment.
    pub environment: String,
    /// The multicast group.
    pub group: SocketAddr,
}

impl Connect {
    /// The client options, for a client running on `host`.
    pub fn args(&self, host: &Host) -> Vec<String> {
        let mut a = Vec::new();
        for d in &self.directories {
            a.push("--directory".into());
            a.push(d.to_string());
        }
        a.extend([
            "--environment".into(),
            self.environment.clone(),
            "--group".into(),
            self.group.to_string(),
            "--interface".into(),
            host.interface().to_owned(),
        ]);
        a
    }
}

/// A `herald` command on `host` with `args`; logs at debug level for the client
/// driver, so waits can key on its log lines.
pub fn herald_command(host: &Host, args: &[String]) -> Command {
    let mut cmd = host.command(binary::herald());
    cmd.args(args)
        .env("RUST_LOG", "info,herald_server::client=debug")
        .env("NO_COLOR", "1");
    cmd
}

/// Settings of one directory.
#[derive(Clone, Debug)]
pub struct DirectoryOptions {
    /// The environment served.
    pub environment: String,
    /// The group announced on.
    pub group: SocketAddr,
    /// The address advertised instead of the bound one (a fault proxy's).
    pub advertise: Option<SocketAddr>,
    /// Serve Prometheus metrics (on 127.0.0.1 for the machine itself, on the host's
    /// address inside a namespace; [`Directory::metrics`] reads them either way).
    pub metrics: bool,
    /// Where the registry is kept: `herald serve` store flags (`--store …`,
    /// `--etcd-prefix …`); none for the default local store in the data directory.
    pub store: Vec<String>,
    /// More `herald serve` flags.
    pub extra: Vec<String>,
}

impl DirectoryOptions {
    /// Environment `environment`, a group of its own, no metrics, no extra flags.
    pub fn new(environment: &str) -> DirectoryOptions {
        DirectoryOptions {
            environment: environment.into(),
            group: ports::unique_group(),
            advertise: None,
            metrics: false,
            store: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// With Prometheus metrics on.
    pub fn with_metrics(mut self) -> DirectoryOptions {
        self.metrics = true;
        self
    }

    /// With the registry kept in etcd at `endpoints` (one cluster, any members) under
    /// `prefix`: `--store etcd://host:port[,host:port…] --etcd-prefix prefix`. Needs a
    /// herald built with etcd support ([`binary::etcd_support`]).
    pub fn with_etcd(mut self, endpoints: &[SocketAddr], prefix: &str) -> DirectoryOptions {
        let list: Vec<String> = endpoints.iter().map(|e| e.to_string()).collect();
        self.store = vec![
            "--store".into(),
            format!("etcd://{}", list.join(",")),
            "--etcd-prefix".into(),
            prefix.into(),
        ];
        self
    }

    /// With more `herald serve` flags.
    pub fn with(mut self, flags: &[&str]) -> DirectoryOptions {
        self.extra.extend(flags.iter().map(|s| s.to_string()));
        self
    }
}

/// A `herald serve` process with its own data directory (kept across restarts).
pub struct Directory {
    label: String,
    host: Host,
    bind: SocketAddr,
    metrics: Option<SocketAddr>,
    options: DirectoryOptions,
    data: tempfile::TempDir,
    process: Option<Proc>,
}

impl Directory {
    /// Starts a directory on `host` (a fresh port) and waits until it answers.
    pub fn start(host: &Host, label: &str, options: DirectoryOptions) -> Directory {
        Directory::start_on(host, label, host.addr(ports::free_udp_port()), options)
    }

    /// Starts a directory on `host` bound to `bind` (e.g. a link-local address with its
    /// scope id) and waits until it answers.
    pub fn start_on(
        host: &Host,
        label: &str,
        bind: SocketAddr,
        options: DirectoryOptions,
    ) -> Directory {
        // Inside a namespace every port is free; on the machine, one the kernel chose.
        let metrics = options.metrics.then(|| host.addr(ports::free_tcp_port()));
        let data = tempfile::Builder::new()
            .prefix("herald-test-")
            .tempdir()
            .expect("temporary data directory");
        let mut d = Directory {
            label: label.into(),
            host: host.clone(),
            bind,
            metrics,
            options,
            data,
            process: None,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let o = &self.options;
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--bind".into(),
            self.bind.to_string(),
            "--group".into(),
            o.group.to_string(),
            "--interface".into(),
            self.host.interface().to_owned(),
            "--environment".into(),
            o.environment.clone(),
            "--data-dir".into(),
            self.data.path().display().to_string(),
        ];
        if let Some(a) = o.advertise {
            args.extend(["--advertise".into(), a.to_string()]);
        }
        if let Some(m) = self.metrics {
            args.extend(["--metrics".into(), m.to_string()]);
        }
        args.extend(o.store.iter().cloned());
        args.extend(o.extra.iter().cloned());
        let p = Proc::spawn(
            format!("{} ({})", self.label, self.host.name()),
            herald_command(&self.host, &args),
        );
        self.process = Some(p);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let mut probe = self.host.command(binary::testkit());
        probe.args([
            "probe",
            &self.bind.to_string(),
            &self.options.environment,
            &START_TIMEOUT.as_secs().to_string(),
        ]);
        let mut p = Proc::spawn(format!("probe of {}", self.label), probe);
        let status = p.finish(START_TIMEOUT + Duration::from_secs(5));
        if !status.success() {
            panic!(
                "{} did not become ready\n{}\n{}",
                self.label,
                p.log_tail(),
                self.process().log_tail()
            );
        }
    }

    /// The address clients use (the advertised one, if any).
    pub fn addr(&self) -> SocketAddr {
        self.options.advertise.unwrap_or(self.bind)
    }

    /// Its label in logs.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The host it runs on.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// True while its process runs (false after [`Directory::kill`] or if it exited).
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(Proc::is_running)
    }

    /// The address it binds.
    pub fn bind_addr(&self) -> SocketAddr {
        self.bind
    }

    /// The group it announces on.
    pub fn group(&self) -> SocketAddr {
        self.options.group
    }

    /// What a client needs to reach this directory (only this one).
    pub fn connect(&self) -> Connect {
        Connect {
            directories: vec![self.addr()],
            environment: self.options.environment.clone(),
            group: self.options.group,
        }
    }

    /// The running process (panics if it was killed).
    pub fn process(&self) -> &Proc {
        self.process.as_ref().expect("the directory is not running")
    }

    /// Kills it with SIGKILL (its data directory stays).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
            // Keep its log for failure messages of this test.
            eprintln!("[harness] killed {}\n{}", self.label, p.log_tail());
        }
    }

    /// Starts it again on the same address with the same data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Its metrics (it must have been started with `metrics: true`); panics when they
    /// cannot be read.
    pub fn metrics(&self) -> Metrics {
        self.try_metrics()
            .unwrap_or_else(|e| panic!("{}: {e}", self.label))
    }

    /// Its metrics, or why they cannot be read (e.g. it was killed).
    pub fn try_metrics(&self) -> Result<Metrics, String> {
        let addr = self.metrics.expect("started without metrics");
        metrics::scrape_on(&self.host, addr)
    }
}

/// One line of `herald watch --json`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct WatchEvent {
    /// `discovered`, `changed` or `unregistered`.
    pub event: String,
    /// The service.
    pub name: String,
    /// Where it is.
    pub locations: Vec<String>,
    /// Its metadata.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

/// A `herald watch --json` process.
pub struct Watcher {
    process: Proc,
}

impl Watcher {
    /// Starts `herald watch --json` on `host` with `interests` (none: everything).
    pub fn start(host: &Host, label: &str, connect: &Connect, interests: &[&str]) -> Watcher {
        let mut args = vec!["watch".to_string(), "--json".into()];
        for i in interests {
            args.extend(["--interest".into(), i.to_string()]);
        }
        args.extend(connect.args(host));
        let process = Proc::spawn(
            format!("{label} ({})", host.name()),
            herald_command(host, &args),
        );
        Watcher { process }
    }

    /// Waits until its first snapshot is complete (the driver's debug log line).
    pub fn wait_ready(&self, timeout: Duration) -> &Watcher {
        self.process.wait_for_line(timeout, "snapshot complete");
        self
    }

    /// The process.
    pub fn process(&self) -> &Proc {
        &self.process
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<WatchEvent> {
        parse_events(&self.process.stdout())
    }

    /// Every event so far with when the harness read it, in seconds after `origin`
    /// (negative: before it); for printing what a listener heard around a fault.
    pub fn timeline(&self, origin: Instant) -> Vec<(f64, WatchEvent)> {
        self.process
            .lines()
            .into_iter()
            .filter(|l| l.stream == super::process::Stream::Stdout)
            .filter_map(|l| {
                let e: WatchEvent = serde_json::from_str(&l.text).ok()?;
                let at = match l.at.checked_duration_since(origin) {
                    Some(d) => d.as_secs_f64(),
                    None => -origin.duration_since(l.at).as_secs_f64(),
                };
                Some((at, e))
            })
            .collect()
    }

    /// How many `event` events for `name` so far.
    pub fn count(&self, event: &str, name: &str) -> usize {
        count(&self.events(), event, name)
    }

    /// Waits until `done` holds for the events so far; panics with the log after
    /// `timeout`.
    pub fn wait(&self, timeout: Duration, what: &str, done: impl Fn(&[WatchEvent]) -> bool) {
        self.process.wait_for(timeout, what, |lines| {
            let out: Vec<String> = lines
                .iter()
                .filter(|l| l.stream == super::process::Stream::Stdout)
                .map(|l| l.text.clone())
                .collect();
            done(&parse_events(&out)).then_some(())
        });
    }

    /// The services it currently believes live (replaying its events).
    pub fn view(&self) -> BTreeMap<String, Vec<String>> {
        view(&self.events())
    }
}

/// Parses `herald watch --json` lines (other lines are skipped).
pub fn parse_events(lines: &[String]) -> Vec<WatchEvent> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// How many `event` events for `name`.
pub fn count(events: &[WatchEvent], event: &str, name: &str) -> usize {
    events
        .iter()
        .filter(|e| e.event == event && e.name == name)
        .count()
}

/// The live services after replaying `events`: name → locations.
pub fn view(events: &[WatchEvent]) -> BTreeMap<String, Vec<String>> {
    let mut live = BTreeMap::new();
    for e in events {
        if e.event == "unregistered" {
            live.remove(&e.name);
        } else {
            live.insert(e.name.clone(), e.locations.clone());
        }
    }
    live
}

/// `herald register NAME LOCATIONS… [extra]` on `host`, kept running; returns once it
/// printed that the directory accepted it.
pub fn register(
    host: &Host,
    connect: &Connect,
    name: &str,
    locations: &[SocketAddr],
    extra: &[&str],
) -> Proc {
    let mut args = vec!["register".to_string(), name.into()];
    args.extend(locations.iter().map(|l| l.to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(connect.args(host));
    let p = Proc::spawn(
        format!("register {name} ({})", host.name()),
        herald_command(host, &args),
    );
    p.wait_for_line(COMMAND_TIMEOUT, &format!("registered {name} "));
    p
}

/// Runs a one-shot `herald` command to its end; returns its standard output, or the
/// exit status and log when it fails.
pub fn run(host: &Host, label: &str, args: &[String]) -> Result<String, String> {
    let mut p = Proc::spawn(label, herald_command(host, args));
    let status = p.finish(COMMAND_TIMEOUT);
    if status.success() {
        Ok(p.stdout().join("\n"))
    } else {
        Err(format!("{label}: {status}\n{}", p.log_tail()))
    }
}

/// One entry of `herald list --json`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Listed {
    /// The name.
    pub name: String,
    /// Where it is.
    pub locations: Vec<String>,
    /// Its metadata.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

/// `herald list --json` on `host`.
pub fn list(host: &Host, connect: &Connect) -> Result<Vec<Listed>, String> {
    let mut args = vec!["list".to_string(), "--json".into()];
    args.extend(connect.args(host));
    let out = run(host, "herald list", &args)?;
    serde_json::from_str(out.trim()).map_err(|e| format!("herald list --json: {e}: {out}"))
}

/// `herald list --json` as name → locations.
pub fn list_view(host: &Host, connect: &Connect) -> Result<BTreeMap<String, Vec<String>>, String> {
    Ok(list(host, connect)?
        .into_iter()
        .map(|l| (l.name, l.locations))
        .collect())
}

/// A `herald-testkit load` process on `host`: registers `count` services named
/// `prefix00000…` with `lease_secs`; returns once all are acknowledged. Write
/// `unregister` to it to unregister them all.
pub fn load(
    host: &Host,
    connect: &Connect,
    prefix: &str,
    count: usize,
    lease_secs: u64,
    timeout: Duration,
) -> Proc {
    let mut cmd = host.command(binary::testkit());
    cmd.args(["load", "--prefix", prefix, "--count", &count.to_string()])
        .args(["--environment", &connect.environment])
        .args(["--ip", &host.ip().to_string()])
        .args(["--lease-secs", &lease_secs.to_string()])
        .args(["--timeout-secs", &timeout.as_secs().to_string()]);
    for d in &connect.directories {
        cmd.args(["--directory", &d.to_string()]);
    }
    let p = Proc::spawn(format!("load {prefix}* ({})", host.name()), cmd);
    let line = p.wait_for_line(
        timeout + Duration::from_secs(5),
        &format!("registered {count} in"),
    );
    eprintln!("[harness] {}: {line}", p.name());
    p
}

/// Asks a [`load`] process to unregister everything; returns its report line.
pub fn unload(p: &mut Proc, timeout: Duration) -> String {
    p.send_line("unregister");
    p.wait_for_line(timeout, "released ")
}
