//! The live page at `/` of `herald serve --http`, in a real headless browser: Debian's
//! `chromium`, driven over the W3C WebDriver protocol by `chromedriver` (plain HTTP and
//! JSON, spoken here with the test harness's HTTP client). A service registered while
//! the page is open appears as a row, the filter box hides it, and it goes away when
//! unregistered; the events list shows both. Skipped, with the reason printed, when
//! chromium or chromedriver is not installed (Debian: apt-get install chromium
//! chromium-driver).
//!
//! With `HERALD_SCREENSHOT=FILE` set, the test also saves a screenshot of the page
//! (that is how docs/web-page.png was made).

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `chromedriver`, killed on drop.
struct Driver {
    child: Child,
    addr: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A WebDriver command; the `value` of its answer.
fn command(driver: &str, method: &str, path: &str, body: Value) -> Value {
    let body = if method == "GET" || method == "DELETE" {
        String::new()
    } else {
        body.to_string()
    };
    let (status, text) = request(
        driver,
        method,
        path,
        &[("Content-Type", "application/json")],
        &body,
    );
    assert_eq!(status, 200, "{method} {path}: {text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    answer["value"].clone()
}

/// Runs `script` in the page; its result.
fn run(driver: &str, session: &str, script: &str) -> Value {
    command(
        driver,
        "POST",
        &format!("/session/{session}/execute/sync"),
        json!({ "script": script, "args": [] }),
    )
}

/// The names of the table's rows.
fn rows(driver: &str, session: &str) -> Vec<String> {
    let v = run(
        driver,
        session,
        "return [...document.querySelectorAll('#rows tr')].map(r => r.dataset.name)",
    );
    serde_json::from_value(v).unwrap()
}

/// Polls (bounded) until the rows satisfy `done`.
fn rows_until(driver: &str, session: &str, what: &str, done: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = rows(driver, session);
        if done(&now) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: rows are {now:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_page_shows_services_appear_and_go_live() {
    if !installed("chromium") || !installed("chromedriver") {
        println!(
            "SKIPPED: chromium and chromedriver are needed (Debian: apt-get install chromium \
             chromium-driver)"
        );
        return;
    }
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port_tcp());
    let _dir = directory(&net, data.path(), &["--http", &http]);
    let owner = [("Herald-Registrant", "00000000000b0b0b")];
    let put = |name: &str, body: &str| {
        let path = format!("/v1/services/{name}");
        let (status, text) = request(&http, "PUT", &path, &owner, body);
        assert_eq!(status, 200, "{text}");
    };
    put(
        "billing/host-1",
        r#"{"locations":["127.0.0.1:8080"],"meta":{"zone":"eu"},"lease_secs":120}"#,
    );

    let port = free_port_tcp();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        addr: format!("127.0.0.1:{port}"),
    };
    let d = driver.addr.as_str();
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(d).is_err() {
        assert!(Instant::now() < deadline, "chromedriver does not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let capabilities = json!({ "capabilities": { "alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1000,560"]
        }
    }}});
    let session = command(d, "POST", "/session", capabilities)["sessionId"]
        .as_str()
        .expect("a session")
        .to_owned();
    let s = session.as_str();
    command(
        d,
        "POST",
        &format!("/session/{s}/url"),
        json!({ "url": format!("http://{http}/") }),
    );

    // The snapshot: the service registered before the page opened.
    rows_until(d, s, "the first row", |r| r == ["billing/host-1"]);
    let status = run(d, s, "return document.getElementById('status').textContent");
    assert_eq!(status, "live");
    // Registered while the page is open: its row appears without a reload.
    put(
        "billing/host-2",
        r#"{"locations":["127.0.0.2:8080","127.0.0.2:8443"],"meta":{"zone":"us","tier":"gold"},"lease_secs":120}"#,
    );
    put(
        "search",
        r#"{"locations":["127.0.0.3:9200"],"lease_secs":120}"#,
    );
    rows_until(d, s, "new rows", |r| {
        r == ["billing/host-1", "billing/host-2", "search"]
    });
    let cells = run(
        d,
        s,
        "return [...document.querySelectorAll('#rows tr')][1].innerText",
    );
    let cells = cells.as_str().unwrap();
    for want in ["billing", "host-2", "127.0.0.2:8443", "tier=gold"] {
        assert!(cells.contains(want), "{want} in {cells:?}");
    }
    // The filter box.
    run(
        d,
        s,
        "const f = document.getElementById('filter'); f.value = 'sea'; \
         f.dispatchEvent(new Event('input')); return null",
    );
    rows_until(d, s, "filtered", |r| r == ["search"]);
    run(
        d,
        s,
        "const f = document.getElementById('filter'); f.value = ''; \
         f.dispatchEvent(new Event('input')); return null",
    );
    if let Ok(file) = std::env::var("HERALD_SCREENSHOT") {
        // Let the lease column fill in.
        std::thread::sleep(Duration::from_millis(2500));
        let png = command(d, "GET", &format!("/session/{s}/screenshot"), Value::Null);
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(&file, bytes).unwrap();
    }
    // Unregistered: its row goes.
    let (status, text) = request(&http, "DELETE", "/v1/services/billing/host-2", &owner, "");
    assert_eq!(status, 204, "{text}");
    rows_until(d, s, "the row removed", |r| {
        r == ["billing/host-1", "search"]
    });
    let events = run(d, s, "return document.getElementById('events').innerText");
    let events: Vec<&str> = events.as_str().unwrap().split_whitespace().collect();
    let events = events.join(" ");
    assert!(events.contains("discovered billing/host-2"), "{events}");
    assert!(events.contains("unregistered billing/host-2"), "{events}");
    // A name with a right-to-left override is shown with it escaped, not reversed.
    put(
        "evil%E2%80%AEgnp.exe",
        r#"{"locations":["127.0.0.4:80"],"lease_secs":120}"#,
    );
    let evil = "evil\u{202e}gnp.exe";
    rows_until(d, s, "the evil row", |r| r.iter().any(|n| n == evil));
    let cells = run(
        d,
        s,
        "return [...document.querySelectorAll('#rows tr')]\
           .find(r => r.dataset.name.startsWith('evil')).innerText",
    );
    let cells = cells.as_str().unwrap();
    assert!(cells.contains(r"evil\u{202e}gnp.exe"), "{cells:?}");
    let events = run(d, s, "return document.getElementById('events').innerText");
    let events = events.as_str().unwrap();
    assert!(
        events.contains(r"discovered evil\u{202e}gnp.exe"),
        "{events:?}"
    );
    command(d, "DELETE", &format!("/session/{s}"), Value::Null);
}
