//! `herald serve` under a `Type=notify` unit with a watchdog: the sd_notify messages it
//! sends on `NOTIFY_SOCKET`.

mod common;

use common::*;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

#[test]
fn serve_notifies_readiness_pings_the_watchdog_and_says_it_stops() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let path = data.path().join("notify");
    let manager = UnixDatagram::bind(&path).unwrap();
    manager
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let socket = path.display().to_string();
    let args = serve_args(&net, &data.path().join("data"), &[]);
    let mut dir = Proc::spawn(
        "directory",
        &args,
        &[
            ("NOTIFY_SOCKET", socket.as_str()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let mut buf = [0u8; 512];
    let mut next = || {
        let n = manager.recv(&mut buf).expect("a notification within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next();
    assert!(ready.starts_with("READY=1\nSTATUS=serving"), "{ready}");
    // At least two pings (every 100 ms), then the stop.
    assert_eq!(next(), "WATCHDOG=1");
    assert_eq!(next(), "WATCHDOG=1");
    dir.signal("TERM");
    let mut seen = Vec::new();
    loop {
        let m = next();
        if m == "STOPPING=1" {
            break;
        }
        assert_eq!(m, "WATCHDOG=1", "{seen:?}");
        seen.push(m);
        assert!(seen.len() < 1000, "no STOPPING=1");
    }
    assert_eq!(dir.wait(Duration::from_secs(10)), Some(0));
}
