//! `herald serve --dns`: answers checked with a Rust resolver (`hickory-resolver`) and
//! with `dig` (Debian `dnsutils`; those checks are skipped, with the reason printed,
//! when it is not installed): SRV, A, AAAA, TXT, PTR and DNS-SD browsing, NXDOMAIN
//! against NODATA, the name mapping, and truncation over UDP with the TCP fallback.

mod common;

use common::*;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{ResolveError, Resolver, TokioResolver};
use std::net::SocketAddr;
use std::process::Command;

/// A directory with DNS and HTTP on, and services registered over HTTP.
struct Setup {
    _dir: Proc,
    _data: tempfile::TempDir,
    dns: SocketAddr,
    http: String,
}

const OWNER: &str = "00000000000d0d0d";
/// Instances of `big`: their SRV answer does not fit 512 bytes, nor 1232 (EDNS).
const BIG: usize = 40;

fn setup() -> Setup {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port_tcp());
    let dns: SocketAddr = format!("127.0.0.1:{}", free_port_tcp()).parse().unwrap();
    let dir = directory(
        &net,
        data.path(),
        &["--http", &http, "--dns", &dns.to_string(), "--dns-ttl", "5"],
    );
    let put = |name: &str, body: &str| {
        let (status, text) = request(
            &http,
            "PUT",
            &format!("/v1/services/{name}"),
            &[("Herald-Registrant", OWNER)],
            body,
        );
        // The directory's log with it: a write that times out (504) says nothing of why.
        assert_eq!(
            status,
            200,
            "{name}: {text}\ndirectory's log:\n{}",
            dir.stderr()
        );
    };
    put(
        "billing/host-1",
        r#"{"locations":["127.0.0.1:8080","[::1]:8081"],"meta":{"zone":"eu","v":"2"}}"#,
    );
    put("billing/host-2", r#"{"locations":["127.0.0.2:8080"]}"#);
    put("search.eu", r#"{"locations":["127.0.0.3:9000"]}"#);
    for i in 0..BIG {
        put(
            &format!("big/instance-{i:02}"),
            &format!(r#"{{"locations":["127.0.1.{i}:{}"]}}"#, 1000 + i),
        );
    }
    Setup {
        _dir: dir,
        _data: data,
        dns,
        http,
    }
}

fn resolver(dns: SocketAddr) -> TokioResolver {
    let servers = NameServerConfigGroup::from_ips_clear(&[dns.ip()], dns.port(), true);
    let config = ResolverConfig::from_parts(None, vec![], servers);
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.attempts = 2;
    Resolver::builder_with_config(config, TokioConnectionProvider::default())
        .with_options(opts)
        .build()
}

async fn lookup(r: &TokioResolver, name: &str, t: RecordType) -> Result<Vec<RData>, ResolveError> {
    r.lookup(name, t).await.map(|l| {
        // The answer's records of that type (the lookup also holds the additional
        // records).
        l.record_iter()
            .filter(|r| r.record_type() == t)
            .map(|r| r.data().clone())
            .collect()
    })
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn dns_answers_from_the_registry() {
    let s = setup();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = resolver(s.dns);
        // SRV of a service: every location of every instance.
        let srv = lookup(&r, "billing.herald.", RecordType::SRV)
            .await
            .unwrap();
        let srv: Vec<String> = srv
            .iter()
            .filter_map(|d| match d {
                RData::SRV(srv) => Some(format!("{} {}", srv.port(), srv.target())),
                _ => None,
            })
            .collect();
        assert_eq!(
            sorted(srv),
            [
                "8080 127-0-0-1._addr.herald.",
                "8080 127-0-0-2._addr.herald.",
                "8081 0-0-0-0-0-0-0-1._addr.herald.",
            ]
        );
        // A and AAAA of a service, an instance and a target.
        let a = lookup(&r, "billing.herald.", RecordType::A).await.unwrap();
        let a: Vec<String> = a.iter().map(|d| d.to_string()).collect();
        assert_eq!(sorted(a), ["127.0.0.1", "127.0.0.2"]);
        let aaaa = lookup(&r, "host-1.billing.herald.", RecordType::AAAA)
            .await
            .unwrap();
        assert_eq!(aaaa.len(), 1);
        assert_eq!(aaaa[0].to_string(), "::1");
        let target = lookup(&r, "127-0-0-2._addr.herald.", RecordType::A)
            .await
            .unwrap();
        assert_eq!(target[0].to_string(), "127.0.0.2");
        // TXT: the metadata as key=value.
        let txt = lookup(&r, "host-1.billing.herald.", RecordType::TXT)
            .await
            .unwrap();
        let RData::TXT(txt) = &txt[0] else {
            panic!("{txt:?}")
        };
        let strings: Vec<String> = txt
            .iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect();
        assert_eq!(strings, ["v=2", "zone=eu"]);
        // DNS-SD browsing: the services, then a service's instances.
        let ptr = lookup(&r, "_services._dns-sd._udp.herald.", RecordType::PTR)
            .await
            .unwrap();
        let ptr: Vec<String> = ptr.iter().map(|d| d.to_string()).collect();
        // `search.eu` is mapped by the reversible rule: `.` is `-2e` after the `x-` of an escaped label.
        assert_eq!(
            sorted(ptr),
            ["big.herald.", "billing.herald.", "x-search-2eeu.herald."]
        );
        let ptr = lookup(&r, "billing.herald.", RecordType::PTR)
            .await
            .unwrap();
        let ptr: Vec<String> = ptr.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            sorted(ptr),
            ["host-1.billing.herald.", "host-2.billing.herald."]
        );
        let mapped = lookup(&r, "x-search-2eeu.herald.", RecordType::SRV)
            .await
            .unwrap();
        assert_eq!(mapped.len(), 1);
        let mapped = lookup(&r, "X-SEARCH-2EEU.HERALD.", RecordType::SRV)
            .await
            .unwrap();
        assert_eq!(mapped.len(), 1, "names match without regard to case");
        // NXDOMAIN: no such name; NODATA: the name exists, not with that type.
        for name in [
            "nothing.herald.",
            "host-9.billing.herald.",
            "search.eu.herald.",
        ] {
            let e = lookup(&r, name, RecordType::SRV).await.unwrap_err();
            assert!(e.is_nx_domain(), "{name}: {e}");
        }
        for (name, t) in [
            ("billing.herald.", RecordType::MX),
            ("host-2.billing.herald.", RecordType::AAAA),
            ("_dns-sd._udp.herald.", RecordType::PTR),
            ("herald.", RecordType::A),
        ] {
            let e = lookup(&r, name, t).await.unwrap_err();
            assert!(
                e.is_no_records_found() && !e.is_nx_domain(),
                "{name} {t}: {e}"
            );
        }
        // Too big for UDP: truncated, and the resolver gets it all over TCP.
        let big = lookup(&r, "big.herald.", RecordType::SRV).await.unwrap();
        assert_eq!(big.len(), BIG);
        garbage_is_survived(&s, &r).await;
    });
    with_dig(&s);
}

