//! A minimal HTTP/1.1 client for a directory's API (`herald serve --http`): one `GET`
//! per connection, the answer's body read whole or line by line (for Server-Sent
//! Events), chunked or not. Bounded: a body of at most [`MAX_BODY`] bytes, lines of at
//! most [`MAX_LINE`].

use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest body read whole (a full subscriber table of long interests).
pub const MAX_BODY: usize = 64 << 20;
/// Longest line of a streamed body.
pub const MAX_LINE: usize = 1 << 20;
/// Longest head (status line and headers).
const MAX_HEAD: usize = 64 << 10;

fn invalid(reason: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.into())
}

/// An answer whose head has been read.
pub struct Answer {
    reader: BufReader<TcpStream>,
    /// The status code.
    pub status: u16,
    chunked: bool,
    /// Bytes left in the current chunk (chunked bodies).
    left: usize,
    /// The body is all read.
    done: bool,
    /// Body bytes read and not yet handed out.
    pending: Vec<u8>,
}

/// Sends `GET path` to `addr` (with the bearer `token` and the `Last-Event-ID` of a
/// feed being resumed, if given) and reads the head of the answer.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    last_event_id: Option<&str>,
) -> io::Result<Answer> {
    let mut stream = TcpStream::connect(addr).await?;
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let resume = last_event_id.map_or_else(String::new, |id| format!("Last-Event-ID: {id}\r\n"));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}{resume}Accept: */*\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut reader = BufReader::new(stream);
    let mut head = Vec::new();
    loop {
        let before = head.len();
        (&mut reader)
            .take((MAX_HEAD - before.min(MAX_HEAD)) as u64)
            .read_until(b'\n', &mut head)
            .await?;
        let line = &head[before..];
        if line.is_empty() || head.len() >= MAX_HEAD {
            return Err(invalid("not an HTTP answer"));
        }
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("not an HTTP answer"))?;
    let chunked = head
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    Ok(Answer {
        reader,
        status,
        chunked,
        left: 0,
        done: false,
        pending: Vec::new(),
    })
}

impl Answer {
    /// Reads more of the body into `pending`; false at its end.
    async fn read_more(&mut self) -> io::Result<bool> {
        if self.done {
            return Ok(false);
        }
        if self.chunked && self.left == 0 {
            let mut size = String::new();
            // The CRLF that ends the previous chunk, then the size line.
            while size.trim().is_empty() {
                size.clear();
                let n = (&mut self.reader).take(1024).read_line(&mut size).await?;
                if n == 0 {
                    return Err(invalid("the chunked body ends early"));
                }
            }
            let hex = size.split(';').next().unwrap_or("").trim();
            self.left = usize::from_str_radix(hex, 16).map_err(|_| invalid("bad chunk size"))?;
            if self.left == 0 {
                self.done = true;
                return Ok(false);
            }
        }
        let mut buf = [0u8; 8192];
        let want = if self.chunked {
            self.left.min(buf.len())
        } else {
            buf.len()
        };
        let n = self.reader.read(&mut buf[..want]).await?;
        if n == 0 {
            self.done = true;
            if self.chunked {
                return Err(invalid("the chunked body ends early"));
            }
            return Ok(false);
        }
        if self.chunked {
            self.left -= n;
        }
        self.pending.extend_from_slice(&buf[..n]);
        Ok(true)
    }

    /// The whole body, as text.
    pub async fn body(mut self) -> io::Result<String> {
        while self.read_more().await? {
            if self.pending.len() > MAX_BODY {
                return Err(invalid(format!("the answer is over {MAX_BODY} bytes")));
            }
        }
        String::from_utf8(self.pending).map_err(|_| invalid("the answer is not UTF-8"))
    }

    /// The next line of the body without its line end; `None` at its end.
    pub async fn line(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(at) = self.pending.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=at).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return String::from_utf8(line)
                    .map(Some)
                    .map_err(|_| invalid("a line is not UTF-8"));
            }
            if self.pending.len() > MAX_LINE {
                return Err(invalid(format!("a line is over {MAX_LINE} bytes")));
            }
            if !self.read_more().await? {
                if self.pending.is_empty() {
                    return Ok(None);
                }
                let rest = std::mem::take(&mut self.pending);
                return String::from_utf8(rest)
                    .map(Some)
                    .map_err(|_| invalid("a line is not UTF-8"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Serves `answer` once on a loopback port, written in pieces of 3 bytes.
    async fn serve_once(answer: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            for piece in answer.as_bytes().chunks(3) {
                stream.write_all(piece).await.unwrap();
                stream.flush().await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn chunked_bodies_are_joined_and_read_by_line() {
        let answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                      5\r\nab\ncd\r\n4;x=y\r\n\r\nef\r\n0\r\n\r\n";
        let addr = serve_once(answer).await;
        let body = get(addr, "/", None, None)
            .await
            .unwrap()
            .body()
            .await
            .unwrap();
        assert_eq!(body, "ab\ncd\r\nef");
        let addr = serve_once(answer).await;
        let mut a = get(addr, "/", None, None).await.unwrap();
        assert_eq!(a.status, 200);
        let mut lines = Vec::new();
        while let Some(line) = a.line().await.unwrap() {
            lines.push(line);
        }
        assert_eq!(lines, ["ab", "cd", "ef"]);
    }

    #[tokio::test]
    async fn bad_answers_are_refused() {
        for answer in [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc",
        ] {
            let addr = serve_once(answer).await;
            let head = get(addr, "/", None, None).await.unwrap();
            assert!(head.body().await.is_err(), "{answer:?}");
        }
        let addr = serve_once("SSH-2.0-OpenSSH\r\n").await;
        assert!(get(addr, "/", None, None).await.is_err());
    }
}
