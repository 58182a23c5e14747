//! The DNS and HTTP interfaces of `herald serve`: DNS queries per second and their
//! latency, beside a raw UDP echo server driven by the same load generator in the same
//! run; and the latency of a change seen on the Server-Sent Events watch, beside the
//! same change seen by a multicast watcher.

use crate::events;
use crate::latency::options;
use crate::process::{Directory, DirectorySpec, Spawned};
use crate::raw::populate;
use crate::report::{num, ratio, Report};
use crate::stats::{rate, Summary};
use herald_core::Interest;
use herald_server::client::{registration, EventKind, Herald, Watch};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Queries per measurement (the count bound); each also stops after [`LIMIT`].
const QUERIES: usize = 50_000;
/// Time bound of each measurement.
const LIMIT: Duration = Duration::from_secs(4);
/// Queries in flight.
const WINDOW: usize = 32;
/// Services registered before the DNS load (`dns-000000` …).
const SERVICES: usize = 1_000;
/// Register → event rounds (count bound).
const ROUNDS: usize = 200;
/// Time bound of the rounds.
const ROUNDS_LIMIT: Duration = Duration::from_secs(15);

/// A DNS query for `name` (labels separated by `.`, no trailing dot) of type `qtype`.
fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// What one load run achieved.
struct Loaded {
    answered: usize,
    elapsed: Duration,
    latency: Summary,
}

