//! A harness for driving the real `herald` binary over loopback: unique ports per test,
//! child processes killed on drop, their output captured for failure messages, and
//! every wait bounded.

#![allow(dead_code)] // Each test file uses a different part of it.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The multicast group every test uses (each on its own port).
pub const GROUP_IP: &str = "237.37.37.1";

/// A free loopback UDP port (bound, read and released: good enough for tests).
pub fn free_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral port");
    s.local_addr().unwrap().port()
}

/// One test's network: the directory's request address and the group.
#[derive(Clone, Debug)]
pub struct Net {
    /// Where the directory takes requests.
    pub directory: SocketAddr,
    /// The multicast group and port.
    pub group: SocketAddr,
}

impl Net {
    /// Fresh ports for one test.
    pub fn new() -> Net {
        Net {
            directory: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            group: format!("{GROUP_IP}:{}", free_port()).parse().unwrap(),
        }
    }

    /// The client flags that point at this network.
    pub fn client_args(&self) -> Vec<String> {
        vec![
            "--directory".into(),
            self.directory.to_string(),
            "--group".into(),
            self.group.to_string(),
        ]
    }
}

/// The binary, with no HERALD_* setting inherited from the environment.
pub fn herald() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HERALD_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd
}

/// A running `herald` process: killed on drop; stdout lines arrive on a channel,
/// stderr is kept for failure messages.
pub struct Proc {
    /// What it is, for messages.
    pub label: String,
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    stderr_lines: Receiver<String>,
}

fn pump(reader: impl Read + Send + 'static, log: Option<Arc<Mutex<String>>>) -> Receiver<String> {
    let (tx, rx) = channel();
    thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if let Some(log) = &log {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
            if tx.send(line).is_err() && log.is_none() {
                break;
            }
        }
    });
    rx
}

impl Proc {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `herald ARGS…`.
    pub fn spawn(label: &str, args: &[String], env: &[(&str, &str)]) -> Proc {
        let mut cmd = herald();
        cmd.args(args).envs(env.iter().copied());
        Proc::spawn_command(label, cmd)
    }

    /// Starts `cmd` (which runs herald, perhaps through `nsenter`).
    pub fn spawn_command(label: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start herald");
        let stderr = Arc::new(Mutex::new(String::new()));
        let lines = pump(child.stdout.take().unwrap(), None);
        let stderr_lines = pump(child.stderr.take().unwrap(), Some(stderr.clone()));
        Proc {
            label: label.to_owned(),
            child,
            lines,
            stderr,
            stderr_lines,
        }
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The next stdout line, if one comes within `timeout`.
    pub fn line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Waits (bounded) for a stdout line containing `needle`; panics with the
    /// process's stderr if none comes. Returns the line and when it came.
    pub fn expect_line(&self, needle: &str, timeout: Duration) -> (String, Instant) {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.line(left) {
                Some(line) if line.contains(needle) => return (line, Instant::now()),
                Some(line) => seen.push(line),
                None => break,
            }
        }
        panic!(
            "{}: no line with {needle:?} within {timeout:?}\nstdout: {seen:#?}\nstderr:\n{}",
            self.label,
            self.stderr()
        );
    }

    /// Every stdout line that arrives within `period`.
    pub fn lines_for(&self, period: Duration) -> Vec<String> {
        let deadline = Instant::now() + period;
        let mut lines = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.line(left) {
                Some(line) => lines.push(line),
                None => break,
            }
        }
        lines
    }

    /// Waits (bounded) for a stderr line containing `needle`, and returns it.
    pub fn expect_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!(
            "{}: no log line with {needle:?} within {timeout:?}\nstderr:\n{}",
            self.label,
            self.stderr()
        );
    }

    /// Sends a signal (`kill -SIG pid`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.label);
    }

    /// Waits (bounded) for the process to exit; its exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "{}: still running after {timeout:?}\nstderr:\n{}",
            self.label,
            self.stderr()
        );
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The arguments of `herald serve` on `net` storing in `data`, then `extra`.
pub fn serve_args(net: &Net, data: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--bind".into(),
        net.directory.to_string(),
        "--group".into(),
        net.group.to_string(),
        "--data-dir".into(),
        data.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Starts a directory on `net` storing in `data`, and waits until it serves.
pub fn directory(net: &Net, data: &Path, extra: &[&str]) -> Proc {
    let args = serve_args(net, data, extra);
    let p = Proc::spawn("directory", &args, &[]);
    p.expect_log("herald directory serving", Duration::from_secs(10));
    p
}

/// Starts `herald watch --json` on `net` and waits until it has its first snapshot.
pub fn watcher(net: &Net, label: &str, extra: &[&str]) -> Proc {
    let mut args: Vec<String> = vec!["watch".into(), "--json".into()];
    args.extend(net.client_args());
    args.extend(extra.iter().map(|s| s.to_string()));
    let p = Proc::spawn(label, &args, &[("RUST_LOG", "herald_server=debug")]);
    p.expect_log("snapshot complete", Duration::from_secs(10));
    p
}

/// Runs a client command to completion (bounded: killed after `timeout`).
pub fn run(args: &[String], timeout: Duration) -> Output {
    let mut child = herald()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start herald");
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    panic!(
        "herald {args:?} still running after {timeout:?}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `herald ARGS… <net's client flags>`, which must succeed; its stdout.
pub fn ok(net: &Net, args: &[&str]) -> String {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(net.client_args());
    let out = run(&all, Duration::from_secs(15));
    assert!(
        out.status.success(),
        "herald {all:?} failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Starts `herald register NAME LOCATION … <net>` and waits until it is registered.
pub fn registrant(net: &Net, name: &str, extra: &[&str]) -> Proc {
    let mut args: Vec<String> = vec!["register".into(), name.into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(net.client_args());
    let p = Proc::spawn(&format!("registrant {name}"), &args, &[]);
    p.expect_line("registered", Duration::from_secs(10));
    p
}

/// Lines of a watcher's JSON output with this event and name.
pub fn count(lines: &[String], event: &str, name: &str) -> usize {
    let e = format!("\"event\":\"{event}\"");
    let n = format!("\"name\":\"{name}\"");
    lines
        .iter()
        .filter(|l| l.contains(&e) && l.contains(&n))
        .count()
}

/// A free loopback TCP port (for a metrics endpoint).
pub fn free_port_tcp() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `GET path` from `addr` over HTTP/1.1 (bounded by a 5 s read timeout); the whole answer.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

/// One HTTP/1.1 request (connection closed after it); the status and body.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    // Read to the end of the body: by its Content-Length when given (some servers keep
    // the connection open), else until the server closes.
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|n| bytes.len() >= end + 4 + n) {
                break;
            }
        }
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(bytes).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the sample `name` (with its labels, if any) in Prometheus text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// True unless the test runs as root.
pub fn not_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    !status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}
