//! Herald against mdns-sd, in a private network namespace this run creates: time for a
//! browser to discover N freshly announced services (N = 1, 100, 1,000), to notice one
//! unregistered, and to notice one whose process was killed. Both measured by the same
//! code in the same run; the comparison runs in a child process inside the namespace
//! (`herald-bench mdns-inner`) and prints its figures as one JSON line.

use crate::events;
use crate::netns::{Namespace, ADDRESS};
use crate::process::{wait_for_line, Directory, DirectorySpec, Spawned};
use crate::report::{num, ratio, Report};
use crate::stats::ms;
use herald_core::Interest;
use herald_server::client::{registration, ClientOptions, EventKind, Herald, Watch};
use herald_server::net::Interface;
use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Service counts.
const COUNTS: [usize; 3] = [1, 100, 1_000];
/// Time bound of one discovery.
const DISCOVER_LIMIT: Duration = Duration::from_secs(30);
/// Time bound of noticing a removal or a crash.
const REMOVE_LIMIT: Duration = Duration::from_secs(20);
/// Lease of Herald's crashing registrant (`herald register --lease 1`).
const CRASH_LEASE_S: u64 = 1;
/// Registrations per Herald client (a client holds at most 32).
const PER_CLIENT: usize = 25;
/// Prefix of the line carrying the inner process's results.
const RESULT: &str = "MDNS-RESULT ";

/// Runs the comparison in a fresh namespace, or reports why it cannot.
pub fn run(report: &mut Report) -> Result<(), String> {
    report.section("Herald vs mdns-sd (private network namespace, veth pair inside it)");
    if let Some(why) = crate::netns::unavailable() {
        report.line(&format!("Skipped: {why}."));
        return Ok(());
    }
    let ns = Namespace::create()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = ns
        .command(&exe)
        .arg("mdns-inner")
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("mdns-inner: {e}"))?;
    drop(ns);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(RESULT))
        .ok_or_else(|| format!("mdns-inner gave no result (status {})", out.status))?;
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let cell = |x: &serde_json::Value| x.as_f64().map_or("not seen".to_string(), |v| num(v, 1));
    let sides = |key: &str, label: String, rows: &mut Vec<Vec<String>>| {
        let (h, m) = (&v["herald"][key], &v["mdns"][key]);
        rows.push(vec![
            label,
            cell(h),
            cell(m),
            match (h.as_f64(), m.as_f64()) {
                (Some(h), Some(m)) => ratio(m, h),
                (Some(_), None) => "mdns-sd did not notice within the bound".into(),
                _ => "n/a".into(),
            },
        ]);
    };
    for n in COUNTS {
        sides(
            &format!("discover_{n}"),
            format!("discover {n} fresh service(s)"),
            &mut rows,
        );
    }
    sides("remove", "notice an unregistration".into(), &mut rows);
    sides(
        "crash",
        format!(
            "notice a killed registrant (Herald lease {CRASH_LEASE_S} s; bound {} s)",
            REMOVE_LIMIT.as_secs()
        ),
        &mut rows,
    );
    report.table(
        &["what", "Herald ms", "mdns-sd ms", "mdns-sd / Herald"],
        &rows,
    );
    report.record("mdns", v);
    Ok(())
}

/// Inside the namespace: measures both and prints one [`RESULT`] line.
pub fn inner() -> Result<(), String> {
    let runtime = crate::runtime()?;
    let mut herald = serde_json::Map::new();
    let mut mdns = serde_json::Map::new();
    let directory = Directory::start(&DirectorySpec {
        ip: ADDRESS,
        ..DirectorySpec::default()
    })?;
    let options = ClientOptions {
        directories: vec![directory.addr],
        group: directory.group,
        interface: Interface::V4(ADDRESS),
        timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    };
    for n in COUNTS {
        let (discover, remove) = runtime.block_on(herald_discover(&options, n))?;
        herald.insert(format!("discover_{n}"), discover.map(ms).into());
        if n == 1 {
            herald.insert("remove".into(), remove.map(ms).into());
        }
        let (discover, remove) = mdns_discover(n)?;
        mdns.insert(format!("discover_{n}"), discover.map(ms).into());
        if n == 1 {
            mdns.insert("remove".into(), remove.map(ms).into());
        }
    }
    herald.insert(
        "crash".into(),
        runtime
            .block_on(herald_crash(&options, &directory))?
            .map(ms)
            .into(),
    );
    mdns.insert("crash".into(), mdns_crash()?.map(ms).into());
    let result = serde_json::json!({"herald": herald, "mdns": mdns,
        "crash_lease_s": CRASH_LEASE_S, "bound_s": REMOVE_LIMIT.as_secs()});
    println!("{RESULT}{result}");
    Ok(())
}

