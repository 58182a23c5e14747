//! A single-member etcd for the suites that keep the registry in etcd: started on a
//! [`Host`] (127.0.0.1, or a host of a [`Lab`](super::netns::Lab) inside its
//! namespace), with its own client and peer ports and a temporary data directory that
//! outlives [`Etcd::stop`], so [`Etcd::start`] brings back the same data. Readiness
//! is `GET /health` on the client port answering `"health":"true"`; the process is
//! killed when the handle drops.
//!
//! The binary is the `ETCD_BIN` variable if set, else `etcd` on the `PATH`, else
//! `/usr/bin/etcd` (Debian's package `etcd-server`); [`etcd_or_skip`] prints why a
//! scenario skips when there is none.

use super::binary::find_on_path;
use super::host::Host;
use super::http;
use super::ports;
use super::process::Proc;
use super::wait::{poll_until, secs};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long etcd may take to report healthy after a start.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stop may take.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// How [`Etcd::stop`] ends the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL: a crash, nothing is closed cleanly.
    Kill,
    /// SIGTERM: a clean shutdown.
    Term,
}

/// The etcd binary, or why there is none.
pub fn binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("ETCD_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("ETCD_BIN={} is not a file", p.display()))
        };
    }
    find_on_path("etcd")
        .or_else(|| Some(PathBuf::from("/usr/bin/etcd")).filter(|p| p.is_file()))
        .ok_or_else(|| {
            "etcd is not installed (no etcd on the PATH nor /usr/bin/etcd; Debian package \
             etcd-server, or set ETCD_BIN)"
                .into()
        })
}

/// A single-member etcd cluster.
pub struct Etcd {
    label: String,
    host: Host,
    binary: PathBuf,
    client: SocketAddr,
    peer: SocketAddr,
    data: tempfile::TempDir,
    process: Option<Proc>,
    starts: u32,
}

impl Etcd {
    /// Starts etcd on `host` (fresh client and peer ports, a new data directory) and
    /// waits until it reports healthy; `Err` when there is no etcd binary or it does
    /// not become healthy.
    pub fn start_on(host: &Host, label: &str) -> Result<Etcd, String> {
        let binary = binary()?;
        let data = tempfile::Builder::new()
            .prefix("herald-test-etcd-")
            .tempdir()
            .map_err(|e| format!("temporary data directory: {e}"))?;
        let mut etcd = Etcd {
            label: label.into(),
            host: host.clone(),
            binary,
            client: host.addr(ports::free_tcp_port()),
            peer: host.addr(ports::free_tcp_port()),
            data,
            process: None,
            starts: 0,
        };
        etcd.start()?;
        Ok(etcd)
    }