/// A query for `big.herald. SRV` with EDNS allowing 4096 bytes: 39 bytes.
fn big_query(id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    // Flags 0, one question, one additional record (the OPT).
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
    q.extend_from_slice(b"\x03big\x06herald\x00\x00\x21\x00\x01");
    // OPT: root name, type 41, class = UDP payload size 4096, TTL 0, no data.
    q.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    q
}

/// A flood of small UDP queries whose answers are large (what a reflection attack with
/// a forged source address sends) gets back, over the flood, no more than 3x its bytes:
/// beyond its source's byte budget every answer larger than that comes truncated (TC,
/// no records), and a real resolver at that address still gets everything over TCP.
#[test]
fn the_dns_interface_is_no_reflection_amplifier() {
    let s = setup();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let reader = socket.try_clone().unwrap();
    reader
        .set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .unwrap();
    let counting = std::thread::spawn(move || {
        let (mut answers, mut bytes, mut truncated) = (0u64, 0u64, 0u64);
        let mut buf = [0u8; 65536];
        while let Ok(n) = reader.recv(&mut buf) {
            answers += 1;
            bytes += n as u64;
            truncated += u64::from(n >= 4 && buf[2] & 0x02 != 0);
        }
        (answers, bytes, truncated)
    });
    // 3,000 queries, one a millisecond (bounded in count and time).
    let (queries, started) = (3000u16, std::time::Instant::now());
    let mut sent = 0u64;
    for id in 0..queries {
        let q = big_query(id);
        socket.send_to(&q, s.dns).unwrap();
        sent += q.len() as u64;
        std::thread::sleep(std::time::Duration::from_millis(1));
        if started.elapsed() > std::time::Duration::from_secs(10) {
            break;
        }
    }
    let (answers, received, truncated) = counting.join().unwrap();
    let ratio = received as f64 / sent as f64;
    println!(
        "{answers} answers ({truncated} truncated) to {queries} queries: {received} bytes \
         for {sent}, {ratio:.2}x"
    );
    assert!(
        answers * 10 >= u64::from(queries) * 9,
        "most queries answered"
    );
    assert!(ratio <= 3.0, "{ratio:.2}x the bytes of the queries");
    // The truncated answers are counted (the metrics follow the loop's next wake-up).
    let counted = || {
        let (_, text) = request(&s.http, "GET", "/metrics", &[], "");
        text.lines()
            .find_map(|l| l.strip_prefix("herald_dns_truncated_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while counted() < truncated && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        counted() >= truncated,
        "herald_dns_truncated_total {}",
        counted()
    );
    // A resolver at the same address, over its budget, still gets the whole answer (over
    // TCP, after a truncated one over UDP).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let big = lookup(&resolver(s.dns), "big.herald.", RecordType::SRV).await;
        assert_eq!(big.unwrap().len(), BIG);
    });
}

