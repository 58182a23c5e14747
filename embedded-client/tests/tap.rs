//! The embedded client for real: `examples/tap_node.rs` (embassy-net on a TAP device)
//! against a real `herald serve`, `herald watch`, `herald list`, `herald register` and
//! `herald unregister`, all inside a network namespace this test creates and deletes
//! (also on failure). Every address is in that namespace; nothing leaves it.
//!
//! Needs root and /dev/net/tun (it is skipped, saying why, without them), `ip` from
//! iproute2, and the `herald` and `tap_node` binaries next to this test (as `cargo test`
//! builds them), or at the paths in `HERALD_BIN` and `HERALD_TAP_NODE`.

mod namespace;

use namespace::{binary, missing_privilege, run, Namespace, Process, DIRECTORY, HOST_ADDRESS};

const NODE_ADDRESS: &str = "192.168.69.1/24";

#[test]
fn embedded_client_meets_the_std_server_through_a_tap_device() {
    if let Some(reason) = missing_privilege() {
        println!("skipping the TAP test: {reason}");
        return;
    }
    let herald = binary("HERALD_BIN", "herald");
    let node_bin = binary("HERALD_TAP_NODE", "examples/tap_node");
    let id = std::process::id();
    let work = std::env::temp_dir().join(format!("herald-tap-{id}"));
    std::fs::create_dir_all(&work).unwrap();
    let ns = Namespace::create(format!("herald-tap-{id}"));

    // The embedded node first: the TAP device has a carrier once it is open.
    let mut node_command = ns.command(&node_bin);
    node_command.args([
        "--tap",
        "tap0",
        "--address",
        NODE_ADDRESS,
        "--directory",
        DIRECTORY,
        "--register",
        "embedded-node=192.168.69.1:7000",
        "--release-after",
        "std-service",
        "--seconds",
        "90",
    ]);
    let mut node = Process::spawn("tap_node", node_command, &work);
    node.expect("ready", |l| l == "ready");

    let on_tap = ["--directory", DIRECTORY, "--interface", HOST_ADDRESS];
    let _server = ns.serve(ns.command(&herald), &work);

    // The node registers; a std watcher discovers it on the group.
    node.expect("registration", |l| {
        l.starts_with("registered embedded-node")
    });
    let mut watch_command = ns.command(&herald);
    watch_command.args(["watch", "--json"]).args(on_tap);
    let mut watch = Process::spawn("herald watch", watch_command, &work);
    watch.expect("embedded-node discovered", |l| {
        l.contains("\"discovered\"")
            && l.contains("\"embedded-node\"")
            && l.contains("192.168.69.1:7000")
    });
    let list = run(ns.command(&herald).args(["list", "--json"]).args(on_tap));
    assert!(list.contains("embedded-node"), "herald list: {list}");

    // The std CLI registers a service; the node discovers it, then sees it go.
    run(ns
        .command(&herald)
        .args(["register", "std-service", "192.168.69.100:8080", "--once"])
        .args(on_tap));
    node.expect("std-service discovered", |l| {
        l == "discovered std-service 192.168.69.100:8080"
    });
    run(ns
        .command(&herald)
        .args(["unregister", "std-service"])
        .args(on_tap));
    node.expect("std-service unregistered", |l| {
        l == "unregistered std-service"
    });

    // Then the node unregisters its own service, and the watcher sees it go.
    node.expect("its own release", |l| {
        l == "released embedded-node confirmed"
    });
    watch.expect("embedded-node unregistered", |l| {
        l.contains("\"unregistered\"") && l.contains("\"embedded-node\"")
    });
    let status = node.child.wait().unwrap();
    assert!(status.success(), "tap_node exited with {status}");

    drop(ns);
    let _ = std::fs::remove_dir_all(&work);
}
