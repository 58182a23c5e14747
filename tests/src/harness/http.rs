//! Plain HTTP/1.0, enough for a directory's `/metrics` and etcd's `/health` (and its
//! JSON gateway). A
//! server inside a network namespace is reached from that namespace: the request then
//! runs as `herald-testkit http-get` on the host (the test process itself lives outside
//! every namespace).

use super::binary;
use super::host::Host;
use super::process::Proc;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long one request may take (connect, send, read).
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest body read.
const MAX_BODY: u64 = 16 << 20;

/// `GET http://addr/path` from this process: the body of a 2xx answer, else an error
/// that names the address and the status line.
pub fn get(addr: SocketAddr, path: &str) -> Result<String, String> {
    request(addr, "GET", path, None)
}

/// `POST http://addr/path` with a JSON `body` from this process (e.g. etcd's JSON
/// gateway); the answer as for [`get`].
pub fn post_json(addr: SocketAddr, path: &str, body: &str) -> Result<String, String> {
    request(addr, "POST", path, Some(body))
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<String, String> {
    let what = format!("{method} {addr}{path}");
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("{what}: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    head.push_str(body.unwrap_or(""));
    s.write_all(head.as_bytes())
        .map_err(|e| format!("{what}: {e}"))?;
    let mut answer = String::new();
    s.take(MAX_BODY)
        .read_to_string(&mut answer)
        .map_err(|e| format!("{what}: {e}"))?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or("");
    let code = status.split_whitespace().nth(1).unwrap_or("");
    if code.starts_with('2') {
        Ok(body.to_owned())
    } else {
        Err(format!("{what}: {status:?}: {}", body.trim()))
    }
}

/// `GET http://addr/path` from `host`: in this process on the machine itself, through
/// `herald-testkit http-get` inside a namespace.
pub fn get_on(host: &Host, addr: SocketAddr, path: &str) -> Result<String, String> {
    if host.netns().is_none() {
        return get(addr, path);
    }
    let mut cmd = host.command(binary::testkit());
    cmd.args(["http-get", &addr.to_string(), path]);
    let mut p = Proc::spawn(format!("GET {addr}{path} ({})", host.name()), cmd);
    let status = p.finish(TIMEOUT + Duration::from_secs(5));
    if status.success() {
        Ok(p.stdout().join("\n"))
    } else {
        let lines = p.lines();
        let why: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        Err(format!(
            "GET {addr}{path} on {}: {}",
            host.name(),
            why.join(" ")
        ))
    }
}
