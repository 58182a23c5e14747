//! The embedded client on a host: embassy-net on a Linux TAP device, the same driver a
//! microcontroller runs. `tests/tap.rs` runs it inside a network namespace it creates,
//! against a real `herald serve`; it only talks to addresses of that namespace.
//!
//! ```text
//! tap_node --tap tap0 --address 192.168.69.1/24 --directory 192.168.69.100:37399 \
//!          --register embedded-node=192.168.69.1:7000 [--release-after NAME] [--seconds 60]
//! ```
//!
//! Prints one line per client event (`registered NAME`, `discovered NAME ADDR…`,
//! `unregistered NAME`, `released NAME confirmed|unconfirmed`, …) and `ready` once it
//! is up. With `--release-after NAME` it unregisters its own service when NAME goes away,
//! and exits once that is done; otherwise it exits after `--seconds`.

use core::net::{Ipv4Addr, SocketAddr};
use embassy_executor::Spawner;
use embassy_net::{Ipv4Cidr, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use embassy_time::{with_deadline, Duration, Instant};
use herald_embedded::embassy::{Resources, Runner};
use herald_embedded::{ClientEvent, Config, Interest, Location, Registration, ServiceName};
use static_cell::StaticCell;

/// Services this node registers itself.
const REGISTRATIONS: usize = 2;

/// What the command line asks for.
struct Args {
    tap: String,
    address: Ipv4Cidr,
    directory: Location,
    register: (ServiceName, Location),
    release_after: Option<String>,
    seconds: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut tap = "tap0".to_string();
    let mut address = None;
    let mut directory = None;
    let mut register = None;
    let mut release_after = None;
    let mut seconds = 60;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--tap" => tap = value,
            "--address" => {
                let (ip, prefix) = value.split_once('/').ok_or("--address wants IP/PREFIX")?;
                let ip: Ipv4Addr = ip.parse().map_err(|e| format!("--address: {e}"))?;
                let prefix: u8 = prefix.parse().map_err(|e| format!("--address: {e}"))?;
                address = Some(Ipv4Cidr::new(ip, prefix));
            }
            "--directory" => directory = Some(location(&value)?),
            "--register" => {
                let (name, at) = value
                    .split_once('=')
                    .ok_or("--register wants NAME=IP:PORT")?;
                let name = ServiceName::new(name).map_err(|e| format!("--register: {e}"))?;
                register = Some((name, location(at)?));
            }
            "--release-after" => release_after = Some(value),
            "--seconds" => seconds = value.parse().map_err(|e| format!("--seconds: {e}"))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(Args {
        tap,
        address: address.ok_or("--address is required")?,
        directory: directory.ok_or("--directory is required")?,
        register: register.ok_or("--register is required")?,
        release_after,
        seconds,
    })
}

fn location(text: &str) -> Result<Location, String> {
    let addr: SocketAddr = text.parse().map_err(|e| format!("{text}: {e}"))?;
    Location::try_from(addr).map_err(|e| format!("{text}: {e}"))
}

fn locations(service: &herald_embedded::Service) -> String {
    let all: Vec<String> = service
        .registration
        .locations
        .iter()
        .map(|l| l.to_string())
        .collect();
    all.join(",")
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn herald_task(mut runner: Runner<'static, REGISTRATIONS>) -> ! {
    runner.run().await
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("tap_node: {e}");
            std::process::exit(2);
        }
    };
    let device = match TunTapDevice::new(&args.tap) {
        Ok(device) => device,
        Err(e) => {
            eprintln!("tap_node: cannot open {}: {e}", args.tap);
            std::process::exit(2);
        }
    };
    let net_config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: args.address,
        dns_servers: Default::default(),
        gateway: None,
    });
    static STACK: StaticCell<StackResources<3>> = StaticCell::new();
    let seed = u64::from(std::process::id()) << 16 ^ 0x4e52_414c_4448;
    let (stack, runner) =
        embassy_net::new(device, net_config, STACK.init(StackResources::new()), seed);
    spawner.spawn(net_task(runner).unwrap());
    stack.wait_config_up().await;

    let mut config = Config::new(seed);
    config.client.interest = Some(Interest::all());
    let _ = config.client.directories.push(args.directory);
    static HERALD: StaticCell<Resources<'static, 16, REGISTRATIONS>> = StaticCell::new();
    let (herald, runner) =
        match herald_embedded::embassy::new(stack, config, HERALD.init(Resources::new())) {
            Ok(pair) => pair,
            Err(e) => {
                eprintln!("tap_node: {e}");
                std::process::exit(2);
            }
        };
    spawner.spawn(herald_task(runner).unwrap());

    let (own, at) = args.register;
    let registration = Registration::new(own.clone(), &[at]).expect("one location");
    herald
        .register(registration)
        .expect("room for one registration");
    println!("ready");

    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    while let Ok(event) = with_deadline(deadline, herald.next_event()).await {
        match event {
            ClientEvent::Registered { name, lease, .. } => {
                println!("registered {name} {}", lease.as_millis())
            }
            ClientEvent::Discovered(s) => println!("discovered {} {}", s.name(), locations(&s)),
            ClientEvent::Changed(s) => println!("changed {} {}", s.name(), locations(&s)),
            ClientEvent::Unregistered(s) => {
                println!("unregistered {}", s.name());
                if args.release_after.as_deref() == Some(s.name().as_str()) {
                    herald.unregister(&own).expect("registered");
                }
            }
            ClientEvent::Evicted(s) => println!("evicted {}", s.name()),
            ClientEvent::Released { name, confirmed } => {
                let how = if confirmed {
                    "confirmed"
                } else {
                    "unconfirmed"
                };
                println!("released {name} {how}");
                if name == own {
                    std::process::exit(0);
                }
            }
            ClientEvent::Rejected { name, reason, .. } => println!("rejected {name:?} {reason:?}"),
            ClientEvent::Unreachable => println!("unreachable"),
            ClientEvent::DirectoryChanged(d) => println!("directory {d}"),
            ClientEvent::SnapshotComplete { services } => println!("snapshot {services}"),
        }
    }
    println!("timeout");
    std::process::exit(1);
}
