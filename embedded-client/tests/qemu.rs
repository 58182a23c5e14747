//! The firmware on an emulated board: `firmware/qemu-mps2` (both shells, bare smoltcp
//! and embassy-net, on QEMU's `mps2-an386`, Cortex-M4 with an SMSC LAN9118) against a
//! real `herald serve`, `herald list`, `herald register` and `herald unregister`, inside
//! a network namespace this test creates and deletes (also on failure). QEMU's LAN9118
//! is attached to the namespace's TAP device; nothing leaves the namespace. One run drops
//! 25 % of the frames each way on the TAP device (an nftables netdev table: `numgen
//! random`; this kernel has no netem) and prints how many it dropped. Another runs in an
//! authenticated environment: the board reads the environment and key from a
//! provisioning page QEMU loads before boot, the `herald` commands from a key file.
//! Another drops every IPv4 multicast frame to the board (an nftables netdev egress
//! rule, its counter printed): the board hears no announcement and no beacon, subscribes
//! to unicast deliveries by itself (`Subscribe::WithoutBeacons`) and sees every change.
//!
//! Needs root, /dev/net/tun and `qemu-system-arm` (skipped, saying why, without them),
//! `ip` from iproute2, `nft` from nftables for the lossy run, the `herald` binary next to
//! this test (or `HERALD_BIN`), and the `thumbv7em-none-eabihf` target: the test builds
//! the firmware itself (`firmware/qemu-mps2`, `cargo build --release`) unless its ELFs
//! are given in `HERALD_QEMU_FIRMWARE_DIR`. Prints the emulated figures: boot to registered, and a
//! registration on the host to the board's event.

mod namespace;

use namespace::{binary, missing_privilege, run, Namespace, Process, DIRECTORY, HOST_ADDRESS};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The firmware's shells.
#[derive(Clone, Copy)]
enum Shell {
    /// `herald-qemu-bare`: the bare smoltcp poll loop.
    Bare,
    /// `herald-qemu-embassy`: embassy-net.
    Embassy,
}

impl Shell {
    fn name(self) -> &'static str {
        match self {
            Shell::Bare => "bare",
            Shell::Embassy => "embassy",
        }
    }
}

/// The ELF of a shell, in `HERALD_QEMU_FIRMWARE_DIR`, or built here (once per run; cargo
/// makes it a no-op when it is up to date) so that `cargo test --workspace` alone runs it.
fn firmware(shell: Shell) -> PathBuf {
    let dir = match std::env::var_os("HERALD_QEMU_FIRMWARE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => build_firmware().clone(),
    };
    let path = dir.join(format!("herald-qemu-{}", shell.name()));
    assert!(
        path.exists(),
        "{} is missing: build it first (cd embedded-client/firmware/qemu-mps2 && cargo build \
         --release) or set HERALD_QEMU_FIRMWARE_DIR",
        path.display()
    );
    path
}

/// Builds `firmware/qemu-mps2` (its own workspace) for the board; where its ELFs are.
fn build_firmware() -> &'static PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("firmware/qemu-mps2");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release"])
            .current_dir(&crate_dir)
            // Its own workspace and target directory, whatever this test was built with.
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("run cargo to build the QEMU firmware");
        assert!(
            status.success(),
            "building {} failed ({status})",
            crate_dir.display()
        );
        crate_dir.join("target/thumbv7em-none-eabihf/release")
    })
}

/// Why this test cannot run here, if it cannot.
fn missing() -> Option<&'static str> {
    if let Some(reason) = missing_privilege() {
        return Some(reason);
    }
    match Command::new("qemu-system-arm").arg("--version").output() {
        Ok(output) if output.status.success() => None,
        _ => Some("no qemu-system-arm (apt-get install qemu-system-arm)"),
    }
}

/// What the link and the environment of one run are like.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    /// A clean link, no authentication.
    Clean,
    /// One frame in four dropped each way.
    Lossy,
    /// An authenticated environment.
    Authenticated,
    /// Nothing sent to an IPv4 multicast address reaches the board.
    WithoutMulticast,
}