/// Malformed datagrams (truncated headers, bad label lengths, compression loops, random
/// bytes; a bounded number) neither stop the server nor disturb the next answer.
async fn garbage_is_survived(s: &Setup, r: &TokioResolver) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut frames: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x12],
        vec![0x12, 0x34, 0x01, 0x00, 0, 1],
        // One question whose name is a pointer to itself.
        vec![
            0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 33, 0, 1,
        ],
        // A label longer than the datagram.
        vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 63, b'a', 0],
    ];
    for _ in 0..200 {
        let len = (next() % 600) as usize;
        frames.push((0..len).map(|_| next() as u8).collect());
    }
    // In bursts of 20 (a longer burst can overflow the socket's receive buffer, and the
    // kernel then drops the query that follows: the resolver would retry after 5 s),
    // each followed by a query that must be answered.
    for burst in frames.chunks(20) {
        for f in burst {
            socket.send_to(f, s.dns).unwrap();
        }
        let srv = lookup(r, "host-2.billing.herald.", RecordType::SRV).await;
        assert_eq!(srv.unwrap().len(), 1, "still answering");
    }
}

/// `dig` output lines of the answer section.
fn dig(dns: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &dns.port().to_string(),
            "+time=5",
            "+tries=2",
        ])
        .args(args)
        .output()
        .expect("run dig");
    assert!(out.status.success(), "dig {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn with_dig(s: &Setup) {
    if Command::new("dig").arg("-v").output().is_err() {
        println!("SKIPPED the dig checks: dig is not installed (Debian: apt-get install dnsutils)");
        return;
    }
    let short = |args: &[&str]| sorted(dig(s.dns, args).lines().map(str::to_owned).collect());
    assert_eq!(
        short(&["billing.herald", "SRV", "+short"]),
        [
            "0 1 8080 127-0-0-1._addr.herald.",
            "0 1 8080 127-0-0-2._addr.herald.",
            "0 1 8081 0-0-0-0-0-0-0-1._addr.herald.",
        ]
    );
    assert_eq!(
        short(&["billing.herald", "A", "+short"]),
        ["127.0.0.1", "127.0.0.2"]
    );
    assert_eq!(short(&["host-1.billing.herald", "AAAA", "+short"]), ["::1"]);
    assert_eq!(
        short(&["host-1.billing.herald", "TXT", "+short"]),
        ["\"v=2\" \"zone=eu\""]
    );
    assert_eq!(
        short(&["_services._dns-sd._udp.herald", "PTR", "+short"]),
        ["big.herald.", "billing.herald.", "x-search-2eeu.herald."]
    );
    // The configured TTL, and the SOA of a negative answer.
    let full = dig(s.dns, &["billing.herald", "SRV", "+noall", "+answer"]);
    assert!(
        full.lines()
            .all(|l| l.split_whitespace().nth(1) == Some("5")),
        "{full}"
    );
    let nx = dig(s.dns, &["nothing.herald", "A"]);
    assert!(
        nx.contains("status: NXDOMAIN") && nx.contains("SOA"),
        "{nx}"
    );
    let nodata = dig(s.dns, &["billing.herald", "MX"]);
    assert!(
        nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0"),
        "{nodata}"
    );
    assert!(nodata.contains("flags: qr aa"), "authoritative: {nodata}");
    // Over UDP without EDNS (512 bytes) the answer is truncated (TC); dig then retries
    // over TCP by itself and gets every record.
    let udp = dig(s.dns, &["big.herald", "SRV", "+noedns", "+ignore"]);
    assert!(udp.contains(" tc"), "TC bit: {udp}");
    let all = dig(s.dns, &["big.herald", "SRV", "+noedns", "+short"]);
    assert_eq!(all.lines().count(), BIG, "{all}");
    let tcp = dig(s.dns, &["big.herald", "SRV", "+tcp", "+short"]);
    assert_eq!(tcp.lines().count(), BIG, "{tcp}");
    // A name outside the domain is refused (not a recursive resolver).
    let other = dig(s.dns, &["example.com", "A"]);
    assert!(other.contains("status: REFUSED"), "{other}");
}

