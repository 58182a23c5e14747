//! What the namespace tests share (`tap.rs`, `qemu.rs`): a network namespace with a
//! TAP device, child processes whose output lines are awaited, and the binaries they run.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// The host's address on the TAP link.
pub const HOST_ADDRESS: &str = "192.168.69.100";
/// Where `herald serve` listens.
pub const DIRECTORY: &str = "192.168.69.100:37399";
/// How long one step may take.
pub const STEP: Duration = Duration::from_secs(20);

/// A network namespace, deleted when dropped.
pub struct Namespace {
    pub name: String,
}

impl Namespace {
    /// Creates `name` with its loopback up and `tap0` at [`HOST_ADDRESS`].
    pub fn create(name: String) -> Namespace {
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Namespace { name };
        for args in [
            &["link", "set", "lo", "up"][..],
            &["tuntap", "add", "dev", "tap0", "mode", "tap"],
            &["addr", "add", &format!("{HOST_ADDRESS}/24"), "dev", "tap0"],
            &["link", "set", "tap0", "up"],
            // The kernel side sends its multicast out of the TAP device.
            &["route", "add", "224.0.0.0/4", "dev", "tap0"],
        ] {
            run(ns.command("ip").args(args));
        }
        ns
    }

    /// `program` to run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs `herald serve` (`command`: the `herald` binary, to run in this namespace) at
    /// [`DIRECTORY`], announcing out of the TAP device, its data in `work/data`.
    pub fn serve(&self, mut command: Command, work: &Path) -> Process {
        command.args([
            "serve",
            "--bind",
            DIRECTORY,
            "--interface",
            HOST_ADDRESS,
            "--data-dir",
        ]);
        command.arg(work.join("data"));
        Process::spawn("herald serve", command, work)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A child process whose output lines arrive on a channel; killed when dropped.
pub struct Process {
    pub name: &'static str,
    pub child: Child,
    lines: Receiver<String>,
    pub seen: Vec<String>,
}

impl Process {
    /// Starts `command`, its standard error into `log`/NAME.stderr.
    pub fn spawn(name: &'static str, mut command: Command, log: &Path) -> Process {
        let stderr = std::fs::File::create(log.join(format!("{name}.stderr"))).unwrap();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Process {
            name,
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to [`STEP`] for a line that `wanted` accepts.
    pub fn expect(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "{}: no {what} within {STEP:?}; its output: {:#?}",
                    self.name, self.seen
                ),
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` to completion and returns its standard output; panics on failure.
pub fn run(command: &mut Command) -> String {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Why this test cannot run here, if it cannot.
pub fn missing_privilege() -> Option<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(str::to_owned);
    if uid.as_deref() != Some("0") {
        return Some("not root (network namespaces and TAP devices need it)");
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun");
    }
    None
}

/// A binary from `variable`, else `relative` to the directory cargo put this test's
/// target directory in (`target/debug`).
pub fn binary(variable: &str, relative: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let path = profile_dir.join(relative);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p herald-server --bin herald; \
         cargo build -p herald-embedded --example tap_node) or set {variable}",
        path.display()
    );
    path
}
