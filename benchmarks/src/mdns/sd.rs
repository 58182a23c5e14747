//! The mdns-sd side: daemons, service infos, a browse that survives a full channel,
//! and the publishing process of the crash measurement.

use super::*;

/// A browse event, stamped when the forwarding thread received it.
pub(super) enum Seen {
    Resolved(String, Instant),
    Removed(String, Instant),
    /// mdns-sd ended the browse (its event channel was full); browsed again.
    Closed(Instant),
}

/// Forwards `ty`'s browse events from `daemon` to an unbounded channel on a thread of its
/// own (for at most `limit`). mdns-sd ends a browse whose bounded event channel (1,000
/// events) is full when it pushes an event; the thread then says so ([`Seen::Closed`])
/// and browses again, as an application would, up to [`REBROWSE`] times.
pub(super) fn browse(
    daemon: &ServiceDaemon,
    ty: &str,
    limit: Duration,
) -> Result<std::sync::mpsc::Receiver<Seen>, String> {
    let mut events = retry(|| daemon.browse(ty))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let deadline = Instant::now() + limit;
    let (daemon, ty) = (daemon.clone(), ty.to_owned());
    let mut again = 0;
    std::thread::spawn(move || loop {
        while let Ok(e) = events.recv_deadline(deadline) {
            let seen = match e {
                ServiceEvent::ServiceResolved(s) => Seen::Resolved(s.fullname, Instant::now()),
                ServiceEvent::ServiceRemoved(_, name) => Seen::Removed(name, Instant::now()),
                _ => continue,
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
        if Instant::now() >= deadline
            || tx.send(Seen::Closed(Instant::now())).is_err()
            || again == REBROWSE
        {
            return;
        }
        again += 1;
        match retry(|| daemon.browse(&ty)) {
            Ok(e) => events = e,
            Err(_) => return,
        }
    });
    Ok(rx)
}

/// The next forwarded event before `deadline`.
pub(super) fn next(rx: &std::sync::mpsc::Receiver<Seen>, deadline: Instant) -> Option<Seen> {
    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .ok()
}

/// Calls `f` again while mdns-sd's command channel is full (`Error::Again`), up to 5 s.
pub(super) fn retry<T>(mut f: impl FnMut() -> mdns_sd::Result<T>) -> Result<T, String> {
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

/// An mdns-sd daemon on this namespace's IPv4 interfaces (create it on a thread
/// inside the namespace).
pub(super) fn daemon() -> Result<ServiceDaemon, String> {
    let d = ServiceDaemon::new().map_err(|e| e.to_string())?;
    d.disable_interface(IfKind::IPv6)
        .map_err(|e| e.to_string())?;
    Ok(d)
}

/// The service info of instance `instance` of `ty`, on side A, default TTLs.
pub(super) fn info(ty: &str, instance: &str, port: u16) -> Result<ServiceInfo, String> {
    ServiceInfo::new(
        ty,
        instance,
        "hbench-host.local.",
        A_ADDR.to_string().as_str(),
        port,
        None::<HashMap<String, String>>,
    )
    .map_err(|e| e.to_string())
}

/// `herald-bench mdns-publish TYPE INSTANCE`: publishes one service, says so, and waits
/// (at most [`PUBLISH_LIMIT`]) to be killed.
pub fn publish(ty: &str, instance: &str) -> Result<(), String> {
    let d = daemon()?;
    d.register(info(ty, instance, 9999)?)
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(300));
    println!("published");
    std::thread::sleep(PUBLISH_LIMIT);
    Ok(())
}
