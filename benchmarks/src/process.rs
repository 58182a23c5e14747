//! Child processes of a run: a Herald directory (this binary re-executed as `herald
//! serve`, the same code as the `herald` binary), the raw UDP echo server, and how much
//! resident memory a process holds.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Spawned {
    child: Child,
}

impl Spawned {
    /// Starts the raw UDP echo server ([`echo_server`], for at most 60 s) on a free
    /// loopback port and waits until it is ready; it and its address.
    pub fn echo() -> Result<(Spawned, SocketAddr), String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(Ipv4Addr::LOCALHOST)));
        let mut echo = Spawned::this_binary(&["echo".into(), addr.to_string(), "60".into()])
            .map_err(|e| format!("echo server: {e}"))?;
        wait_for_line(
            echo.stdout().ok_or("echo stdout")?,
            "echo ready",
            Duration::from_secs(5),
        )?;
        Ok((echo, addr))
    }

    /// Starts this executable with `args`; standard output is piped, errors inherited.
    pub fn this_binary(args: &[String]) -> std::io::Result<Spawned> {
        let exe = std::env::current_exe()?;
        let child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        Ok(Spawned { child })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Takes the piped standard output.
    pub fn stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Kills the process at once (SIGKILL: nothing is sent on the way out).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads standard output until a line containing `needle`, or `timeout`, on a thread.
pub fn wait_for_line(out: ChildStdout, needle: &str, timeout: Duration) -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = needle.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains(&wanted) {
                let _ = tx.send(());
                break;
            }
        }
    });
    rx.recv_timeout(timeout)
        .map_err(|_| format!("no line with {needle:?} within {timeout:?}"))
}

/// Resident set size of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A UDP port on `ip` that was free a moment ago.
pub fn free_port(ip: Ipv4Addr) -> u16 {
    UdpSocket::bind((ip, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

/// A multicast group of the administratively scoped range, unique to this run.
pub fn unique_group() -> SocketAddr {
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let ip = Ipv4Addr::new(239, 77, (pid % 250) as u8, (n % 250) as u8 + 1);
    SocketAddr::V4(SocketAddrV4::new(ip, free_port(Ipv4Addr::LOCALHOST)))
}

/// How a directory is started.
#[derive(Clone, Debug)]
pub struct DirectorySpec {
    /// Processing interval, ms.
    pub interval_ms: u64,
    /// Registry capacity.
    pub capacity: usize,
    /// Address it binds and announces from (loopback, or a namespace's interface).
    pub ip: Ipv4Addr,
    /// More `herald serve` flags (`--dns ADDR`, `--http ADDR`).
    pub extra: Vec<String>,
}

impl Default for DirectorySpec {
    fn default() -> Self {
        DirectorySpec {
            interval_ms: 50,
            capacity: 16_384,
            ip: Ipv4Addr::LOCALHOST,
            extra: Vec::new(),
        }
    }
}

/// A running directory with its own port, group and data directory.
pub struct Directory {
    process: Spawned,
    /// Where it takes requests.
    pub addr: SocketAddr,
    /// Where it announces.
    pub group: SocketAddr,
    data_dir: PathBuf,
}

impl Directory {
    /// Starts a directory and waits until it answers a request.
    pub fn start(spec: &DirectorySpec) -> Result<Directory, String> {
        let addr = SocketAddr::from((spec.ip, free_port(spec.ip)));
        let group = unique_group();
        let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let data_dir =
            std::env::temp_dir().join(format!("herald-bench-{}-{n}", std::process::id()));
        let mut args: Vec<String> = [
            "herald",
            "serve",
            "--bind",
            &addr.to_string(),
            "--group",
            &group.to_string(),
            "--interface",
            &spec.ip.to_string(),
            "--interval-ms",
            &spec.interval_ms.to_string(),
            "--capacity",
            &spec.capacity.to_string(),
            "--data-dir",
            &data_dir.to_string_lossy(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(spec.extra.iter().cloned());
        let process = Spawned::this_binary(&args).map_err(|e| format!("spawn: {e}"))?;
        let directory = Directory {
            process,
            addr,
            group,
            data_dir,
        };
        crate::raw::wait_until_answering(addr, Duration::from_secs(10))?;
        Ok(directory)
    }

    /// The directory's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

impl Drop for Directory {
    fn drop(&mut self) {
        self.process.kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The raw UDP echo server (`herald-bench echo ADDR`): answers every datagram with its
/// bytes, one `recv_from` and one `send_to` each. Runs at most `limit`.
pub fn echo_server(addr: SocketAddr, limit: Duration) -> std::io::Result<()> {
    let socket = UdpSocket::bind(addr)?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    println!("echo ready");
    while start.elapsed() < limit {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    }
    Ok(())
}
