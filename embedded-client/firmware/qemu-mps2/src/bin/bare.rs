//! The bare smoltcp shell: the LAN9118 as a smoltcp `Device`, the client's
//! `bare::Herald` on the same interface, one poll loop that sleeps (`wfi`) until the
//! next SysTick when it has nothing to send. See `script` for what it does.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use herald_embedded::bare::Herald;
use herald_embedded::Buffers;
use herald_qemu_mps2::script::{self, Next};
use herald_qemu_mps2::{clock, lan9118, println, semihosting};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet, SocketStorage};
use smoltcp::wire::{EthernetAddress, IpCidr};

#[entry]
fn main() -> ! {
    let peripherals = cortex_m::Peripherals::take().unwrap();
    clock::start(peripherals.SYST);
    let mut device = lan9118::start();
    let mut iface = Interface::new(
        IfaceConfig::new(EthernetAddress(script::MAC).into()),
        &mut device,
        clock::now(),
    );
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::new(script::ADDRESS.into(), script::PREFIX));
    });

    let buffers = cortex_m::singleton!(: Buffers = Buffers::new()).unwrap();
    let storage = cortex_m::singleton!(: [SocketStorage<'static>; 1] = Default::default()).unwrap();
    let mut sockets = SocketSet::new(&mut storage[..]);
    let mut herald: Herald<'static, 1> =
        match Herald::new(script::config(), buffers, &mut iface, &mut sockets) {
            Ok(herald) => herald,
            Err(e) => {
                println!("herald: {}", e);
                semihosting::exit(false)
            }
        };
    herald
        .register(clock::now(), script::registration())
        .unwrap();
    println!("ready");

    loop {
        let now = clock::now();
        iface.poll(now, &mut device, &mut sockets);
        let queued = herald.poll(now, &mut sockets);
        while let Some(event) = herald.poll_event() {
            if let Next::Release = script::on_event(&event) {
                let _ = herald.unregister(clock::now(), &script::own());
            }
        }
        script::check_limit();
        if !queued {
            // Nothing to send: sleep until the next SysTick (the LAN9118 is polled).
            cortex_m::asm::wfi();
        }
    }
}
