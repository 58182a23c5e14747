//! Crash removal: Herald by its lease, mdns-sd by its own record TTL.

use super::*;

/// Crash removal, in a pair of its own: Herald registrants (`herald register`, with a
/// 1 s lease and with the default lease) and an mdns-sd publisher process
/// (`herald-bench mdns-publish`) on side A are killed; time until the watcher and the
/// browser on side B notice, each bounded by its lease or TTL plus a margin.
pub(super) fn crash() -> Result<Value, String> {
    let pair = Pair::create()?;
    let directory = pair.a.run(|| {
        Directory::start(&DirectorySpec {
            ip: A_ADDR,
            ..DirectorySpec::default()
        })
    })?;
    let side_b = pair.b.run(crate::runtime)?;
    let options_b = client_options(&directory, B_ADDR);
    let mut watch = on(&side_b, async move {
        let interest = Interest::parse_all(["crash-*"]).map_err(|e| format!("{e:?}"))?;
        Watch::start(options_b, interest)
            .await
            .map_err(|e| e.to_string())
    })?;
    let lease = herald_server::cli::DEFAULT_LEASE_SECS;
    let mut registrants = Vec::new();
    for (name, lease) in [
        ("crash-short", Some(SHORT_LEASE_S)),
        ("crash-default", None),
    ] {
        let mut args: Vec<String> = [
            "herald",
            "register",
            name,
            &format!("{A_ADDR}:9"),
            "--directory",
            &directory.addr.to_string(),
            "--group",
            &directory.group.to_string(),
            "--interface",
            &A_ADDR.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(l) = lease {
            args.extend(["--lease".into(), l.to_string()]);
        }
        let mut r = pair
            .a
            .run(move || Spawned::this_binary(&args).map_err(|e| e.to_string()))?;
        wait_for_line(
            r.stdout().ok_or("stdout")?,
            "registered",
            Duration::from_secs(10),
        )?;
        registrants.push((name, r));
    }
    let ty = "_hbcrash._udp.local.";
    let probe = info(ty, "crash-mdns", 9999)?;
    let (host_ttl, other_ttl) = (probe.get_host_ttl(), probe.get_other_ttl());
    let browser = pair.b.run(daemon)?;
    let events = browse(&browser, ty, CAPTURE_LIMIT)?;
    let mut publisher = pair.a.run(|| {
        Spawned::this_binary(&["mdns-publish".into(), ty.into(), "crash-mdns".into()])
            .map_err(|e| e.to_string())
    })?;
    wait_for_line(
        publisher.stdout().ok_or("stdout")?,
        "published",
        Duration::from_secs(10),
    )?;
    let deadline = Instant::now() + DISCOVER_LIMIT;
    loop {
        match next(&events, deadline) {
            Some(Seen::Resolved(..)) => break,
            Some(_) => {}
            None => return Err("the crashing mdns-sd publisher was never resolved".into()),
        }
    }
    let mut watch = on(&side_b, async move {
        for name in ["crash-short", "crash-default"] {
            if events::one(&mut watch, EventKind::Discovered, name, DISCOVER_LIMIT)
                .await
                .is_none()
            {
                return Err(format!("{name} was never discovered"));
            }
        }
        Ok(watch)
    })?;
    let t0 = Instant::now();
    for (_, r) in &mut registrants {
        r.kill();
    }
    publisher.kill();
    let mdns_bound = Duration::from_secs(u64::from(host_ttl)) + CRASH_MARGIN;
    let mdns = std::thread::spawn(move || {
        while let Some(e) = next(&events, t0 + mdns_bound) {
            if let Seen::Removed(_, at) = e {
                return Some(at - t0);
            }
        }
        None
    });
    let short_bound = Duration::from_secs(SHORT_LEASE_S) * 2 + CRASH_MARGIN;
    let bound = Duration::from_secs_f64(lease * 2.0) + CRASH_MARGIN;
    let (short, default) = on(&side_b, async move {
        let mut seen: HashMap<String, Duration> = HashMap::new();
        let deadline = tokio::time::Instant::from_std(t0 + bound);
        while seen.len() < 2 {
            use tokio_stream::StreamExt;
            match tokio::time::timeout_at(deadline, watch.next()).await {
                Ok(Some(e)) if e.kind == EventKind::Unregistered => {
                    seen.entry(e.service.name).or_insert_with(|| t0.elapsed());
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        let short = seen
            .get("crash-short")
            .copied()
            .filter(|d| *d <= short_bound);
        Ok((short, seen.get("crash-default").copied()))
    })?;
    let mdns = mdns.join().map_err(|_| "mdns crash waiter panicked")?;
    let _ = browser.shutdown();
    Ok(json!({
        "herald_short_lease_s": SHORT_LEASE_S, "herald_short_bound_s": short_bound.as_secs(),
        "herald_short_ms": short.map(ms),
        "herald_lease_s": lease, "herald_bound_s": bound.as_secs(), "herald_ms": default.map(ms),
        "mdns_host_ttl_s": host_ttl, "mdns_other_ttl_s": other_ttl,
        "mdns_bound_s": mdns_bound.as_secs(), "mdns_ms": mdns.map(ms),
    }))
}
