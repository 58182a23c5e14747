//! Settings through the real binary: flags over HERALD_* variables over the config
//! file, help that states the defaults, and shell completions.

mod common;

use common::*;
use std::time::Duration;

fn stdout_of(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().expect("run herald");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn flags_win_over_variables_and_variables_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(
        &file,
        "environment = \"file\"\nnotifications = 5\ninterval_ms = 20\ncapacity = 64\n",
    )
    .unwrap();
    let text = stdout_of(
        herald()
            .args(["serve", "--print-config", "--environment", "flag"])
            .arg("--config")
            .arg(&file)
            .env("HERALD_ENVIRONMENT", "variable")
            .env("HERALD_NOTIFICATIONS", "7"),
    );
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(has("environment = \"flag\""), "{text}");
    assert!(has("notifications = 7"), "{text}");
    assert!(has("interval_ms = 20"), "{text}");
    assert!(has("capacity = 64"), "{text}");
    assert!(has("bind = \"127.0.0.1:37399\""), "{text}");
    // The printed settings are themselves a valid config file.
    std::fs::write(&file, &text).unwrap();
    let again = stdout_of(
        herald()
            .args(["serve", "--print-config"])
            .arg("--config")
            .arg(&file),
    );
    assert_eq!(again, text);
}

#[test]
fn the_sample_config_file_holds_the_defaults() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/herald.toml");
    let with_sample = stdout_of(
        herald()
            .args(["serve", "--print-config", "--config", sample])
            .env("HERALD_DATA_DIR", "/x"),
    );
    let without = stdout_of(
        herald()
            .args(["serve", "--print-config"])
            .env("HERALD_DATA_DIR", "/x"),
    );
    assert_eq!(with_sample, without);
}

#[test]
fn a_config_file_names_scope_ids_and_interfaces_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(
        &file,
        "bind = \"[fe80::1%lo]:37399\"\ngroup = \"[ff02::3737]:37371\"\ninterface = \"lo\"\n",
    )
    .unwrap();
    let text = stdout_of(
        herald()
            .args(["serve", "--print-config"])
            .arg("--config")
            .arg(&file),
    );
    let lo = herald_server::interfaces::index("lo").unwrap();
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(has(&format!("bind = \"[fe80::1%{lo}]:37399\"")), "{text}");
    assert!(has(&format!("interface = \"{lo}\"")), "{text}");
    // A scope id that names no interface is refused with the reason.
    std::fs::write(&file, "bind = \"[fe80::1%no-such-if]:37399\"\n").unwrap();
    let out = herald()
        .args(["serve", "--print-config"])
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("names no interface"), "{err}");
}

#[test]
fn a_bad_config_file_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, "intreval_ms = 20\n").unwrap();
    let out = herald()
        .args(["serve", "--print-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("intreval_ms"), "{err}");
    let out = herald()
        .args(["serve", "--bind", "0.0.0.0:37399", "--print-config"])
        .output()
        .unwrap();
    assert!(out.status.success(), "printing needs no advertise address");
    let out = run(
        &["serve".into(), "--bind".into(), "0.0.0.0:1".into()],
        Duration::from_secs(10),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--advertise"), "{err}");
}

#[test]
fn help_documents_every_default_and_completions_are_printed() {
    let help = stdout_of(herald().args(["serve", "--help"]));
    for default in [
        "[default: 127.0.0.1:37399]",
        "[default: 237.37.37.1:37371]",
        "[default: 50]",
        "[default: 20]",
        "[default: 1400]",
        "[default: 15]",
        "[default: 300]",
        "[default: 16384]",
        "$XDG_STATE_HOME/herald",
    ] {
        assert!(help.contains(default), "{default} missing from\n{help}");
    }
    let help = stdout_of(herald().args(["register", "--help"]));
    assert!(
        help.contains("--once") && help.contains("[default: 3]"),
        "{help}"
    );
    let script = stdout_of(herald().args(["completions", "bash"]));
    assert!(
        script.contains("herald") && script.contains("register"),
        "{script}"
    );
}

/// The three-node sample of docs/CLUSTER.md: each file is valid, and they differ only in
/// the node's own address.
#[test]
fn the_cluster_sample_files_differ_only_in_the_node_address() {
    let mut printed = Vec::new();
    for (node, ip) in [("a", "10.0.0.11"), ("b", "10.0.0.12"), ("c", "10.0.0.13")] {
        let file = format!(
            "{}/deploy/cluster/herald-{node}.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        let out = herald()
            .args(["serve", "--print-config", "--config", &file])
            .env("HERALD_DATA_DIR", "/x")
            .output()
            .expect("run herald");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(&format!("bind = \"{ip}:37399\"")), "{text}");
        // Only this node's address, in bind and interface; the etcd endpoints name all.
        let own = text.replace(&format!("\"{ip}:37399\""), "\"NODE:37399\"");
        let own = own.replace(&format!("interface = \"{ip}\""), "interface = \"NODE\"");
        printed.push(own);
    }
    printed.dedup();
    assert!(printed.len() <= 1, "{printed:#?}");
}

/// A herald built without etcd support refuses an etcd store and says how to get one.
#[cfg(not(feature = "etcd"))]
#[test]
fn an_etcd_store_without_etcd_support_is_refused_with_advice() {
    let out = herald()
        .args(["serve", "--store", "etcd://127.0.0.1:1"])
        .env("HERALD_DATA_DIR", "/nonexistent")
        .output()
        .expect("run herald");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--features etcd"), "{err}");
}