/// Queries with a source no answer can go to (port 0: forged, since no socket sends
/// from it) are dropped without a log line each. Before, the DNS library logged a
/// warning for every one, so whoever can forge packets could fill the directory's logs
/// at the rate of its traffic.
#[test]
fn forged_sources_do_not_fill_the_log() {
    if not_root() {
        println!("SKIPPED: forging a source port needs a raw socket (root)");
        return;
    }
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let dns: SocketAddr = format!("127.0.0.1:{}", free_port_tcp()).parse().unwrap();
    let dir = directory(&net, data.path(), &["--dns", &dns.to_string()]);
    let query = big_query(7);
    // A UDP header (source port 0, no checksum) and the query; the kernel adds the IP
    // header.
    let mut packet = Vec::new();
    packet.extend_from_slice(&0u16.to_be_bytes());
    packet.extend_from_slice(&dns.port().to_be_bytes());
    packet.extend_from_slice(&((8 + query.len()) as u16).to_be_bytes());
    packet.extend_from_slice(&0u16.to_be_bytes());
    packet.extend_from_slice(&query);
    let raw = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    let to: SocketAddr = format!("{}:0", dns.ip()).parse().unwrap();
    for _ in 0..200 {
        raw.send_to(&packet, &to.into()).unwrap();
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    // A real query after them is answered: they were all handled by then.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    socket.send_to(&big_query(8), dns).unwrap();
    let mut answer = [0u8; 4096];
    let (len, _) = socket.recv_from(&mut answer).unwrap();
    assert!(
        len > 12 && answer[..2] == 8u16.to_be_bytes(),
        "{:?}",
        &answer[..len]
    );
    let stderr = dir.stderr();
    let lines = stderr.lines().filter(|l| l.contains("127.0.0.1:0")).count();
    assert_eq!(lines, 0, "{stderr}");
}