    fn command(&self) -> Command {
        let client = format!("http://{}", self.client);
        let peer = format!("http://{}", self.peer);
        let name = "herald-test";
        let mut cmd = self.host.command(&self.binary);
        // Only the flags below configure it (etcd also reads ETCD_* variables).
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("ETCD_") && k != "ETCD_UNSUPPORTED_ARCH" {
                cmd.env_remove(&key);
            }
        }
        cmd.arg("--name")
            .arg(name)
            .arg("--data-dir")
            .arg(self.data.path().join("member-data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("{name}={peer}")])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "herald-tests"])
            .args(["--logger", "zap", "--log-outputs", "stderr"]);
        cmd
    }

    /// Starts it again (after [`Etcd::stop`]) with the same ports and data, and waits
    /// until it reports healthy. Does nothing if it runs.
    pub fn start(&mut self) -> Result<(), String> {
        if self.is_running() {
            return Ok(());
        }
        self.starts += 1;
        let started = Instant::now();
        let p = Proc::spawn(
            format!("{} #{} ({})", self.label, self.starts, self.host.name()),
            self.command(),
        );
        self.process = Some(p);
        let healthy = poll_until(START_TIMEOUT, || {
            // An etcd that exited early (a port in use, a bad flag) will not get healthy.
            if !self.is_running() {
                return Some(Err("it exited".to_owned()));
            }
            self.health().ok().map(Ok)
        });
        match healthy {
            Some(Ok(())) => {
                eprintln!(
                    "[etcd] {} healthy at {} after {}",
                    self.label,
                    self.client,
                    secs(started.elapsed())
                );
                Ok(())
            }
            Some(Err(why)) => Err(format!(
                "{} did not become healthy: {why}\n{}",
                self.label,
                self.log_tail()
            )),
            None => Err(format!(
                "{} did not become healthy within {START_TIMEOUT:?} ({})\n{}",
                self.label,
                self.health().err().unwrap_or_default(),
                self.log_tail()
            )),
        }
    }

    /// Stops it (its data stays for the next [`Etcd::start`]) and waits until the
    /// process is gone.
    pub fn stop(&mut self, how: Stop) {
        let Some(mut p) = self.process.take() else {
            return;
        };
        match how {
            Stop::Kill => p.kill(),
            Stop::Term => {
                p.signal("TERM");
                if p.wait_exit(STOP_TIMEOUT).is_none() {
                    eprintln!("[etcd] {} ignored SIGTERM for {STOP_TIMEOUT:?}", self.label);
                    p.kill();
                }
            }
        }
        eprintln!("[etcd] stopped {} ({how:?})", self.label);
    }

    /// `Ok` when `GET /health` says healthy, else what it answered.
    pub fn health(&self) -> Result<(), String> {
        let body = http::get_on(&self.host, self.client, "/health")?;
        if body.replace(' ', "").contains("\"health\":\"true\"") {
            Ok(())
        } else {
            Err(format!("/health: {}", body.trim()))
        }
    }

    /// True while its process runs.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(Proc::is_running)
    }

    /// The client address (what `--store etcd://…` names).
    pub fn endpoint(&self) -> SocketAddr {
        self.client
    }

    /// The peer address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The host it runs on.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The running process, if it runs.
    pub fn process(&self) -> Option<&Proc> {
        self.process.as_ref()
    }

    /// The end of its log, or a note that it is stopped.
    pub fn log_tail(&self) -> String {
        self.process
            .as_ref()
            .map_or_else(|| format!("{} is stopped", self.label), Proc::log_tail)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // Before the data directory goes.
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }
}

/// etcd on `host`, or `None` after printing why `test` is skipped (no etcd binary);
/// panics when an installed etcd does not start.
pub fn etcd_or_skip(test: &str, host: &Host) -> Option<Etcd> {
    if let Err(why) = binary() {
        eprintln!("[{test}] SKIPPED: needs etcd: {why}");
        return None;
    }
    Some(Etcd::start_on(host, "etcd").unwrap_or_else(|e| panic!("[{test}] {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `key` → `value` through etcd's JSON gateway (keys and values in base64).
    fn put(etcd: &Etcd, key_b64: &str, value_b64: &str) -> Result<String, String> {
        let body = format!(r#"{{"key":"{key_b64}","value":"{value_b64}"}}"#);
        http::post_json(etcd.endpoint(), "/v3/kv/put", &body)
    }

    fn range(etcd: &Etcd, key_b64: &str) -> Result<String, String> {
        let body = format!(r#"{{"key":"{key_b64}"}}"#);
        http::post_json(etcd.endpoint(), "/v3/kv/range", &body)
    }

    #[test]
    fn restarts_keep_the_data_on_loopback() {
        if let Err(why) = binary() {
            eprintln!("[etcd] SKIPPED: {why}");
            return;
        }
        // "herald-tests" and "kept" in base64.
        let (key, value) = ("aGVyYWxkLXRlc3Rz", "a2VwdA==");
        let mut etcd = Etcd::start_on(&Host::loopback("lo"), "etcd").expect("etcd starts");
        assert!(etcd.endpoint().ip().is_loopback());
        put(&etcd, key, value).expect("put");
        for how in [Stop::Kill, Stop::Term] {
            etcd.stop(how);
            assert!(!etcd.is_running());
            assert!(etcd.health().is_err(), "healthy after {how:?}");
            assert!(range(&etcd, key).is_err());
            etcd.start().expect("etcd starts again");
            let found = range(&etcd, key).expect("range");
            assert!(found.contains(value), "after {how:?}: {found}");
        }
    }
}
