//! Exit statuses of `herald serve` that a service manager acts on: 2 for a setting that
//! cannot work, 3 for a data directory that cannot be used (systemd does not restart
//! either), each with a message that names the problem. Every run is bounded.

mod common;

use common::*;
use std::time::Duration;

/// Runs `herald serve` on a fresh network with `data` and `extra`; (status, stderr).
fn serve(data: &std::path::Path, extra: &[&str]) -> (Option<i32>, String) {
    let net = Net::new();
    let out = run(&serve_args(&net, data, extra), Duration::from_secs(10));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_empty_registry_file_is_refused_and_left_alone() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("registry.redb");
    std::fs::write(&file, b"").unwrap();
    let (code, err) = serve(data.path(), &[]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("empty"), "{err}");
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        0,
        "the file was written"
    );
}

#[test]
fn an_unusable_data_directory_exits_3() {
    // registry.redb is a directory.
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir(data.path().join("registry.redb")).unwrap();
    let (code, err) = serve(data.path(), &[]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
    // The data directory is a file.
    let file = data.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    let (code, err) = serve(&file, &[]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("cannot use data directory"), "{err}");
}

#[test]
fn a_capacity_beyond_memory_is_refused_with_the_figure() {
    let data = tempfile::tempdir().unwrap();
    let (code, err) = serve(data.path(), &["--capacity", "4294967295"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("GB of memory"), "{err}");
    assert!(!data.path().join("registry.redb").exists());
}

#[test]
fn a_key_file_that_is_a_fifo_is_refused_at_once() {
    let data = tempfile::tempdir().unwrap();
    let fifo = data.path().join("key");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        eprintln!("skipped: mkfifo is not available");
        return;
    }
    let key = fifo.display().to_string();
    let (code, err) = serve(data.path(), &["--key-file", &key]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn multicast_settings_that_cannot_work_are_configuration_errors() {
    let data = tempfile::tempdir().unwrap();
    let (code, err) = serve(data.path(), &["--ttl", "300"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("ttl") && err.contains("0 to 255"), "{err}");
    // 192.0.2.1 (TEST-NET-1) is no address of this host.
    let (code, err) = serve(data.path(), &["--interface", "192.0.2.1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not an address of this host"), "{err}");
}