/// Sends `queries` to `target`, at most `window` outstanding, each once (a query not
/// answered within 200 ms is counted lost), until all are answered or lost or `limit`
/// has passed; the answered count and each answer's latency.
fn load(target: SocketAddr, queries: &[Vec<u8>], window: usize, limit: Duration) -> Loaded {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("client socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut sent_at: HashMap<u16, Instant> = HashMap::new();
    let mut latencies = Vec::with_capacity(queries.len());
    let mut next = 0;
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    let mut last = start;
    while (next < queries.len() || !sent_at.is_empty()) && start.elapsed() < limit {
        while sent_at.len() < window && next < queries.len() {
            let q = &queries[next];
            next += 1;
            if socket.send_to(q, target).is_ok() {
                sent_at.insert(u16::from_be_bytes([q[0], q[1]]), Instant::now());
            }
        }
        match socket.recv_from(&mut buf) {
            Ok((n, _)) if n >= 2 => {
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                if let Some(at) = sent_at.remove(&id) {
                    last = Instant::now();
                    latencies.push(last - at);
                }
            }
            Ok(_) => {}
            // Nothing for 200 ms: what is outstanding is lost.
            Err(_) => sent_at.clear(),
        }
    }
    Loaded {
        answered: latencies.len(),
        elapsed: last - start,
        latency: Summary::of(&latencies),
    }
}

/// The DNS measurement: the directory with `--dns`, and the echo server.
fn dns(report: &mut Report) -> Result<serde_json::Value, String> {
    let (mut echo, echo_addr) = Spawned::echo()?;
    let dns_addr = SocketAddr::from((
        Ipv4Addr::LOCALHOST,
        crate::process::free_port(Ipv4Addr::LOCALHOST),
    ));
    let directory = Directory::start(&DirectorySpec {
        extra: vec!["--dns".into(), dns_addr.to_string()],
        ..DirectorySpec::default()
    })?;
    let populated = populate(
        directory.addr,
        "dns",
        SERVICES,
        Duration::from_secs(300),
        Duration::from_secs(10),
    );
    if populated.answered != SERVICES {
        return Err(format!(
            "only {} of {SERVICES} registered",
            populated.answered
        ));
    }
    // SRV of a different service each time (ids wrap at 65536; at most WINDOW are
    // outstanding, so an id is never in flight twice).
    let queries: Vec<Vec<u8>> = (0..QUERIES)
        .map(|i| {
            let name = format!("dns-{:06}.herald", i % SERVICES);
            query(i as u16, &name, 33)
        })
        .collect();
    let echo_before = load(echo_addr, &queries, WINDOW, LIMIT);
    let answered = load(dns_addr, &queries, WINDOW, LIMIT);
    let echo_after = load(echo_addr, &queries, WINDOW, LIMIT);
    echo.kill();
    drop(directory);
    let per_second = |l: &Loaded| rate(l.answered, l.elapsed);
    let baseline = (per_second(&echo_before) + per_second(&echo_after)) / 2.0;
    let mut rows = Vec::new();
    for (what, l) in [
        ("raw UDP echo, before", &echo_before),
        ("herald DNS: SRV of one of 1,000 services", &answered),
        ("raw UDP echo, after", &echo_after),
    ] {
        rows.push(vec![
            what.to_string(),
            num(per_second(l), 0),
            ratio(per_second(l), baseline),
            num(l.latency.p50, 3),
            num(l.latency.p99, 3),
            format!("{} of {}", l.answered, QUERIES),
        ]);
    }
    report.table(
        &[
            "queries (32 in flight)",
            "per second",
            "vs echo",
            "p50 ms",
            "p99 ms",
            "answered",
        ],
        &rows,
    );
    Ok(serde_json::json!({
        "echo_per_second": baseline,
        "dns_per_second": per_second(&answered),
        "dns_latency": answered.latency.json(),
        "echo_latency": echo_before.latency.json(),
    }))
}

/// Reads `/v1/watch` on a thread; each change's service name and arrival time.
fn sse(http: SocketAddr) -> Result<mpsc::Receiver<(String, Instant)>, String> {
    let mut stream = TcpStream::connect(http).map_err(|e| format!("http: {e}"))?;
    write!(stream, "GET /v1/watch HTTP/1.1\r\nHost: {http}\r\n\r\n").map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(ROUNDS_LIMIT + Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            let Some(data) = line.strip_prefix("data: ") else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
                continue;
            };
            if v["event"] == "discovered" {
                let name = v["name"].as_str().unwrap_or_default().to_owned();
                if tx.send((name, Instant::now())).is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

/// register → event on the SSE watch and on a multicast watcher, the same changes.
async fn changes() -> Result<(Summary, Summary), String> {
    let http = SocketAddr::from((
        Ipv4Addr::LOCALHOST,
        crate::process::free_port(Ipv4Addr::LOCALHOST),
    ));
    let directory = Directory::start(&DirectorySpec {
        extra: vec!["--http".into(), http.to_string()],
        ..DirectorySpec::default()
    })?;
    let options = options(&directory);
    let mut watch = Watch::start(options.clone(), Interest::all())
        .await
        .map_err(|e| e.to_string())?;
    let herald = Herald::connect(options).await.map_err(|e| e.to_string())?;
    let sse = sse(http)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let location: SocketAddr = "127.0.0.1:9000".parse().expect("address");
    let (mut over_sse, mut over_multicast) = (Vec::new(), Vec::new());
    let start = Instant::now();
    for i in 0..ROUNDS {
        if start.elapsed() > ROUNDS_LIMIT {
            break;
        }
        let name = format!("web-{i:04}");
        let reg = registration(&name, &[location], &[]).map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let handle = herald.register(reg).await.map_err(|e| e.to_string())?;
        let limit = Duration::from_secs(2);
        if let Some(t) = events::one(&mut watch, EventKind::Discovered, &name, limit).await {
            over_multicast.push(t - t0);
        }
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match sse.recv_timeout(left) {
                Ok((n, t)) if n == name => {
                    over_sse.push(t - t0);
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        handle.unregister().await.map_err(|e| e.to_string())?;
    }
    Ok((Summary::of(&over_sse), Summary::of(&over_multicast)))
}

/// Runs both measurements.
pub fn run(report: &mut Report, runtime: &tokio::runtime::Runtime) -> Result<(), String> {
    report.section("DNS queries (one client, loopback) beside a raw UDP echo");
    let dns = dns(report)?;
    report.section("Change latency: library register → SSE event at an HTTP client, beside the multicast watcher");
    let (over_sse, over_multicast) = runtime.block_on(changes())?;
    let rows: Vec<Vec<String>> = [
        ("SSE (/v1/watch)", over_sse),
        ("multicast watcher", over_multicast),
    ]
    .iter()
    .map(|(what, s)| {
        vec![
            what.to_string(),
            s.count.to_string(),
            num(s.p50, 2),
            num(s.p99, 2),
            num(s.max, 2),
        ]
    })
    .collect();
    report.table(
        &[
            "register → discovered",
            "runs",
            "p50 ms",
            "p99 ms",
            "max ms",
        ],
        &rows,
    );
    report.record(
        "web",
        serde_json::json!({
            "dns": dns,
            "sse": over_sse.json(),
            "multicast": over_multicast.json(),
        }),
    );
    Ok(())
}
