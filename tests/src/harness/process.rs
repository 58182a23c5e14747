//! Child processes: output captured line by line, bounded waits on it, the log shown
//! when a test fails, and the process killed when its handle drops (also on panic).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of a child's output.
#[derive(Clone, Debug)]
pub struct Line {
    /// Where it came from.
    pub stream: Stream,
    /// The text, without the newline.
    pub text: String,
    /// When the harness read it.
    pub at: Instant,
}

#[derive(Default)]
struct Captured {
    lines: Vec<Line>,
    open_streams: usize,
}

struct Output {
    captured: Mutex<Captured>,
    changed: Condvar,
}

/// Lines of the log printed when a test fails.
const LOG_TAIL: usize = 80;

/// A running child process.
pub struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<Output>,
    started: Instant,
}

fn reader(output: Arc<Output>, stream: Stream, source: impl Read + Send + 'static) {
    std::thread::spawn(move || {
        let mut lines = BufReader::new(source);
        let mut buf = Vec::new();
        // Bounded by the child's life: read_until returns 0 at end of file.
        while lines.read_until(b'\n', &mut buf).unwrap_or(0) > 0 {
            let text = String::from_utf8_lossy(&buf).trim_end().to_owned();
            buf.clear();
            let mut c = output.captured.lock().unwrap_or_else(|e| e.into_inner());
            c.lines.push(Line {
                stream,
                text,
                at: Instant::now(),
            });
            output.changed.notify_all();
        }
        let mut c = output.captured.lock().unwrap_or_else(|e| e.into_inner());
        c.open_streams -= 1;
        output.changed.notify_all();
    });
}

impl Proc {
    /// Starts `cmd` (stdin, stdout and stderr piped); `name` labels its log.
    pub fn spawn(name: impl Into<String>, mut cmd: Command) -> Proc {
        let name = name.into();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let output = Arc::new(Output {
            captured: Mutex::new(Captured {
                lines: Vec::new(),
                open_streams: 2,
            }),
            changed: Condvar::new(),
        });
        reader(
            output.clone(),
            Stream::Stdout,
            child.stdout.take().expect("stdout"),
        );
        reader(
            output.clone(),
            Stream::Stderr,
            child.stderr.take().expect("stderr"),
        );
        let stdin = child.stdin.take();
        Proc {
            name,
            child,
            stdin,
            output,
            started: Instant::now(),
        }
    }

    /// The label given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When it was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<Line> {
        self.output
            .captured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lines
            .clone()
    }

    /// The standard output lines so far.
    pub fn stdout(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.stream == Stream::Stdout)
            .map(|l| l.text)
            .collect()
    }

    /// The last lines of its output, labelled, for failure messages.
    pub fn log_tail(&self) -> String {
        let lines = self.lines();
        let skip = lines.len().saturating_sub(LOG_TAIL);
        let mut s = format!(
            "---- {} (pid {}), last {} of {} lines ----\n",
            self.name,
            self.pid(),
            lines.len() - skip,
            lines.len()
        );
        for l in &lines[skip..] {
            let tag = match l.stream {
                Stream::Stdout => "out",
                Stream::Stderr => "err",
            };
            s.push_str(&format!("[{tag}] {}\n", l.text));
        }
        s
    }

    /// Waits on the captured output until `check` gives a value, the deadline passes
    /// or both streams are closed; `Err(closed)` in the last two cases.
    fn wait_output<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&Captured) -> Option<T>,
    ) -> Result<T, bool> {
        let deadline = Instant::now() + timeout;
        let mut c = self
            .output
            .captured
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Each pass either returns, or waits until new output or the deadline.
        for _ in 0..1_000_000 {
            if let Some(v) = check(&c) {
                return Ok(v);
            }
            let now = Instant::now();
            if now >= deadline || c.open_streams == 0 {
                break;
            }
            c = self
                .output
                .changed
                .wait_timeout(c, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Err(c.open_streams == 0)
    }

    /// Waits until `check` finds what it wants in the lines so far, or `timeout`
    /// passes, or the process closes its output; panics with the log in the last two
    /// cases.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&[Line]) -> Option<T>,
    ) -> T {
        match self.wait_output(timeout, |c| check(&c.lines)) {
            Ok(v) => v,
            Err(closed) => panic!(
                "{}: {what}: {} after {:?}\n{}",
                self.name,
                if closed {
                    "the process closed its output first"
                } else {
                    "timed out"
                },
                timeout,
                self.log_tail()
            ),
        }
    }

    /// Waits for a line containing `needle` (either stream); returns it.
    pub fn wait_for_line(&self, timeout: Duration, needle: &str) -> String {
        self.wait_for(timeout, &format!("a line with {needle:?}"), |lines| {
            lines
                .iter()
                .find(|l| l.text.contains(needle))
                .map(|l| l.text.clone())
        })
    }

    /// Writes one line to its standard input.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        writeln!(stdin, "{line}")
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: cannot write to stdin: {e}", self.name));
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`, `STOP`, `CONT`).
    pub fn signal(&self, signal: &str) {
        // The shell's built-in kill: no dependency on a kill binary being installed.
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{signal} {}", self.pid()))
            .status()
            .unwrap_or_else(|e| panic!("cannot run sh -c kill: {e}"));
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Waits up to `timeout` for it to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        super::wait::poll_until(timeout, || self.child.try_wait().ok().flatten())
    }

    /// Waits for it to exit and for its output to be read; panics on timeout.
    pub fn finish(&mut self, timeout: Duration) -> ExitStatus {
        let status = self.wait_exit(timeout).unwrap_or_else(|| {
            panic!(
                "{} did not exit within {timeout:?}\n{}",
                self.name,
                self.log_tail()
            )
        });
        self.wait_closed(Duration::from_secs(5));
        status
    }

    /// Waits (bounded) until both output streams are closed, so every line is read.
    fn wait_closed(&self, timeout: Duration) {
        let _ = self.wait_output(timeout, |c| (c.open_streams == 0).then_some(()));
    }

    /// True while it runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}