/// Herald: a watcher sees `n` services registered by `n / 25` clients; then one is
/// unregistered. Returns (time to all discovered, time to the unregistration).
async fn herald_discover(
    options: &ClientOptions,
    n: usize,
) -> Result<(Option<Duration>, Option<Duration>), String> {
    let prefix = format!("n{n}-");
    let pattern = format!("{prefix}*");
    let interest = Interest::parse_all([pattern.as_str()]).map_err(|e| format!("{e:?}"))?;
    let mut watch = Watch::start(options.clone(), interest)
        .await
        .map_err(|e| e.to_string())?;
    let mut clients = Vec::new();
    for _ in 0..n.div_ceil(PER_CLIENT) {
        clients.push(
            Herald::connect(options.clone())
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        let client = client.clone();
        let prefix = prefix.clone();
        let range = c * PER_CLIENT..((c + 1) * PER_CLIENT).min(n);
        tasks.push(tokio::spawn(async move {
            let mut handles = Vec::new();
            for i in range {
                let location = SocketAddr::from((ADDRESS, 9000 + i as u16));
                let reg = registration(&format!("{prefix}{i:04}"), &[location], &[]).ok()?;
                handles.push(client.register(reg).await.ok()?);
            }
            Some(handles)
        }));
    }
    let got = events::many(&mut watch, EventKind::Discovered, n, DISCOVER_LIMIT).await;
    let discover = (got.len() == n).then(|| got.iter().map(|g| g.1).max().unwrap_or(t0) - t0);
    let mut handles = Vec::new();
    for task in tasks {
        handles.extend(task.await.ok().flatten().unwrap_or_default());
    }
    let mut remove = None;
    if n == 1 {
        if let Some(handle) = handles.pop() {
            let name = handle.grant().name.to_string();
            let t0 = Instant::now();
            handle.unregister().await.map_err(|e| e.to_string())?;
            remove = events::one(&mut watch, EventKind::Unregistered, &name, REMOVE_LIMIT)
                .await
                .map(|t| t - t0);
        }
    }
    for handle in handles {
        let _ = handle.unregister().await;
    }
    Ok((discover, remove))
}

/// Herald: `herald register --lease 1` is killed; time until the watcher's event.
async fn herald_crash(
    options: &ClientOptions,
    directory: &Directory,
) -> Result<Option<Duration>, String> {
    let mut watch = Watch::start(
        options.clone(),
        Interest::parse_all(["crash-*"]).map_err(|e| format!("{e:?}"))?,
    )
    .await
    .map_err(|e| e.to_string())?;
    let args: Vec<String> = [
        "herald",
        "register",
        "crash-herald",
        "10.239.0.1:9",
        "--lease",
        "1",
        "--directory",
        &directory.addr.to_string(),
        "--group",
        &directory.group.to_string(),
        "--interface",
        "10.239.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut registrant = Spawned::this_binary(&args).map_err(|e| e.to_string())?;
    wait_for_line(
        registrant.stdout().ok_or("stdout")?,
        "registered",
        Duration::from_secs(10),
    )?;
    if events::one(
        &mut watch,
        EventKind::Discovered,
        "crash-herald",
        REMOVE_LIMIT,
    )
    .await
    .is_none()
    {
        return Err("the crashing Herald registrant was never discovered".into());
    }
    let t0 = Instant::now();
    registrant.kill();
    Ok(events::one(
        &mut watch,
        EventKind::Unregistered,
        "crash-herald",
        REMOVE_LIMIT,
    )
    .await
    .map(|t| t - t0))
}

/// Calls `f` again while mdns-sd's command channel is full (`Error::Again`), up to 5 s.
fn retry<T>(mut f: impl FnMut() -> mdns_sd::Result<T>) -> Result<T, String> {
    let start = Instant::now();
    loop {
        match f() {
            Err(mdns_sd::Error::Again) if start.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(1));
            }
            other => return other.map_err(|e| e.to_string()),
        }
    }
}