impl Run {
    fn name(self) -> &'static str {
        match self {
            Run::Clean => "clean",
            Run::Lossy => "lossy",
            Run::Authenticated => "authenticated",
            Run::WithoutMulticast => "unicast",
        }
    }
}

/// Applies nftables `rules` (a netdev table on the namespace's `tap0`) in `ns`.
fn filter(ns: &Namespace, work: &std::path::Path, rules: &str) {
    let file = work.join("filter.nft");
    std::fs::write(&file, rules).unwrap();
    run(ns.command("nft").arg("-f").arg(&file));
}

/// The board registers, is listed, discovers a service the CLI registers, sees it
/// unregistered, and then unregisters its own service (its script: `std-service`
/// going away is the command to leave), which QEMU's exit status confirms.
fn board_meets_the_server(shell: Shell, how: Run) {
    let label = format!("{}-{}", shell.name(), how.name());
    let filtered = matches!(how, Run::Lossy | Run::WithoutMulticast);
    let nft = filtered && Command::new("nft").arg("--version").output().is_err();
    if let Some(reason) = missing().or(nft.then_some("no nft (apt-get install nftables)")) {
        println!("skipping the QEMU test ({label}): {reason}");
        return;
    }
    let herald = binary("HERALD_BIN", "herald");
    let elf = firmware(shell);
    let name = format!("herald-qemu-{label}-{}", std::process::id());
    let work = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&work).unwrap();
    let ns = Namespace::create(name);
    match how {
        // One frame in four dropped, to the board (egress) and from it (ingress).
        Run::Lossy => filter(
            &ns,
            &work,
            "table netdev filter {\n\
             chain to_board { type filter hook egress device \"tap0\" priority 0; \
             numgen random mod 4 0 counter drop; }\n\
             chain from_board { type filter hook ingress device \"tap0\" priority 0; \
             numgen random mod 4 0 counter drop; }\n}\n",
        ),
        // No IPv4 multicast to the board: no announcement, no beacon.
        Run::WithoutMulticast => filter(
            &ns,
            &work,
            "table netdev filter {\n\
             chain to_board { type filter hook egress device \"tap0\" priority 0; \
             meta protocol ip ip daddr 224.0.0.0/4 counter drop; }\n}\n",
        ),
        Run::Clean | Run::Authenticated => {}
    }
    let authenticated = how == Run::Authenticated;

    // Every `herald` command reads the environment and key file from these variables.
    let mut environment: Vec<(&str, PathBuf)> = Vec::new();
    let mut provisioning = Vec::new();
    if authenticated {
        let key: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let key_file = work.join("herald.key");
        std::fs::write(&key_file, format!("id = 3\nkey = {hex}\n")).unwrap();
        std::fs::set_permissions(
            &key_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        environment.push(("HERALD_ENVIRONMENT", "qemu-lab".into()));
        environment.push(("HERALD_KEY_FILE", key_file));
        // The board's provisioning page (firmware/qemu-mps2/src/provisioning.rs).
        let mut page = b"HKY1".to_vec();
        page.extend([3, 32, 8, 0]);
        page.extend(&key);
        page.resize(72, 0);
        page.extend(b"qemu-lab");
        page.resize(88, 0);
        let page_file = work.join("provisioning.bin");
        std::fs::write(&page_file, page).unwrap();
        provisioning.push("-device".to_string());
        provisioning.push(format!(
            "loader,file={},addr=0x003ff000",
            page_file.display()
        ));
    }
    let herald_command = |ns: &Namespace| {
        let mut command = ns.command(&herald);
        command.envs(environment.iter().map(|(k, v)| (k, v)));
        command
    };

    let _server = ns.serve(herald_command(&ns), &work);

    let mut qemu = ns.command("qemu-system-arm");
    qemu.args([
        "-M",
        "mps2-an386",
        "-display",
        "none",
        "-serial",
        "null",
        "-monitor",
        "null",
        "-nic",
        "tap,ifname=tap0,script=no,downscript=no,model=lan9118",
        "-chardev",
        "stdio,id=out",
        "-semihosting-config",
        "enable=on,target=native,chardev=out",
        "-kernel",
    ]);
    qemu.arg(&elf).args(&provisioning);
    let mut board = Process::spawn("qemu", qemu, &work);
    if authenticated {
        board.expect("the environment", |l| {
            l == "environment qemu-lab (authenticated)"
        });
    }
    board.expect("ready", |l| l == "ready");
    let registered = board.expect("registration", |l| {
        l.starts_with("registered embedded-node ")
    });
    let boot_ms = registered.rsplit(' ').next().unwrap_or("?");

    let on_tap = ["--directory", DIRECTORY, "--interface", HOST_ADDRESS];
    let list = run(herald_command(&ns).args(["list", "--json"]).args(on_tap));
    assert!(list.contains("embedded-node"), "herald list: {list}");

    let started = Instant::now();
    run(herald_command(&ns)
        .args(["register", "std-service", "192.168.69.100:8080", "--once"])
        .args(on_tap));
    let acknowledged = started.elapsed();
    board.expect("std-service discovered", |l| {
        l == "discovered std-service 192.168.69.100:8080"
    });
    let to_event = started.elapsed();
    run(herald_command(&ns)
        .args(["unregister", "std-service"])
        .args(on_tap));
    board.expect("std-service unregistered", |l| {
        l == "unregistered std-service"
    });
    board.expect("its own release", |l| {
        l == "released embedded-node confirmed"
    });
    let status = board.child.wait().unwrap();
    assert!(status.success(), "the firmware ended with {status}");
    let list = run(herald_command(&ns).args(["list", "--json"]).args(on_tap));
    assert!(!list.contains("embedded-node"), "herald list: {list}");
    if filtered {
        // How many frames the link dropped (`counter … drop` lines), to see it did.
        let rules = run(ns
            .command("nft")
            .args(["list", "table", "netdev", "filter"]));
        let dropped: Vec<&str> = rules
            .lines()
            .filter(|l| l.contains("drop"))
            .map(str::trim)
            .collect();
        println!("filtered link ({label}): {dropped:?}");
        if how == Run::WithoutMulticast {
            assert!(
                !dropped.iter().any(|l| l.contains("packets 0 ")),
                "no multicast reached the link, so none was dropped: {dropped:?}"
            );
        }
    }
    println!(
        "emulated figures ({label}): boot to registered {boot_ms} ms; `herald register` \
         started to its exit (the directory's acknowledgement) {} ms, to the board's discovery \
         {} ms",
        acknowledged.as_millis(),
        to_event.as_millis()
    );

    drop(ns);
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn bare_board_meets_the_std_server() {
    board_meets_the_server(Shell::Bare, Run::Clean);
}

#[test]
fn bare_board_meets_the_std_server_through_packet_loss() {
    board_meets_the_server(Shell::Bare, Run::Lossy);
}

#[test]
fn bare_board_meets_the_std_server_in_an_authenticated_environment() {
    board_meets_the_server(Shell::Bare, Run::Authenticated);
}

#[test]
fn bare_board_meets_the_std_server_without_multicast() {
    board_meets_the_server(Shell::Bare, Run::WithoutMulticast);
}

#[test]
fn embassy_board_meets_the_std_server() {
    board_meets_the_server(Shell::Embassy, Run::Clean);
}

#[test]
fn embassy_board_meets_the_std_server_through_packet_loss() {
    board_meets_the_server(Shell::Embassy, Run::Lossy);
}

#[test]
fn embassy_board_meets_the_std_server_in_an_authenticated_environment() {
    board_meets_the_server(Shell::Embassy, Run::Authenticated);
}

#[test]
fn embassy_board_meets_the_std_server_without_multicast() {
    board_meets_the_server(Shell::Embassy, Run::WithoutMulticast);
}
