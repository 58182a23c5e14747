//! The default registrant id of `herald register` / `herald unregister` is a secret kept
//! in the client's state directory: a restarted registrant with the same state takes its
//! name back, and an id computed from the host and service names (as it used to be
//! derived) is refused.

mod common;

use common::*;
use std::time::Duration;

/// `herald ARGS… <net>` with `XDG_STATE_HOME=state`; (exit status, stderr).
fn herald_with_state(net: &Net, state: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(net.client_args());
    let state = state.display().to_string();
    let mut p = Proc::spawn("herald", &all, &[("XDG_STATE_HOME", state.as_str())]);
    let code = p.wait(Duration::from_secs(15));
    (code, p.stderr())
}

/// What the CLI used to use: FNV-1a over the host name, a NUL byte and the service name.
fn computed_id(service: &str) -> u64 {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    let bytes = host.bytes().chain([0]).chain(service.bytes());
    bytes.fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[test]
fn a_computed_registrant_id_cannot_unregister_and_the_owner_can() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let _dir = directory(&net, data.path(), &[]);
    let owner = tempfile::tempdir().unwrap();
    let (code, err) = herald_with_state(
        &net,
        owner.path(),
        &[
            "register",
            "payroll",
            "127.0.0.1:7301",
            "--once",
            "--lease",
            "60",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let secret = owner.path().join("herald/registrants");
    let files: Vec<_> = std::fs::read_dir(&secret).unwrap().collect();
    assert_eq!(files.len(), 1, "one secret kept in {secret:?}");

    // Someone else, on another machine, computes the old id.
    let stranger = tempfile::tempdir().unwrap();
    let id = computed_id("payroll").to_string();
    let (code, err) = herald_with_state(
        &net,
        stranger.path(),
        &["unregister", "payroll", "--registrant", &id],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("name_held"), "{err}");
    assert!(ok(&net, &["list"]).contains("payroll"), "still registered");

    // The owner, restarted with the same state directory, takes its name back.
    let (code, err) = herald_with_state(&net, owner.path(), &["unregister", "payroll"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!ok(&net, &["list"]).contains("payroll"));
}