/// An mdns-sd daemon on the namespace's interface only (IPv4).
fn daemon() -> Result<ServiceDaemon, String> {
    let d = ServiceDaemon::new().map_err(|e| e.to_string())?;
    d.disable_interface(IfKind::IPv6)
        .map_err(|e| e.to_string())?;
    Ok(d)
}

/// The service info of instance `instance` of `ty`.
fn info(ty: &str, instance: &str, port: u16) -> Result<ServiceInfo, String> {
    ServiceInfo::new(
        ty,
        instance,
        "hbench-host.local.",
        ADDRESS.to_string().as_str(),
        port,
        None::<std::collections::HashMap<String, String>>,
    )
    .map_err(|e| e.to_string())
}

/// mdns-sd: a browser sees `n` services registered with one publishing daemon; then one
/// is unregistered.
fn mdns_discover(n: usize) -> Result<(Option<Duration>, Option<Duration>), String> {
    let ty = format!("_hb{n}._udp.local.");
    let browser = daemon()?;
    let publisher = daemon()?;
    let events = retry(|| browser.browse(&ty))?;
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let mut fullnames = Vec::new();
    for i in 0..n {
        let service = info(&ty, &format!("svc-{i:04}"), 9000 + i as u16)?;
        fullnames.push(service.get_fullname().to_owned());
        retry(|| publisher.register(service.clone()))?;
    }
    let deadline = t0 + DISCOVER_LIMIT;
    let mut seen = HashSet::new();
    let mut last = t0;
    while seen.len() < n {
        match events.recv_deadline(deadline) {
            Ok(ServiceEvent::ServiceResolved(s)) => {
                if seen.insert(s.get_fullname().to_owned()) {
                    last = Instant::now();
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let discover = (seen.len() == n).then(|| last - t0);
    let mut remove = None;
    if n == 1 && discover.is_some() {
        let t0 = Instant::now();
        let _ = publisher
            .unregister(&fullnames[0])
            .map_err(|e| e.to_string())?;
        let deadline = t0 + REMOVE_LIMIT;
        while let Ok(e) = events.recv_deadline(deadline) {
            if let ServiceEvent::ServiceRemoved(_, name) = e {
                if name == fullnames[0] {
                    remove = Some(t0.elapsed());
                    break;
                }
            }
        }
    }
    let _ = publisher.shutdown();
    let _ = browser.shutdown();
    Ok((discover, remove))
}

/// mdns-sd: a publishing process (`herald-bench mdns-publish`) is killed; time until
/// the browser's `ServiceRemoved`, within the bound.
fn mdns_crash() -> Result<Option<Duration>, String> {
    let ty = "_hbcrash._udp.local.";
    let browser = daemon()?;
    let events = retry(|| browser.browse(ty))?;
    let mut publisher =
        Spawned::this_binary(&["mdns-publish".into(), ty.into(), "crash-mdns".into()])
            .map_err(|e| e.to_string())?;
    wait_for_line(
        publisher.stdout().ok_or("stdout")?,
        "published",
        Duration::from_secs(10),
    )?;
    let deadline = Instant::now() + REMOVE_LIMIT;
    loop {
        match events.recv_deadline(deadline) {
            Ok(ServiceEvent::ServiceResolved(_)) => break,
            Ok(_) => {}
            Err(_) => return Err("the crashing mdns-sd publisher was never resolved".into()),
        }
    }
    let t0 = Instant::now();
    publisher.kill();
    let deadline = t0 + REMOVE_LIMIT;
    let mut noticed = None;
    while let Ok(e) = events.recv_deadline(deadline) {
        if let ServiceEvent::ServiceRemoved(..) = e {
            noticed = Some(t0.elapsed());
            break;
        }
    }
    let _ = browser.shutdown();
    Ok(noticed)
}

/// `herald-bench mdns-publish TYPE INSTANCE`: publishes one service, says so, and waits
/// (at most 60 s) to be killed.
pub fn publish(ty: &str, instance: &str) -> Result<(), String> {
    let d = daemon()?;
    d.register(info(ty, instance, 9999)?)
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(300));
    println!("published");
    std::thread::sleep(Duration::from_secs(60));
    Ok(())
}
