//! The embedded client for real: `examples/tap_node.rs` (embassy-net on a TAP device)
//! against a real `herald serve`, `herald watch`, `herald list`, `herald register` and
//! `herald unregister`, all inside a network namespace this test creates and deletes
//! (also on failure). Every address is in that namespace; nothing leaves it.
//!
//! Needs root and /dev/net/tun (it is skipped, saying why, without them), `ip` from
//! iproute2, and the `herald` and `tap_node` binaries next to this test (as `cargo test`
//! builds them), or at the paths in `HERALD_BIN` and `HERALD_TAP_NODE`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const NODE_ADDRESS: &str = "192.168.69.1/24";
const HOST_ADDRESS: &str = "192.168.69.100";
const DIRECTORY: &str = "192.168.69.100:37399";
const STEP: Duration = Duration::from_secs(20);

/// A network namespace, deleted when dropped.
struct Namespace {
    name: String,
}

impl Namespace {
    fn create(name: String) -> Namespace {
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
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
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
struct Process {
    name: &'static str,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Process {
    fn spawn(name: &'static str, mut command: Command, log: &Path) -> Process {
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
    fn expect(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
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
fn run(command: &mut Command) -> String {
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
fn missing_privilege() -> Option<&'static str> {
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
fn binary(variable: &str, relative: &str) -> PathBuf {
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

#[test]
fn embedded_client_meets_the_std_server_through_a_tap_device() {
    if let Some(reason) = missing_privilege() {
        println!("skipping the TAP test: {reason}");
        return;
    }
    let herald = binary("HERALD_BIN", "herald");
    let node_bin = binary("HERALD_TAP_NODE", "examples/tap_node");
    let id = std::process::id();
    let work = std::env::temp_dir().join(format!("herald-tap-{id}"));
    std::fs::create_dir_all(&work).unwrap();
    let ns = Namespace::create(format!("herald-tap-{id}"));

    // The embedded node first: the TAP device has a carrier once it is open.
    let mut node_command = ns.command(&node_bin);
    node_command.args([
        "--tap",
        "tap0",
        "--address",
        NODE_ADDRESS,
        "--directory",
        DIRECTORY,
        "--register",
        "embedded-node=192.168.69.1:7000",
        "--release-after",
        "std-service",
        "--seconds",
        "90",
    ]);
    let mut node = Process::spawn("tap_node", node_command, &work);
    node.expect("ready", |l| l == "ready");

    let on_tap = ["--directory", DIRECTORY, "--interface", HOST_ADDRESS];
    let mut serve = ns.command(&herald);
    serve.args([
        "serve",
        "--bind",
        DIRECTORY,
        "--interface",
        HOST_ADDRESS,
        "--data-dir",
    ]);
    serve.arg(work.join("data"));
    let _server = Process::spawn("herald serve", serve, &work);

    // The node registers; a std watcher discovers it on the group.
    node.expect("registration", |l| {
        l.starts_with("registered embedded-node")
    });
    let mut watch_command = ns.command(&herald);
    watch_command.args(["watch", "--json"]).args(on_tap);
    let mut watch = Process::spawn("herald watch", watch_command, &work);
    watch.expect("embedded-node discovered", |l| {
        l.contains("\"discovered\"")
            && l.contains("\"embedded-node\"")
            && l.contains("192.168.69.1:7000")
    });
    let list = run(ns.command(&herald).args(["list", "--json"]).args(on_tap));
    assert!(list.contains("embedded-node"), "herald list: {list}");

    // The std CLI registers a service; the node discovers it, then sees it go.
    run(ns
        .command(&herald)
        .args(["register", "std-service", "192.168.69.100:8080", "--once"])
        .args(on_tap));
    node.expect("std-service discovered", |l| {
        l == "discovered std-service 192.168.69.100:8080"
    });
    run(ns
        .command(&herald)
        .args(["unregister", "std-service"])
        .args(on_tap));
    node.expect("std-service unregistered", |l| {
        l == "unregistered std-service"
    });

    // Then the node unregisters its own service, and the watcher sees it go.
    node.expect("its own release", |l| {
        l == "released embedded-node confirmed"
    });
    watch.expect("embedded-node unregistered", |l| {
        l.contains("\"unregistered\"") && l.contains("\"embedded-node\"")
    });
    let status = node.child.wait().unwrap();
    assert!(status.success(), "tap_node exited with {status}");

    drop(ns);
    let _ = std::fs::remove_dir_all(&work);
}
