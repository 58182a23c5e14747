//! Herald on QEMU's `mps2-an386` (Cortex-M4, SMSC LAN9118 Ethernet), on a bare smoltcp
//! poll loop: the board is 192.168.69.1/24, registers `embedded-node` at
//! 192.168.69.1:7000 with the directory at 192.168.69.100:37399, and discovers every
//! service. Its script, the "command" it obeys: when the service `std-service` is
//! unregistered it unregisters its own service, and once the directory confirmed that
//! it ends the emulation with status 0 (status 1 after two minutes without).
//!
//! It prints one line per event over semihosting, as `examples/tap_node.rs` does
//! (`registered NAME LEASE_MS at BOOT_MS`, `discovered NAME ADDR…`, `unregistered NAME`,
//! `released NAME confirmed|unconfirmed`), and `ready` once the network is up.
//! `embedded-client/tests/qemu.rs` runs it against a real `herald serve`. The host may
//! provision an authenticated environment before boot (see `provisioning`).
#![no_std]
#![no_main]

#[macro_use]
mod semihosting;
mod clock;
mod lan9118;
mod provisioning;

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use cortex_m_rt::entry;
use herald_embedded::bare::Herald;
use herald_embedded::{
    Buffers, ClientEvent, Config, Interest, Location, Registration, Service, ServiceName,
};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet, SocketStorage};
use smoltcp::wire::{EthernetAddress, IpCidr, Ipv4Address};

/// The board's MAC address (locally administered).
const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x45, 0x01, 0x01];
/// The board's address on the test's link.
const ADDRESS: Ipv4Address = Ipv4Address::new(192, 168, 69, 1);
/// The directory `herald serve` runs at.
const DIRECTORY: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 69, 100)), 37399);
/// The service this board registers, and its port.
const OWN: &str = "embedded-node";
const OWN_PORT: u16 = 7000;
/// When this service goes away, the board unregisters its own.
const RELEASE_AFTER: &str = "std-service";
/// The emulation ends with a failure after this long.
const LIMIT_MS: u32 = 120_000;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("panic: {}", info);
    semihosting::exit(false)
}

#[entry]
fn main() -> ! {
    let peripherals = cortex_m::Peripherals::take().unwrap();
    clock::start(peripherals.SYST);
    // SAFETY: the an386's LAN9118 is at this address and used only here.
    let mut device = match unsafe { lan9118::Lan9118::new(lan9118::AN386_BASE, MAC) } {
        Ok(device) => device,
        Err(e) => {
            println!("no LAN9118: {:?}", e);
            semihosting::exit(false)
        }
    };
    let mut iface = Interface::new(
        IfaceConfig::new(EthernetAddress(MAC).into()),
        &mut device,
        clock::now(),
    );
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::new(ADDRESS.into(), 24));
    });

    let buffers = cortex_m::singleton!(: Buffers = Buffers::new()).unwrap();
    let storage = cortex_m::singleton!(: [SocketStorage<'static>; 1] = Default::default()).unwrap();
    let mut sockets = SocketSet::new(&mut storage[..]);
    let mut config = Config::new(u64::from_le_bytes([
        MAC[0], MAC[1], MAC[2], MAC[3], MAC[4], MAC[5], 0x51, 0xe3,
    ]));
    config.client.interest = Some(Interest::all());
    if let Some((environment, keys)) = provisioning::read() {
        println!("environment {} (authenticated)", environment);
        config.client.environment = environment;
        config.client.keys = Some(keys);
    }
    let _ = config
        .client
        .directories
        .push(Location::try_from(DIRECTORY).unwrap());
    let mut herald: Herald<'static, 1> =
        match Herald::new(config, buffers, &mut iface, &mut sockets) {
            Ok(herald) => herald,
            Err(e) => {
                println!("herald: {}", e);
                semihosting::exit(false)
            }
        };
    let own = ServiceName::new(OWN).unwrap();
    let here = Location::new(IpAddr::V4(ADDRESS), OWN_PORT).unwrap();
    herald
        .register(
            clock::now(),
            Registration::new(own.clone(), &[here]).unwrap(),
        )
        .unwrap();
    println!("ready");

    loop {
        let now = clock::now();
        iface.poll(now, &mut device, &mut sockets);
        let queued = herald.poll(now, &mut sockets);
        while let Some(event) = herald.poll_event() {
            match event {
                ClientEvent::Registered { name, lease, .. } => {
                    println!(
                        "registered {} {} at {}",
                        name,
                        lease.as_millis(),
                        clock::millis()
                    )
                }
                ClientEvent::Discovered(s) => print_service("discovered", &s),
                ClientEvent::Changed(s) => print_service("changed", &s),
                ClientEvent::Unregistered(s) => {
                    println!("unregistered {}", s.name());
                    if s.name().as_str() == RELEASE_AFTER {
                        let _ = herald.unregister(clock::now(), &own);
                    }
                }
                ClientEvent::Released { name, confirmed } => {
                    let how = if confirmed {
                        "confirmed"
                    } else {
                        "unconfirmed"
                    };
                    println!("released {} {}", name, how);
                    if name == own {
                        semihosting::exit(confirmed);
                    }
                }
                ClientEvent::Rejected { name, reason, .. } => {
                    println!("rejected {:?} {:?}", name, reason)
                }
                ClientEvent::Unreachable => println!("unreachable"),
                ClientEvent::DirectoryChanged(d) => println!("directory {}", d),
                ClientEvent::SnapshotComplete { services } => println!("snapshot {}", services),
            }
        }
        if clock::millis() > LIMIT_MS {
            println!("timeout");
            semihosting::exit(false);
        }
        if !queued {
            // Nothing to send: sleep until the next SysTick (the LAN9118 is polled).
            cortex_m::asm::wfi();
        }
    }
}

/// Prints `what NAME ADDR,ADDR…`.
fn print_service(what: &str, service: &Service) {
    let mut line = semihosting::Line::new();
    let _ = core::fmt::Write::write_fmt(&mut line, format_args!("{} {} ", what, service.name()));
    for (i, l) in service.registration.locations.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!("{}{}", sep, l));
    }
    line.emit();
}
