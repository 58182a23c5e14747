//! The embassy-net shell: the LAN9118 as an embassy-net driver, time from the SysTick
//! embassy-time driver, the client's `embassy` runner in a task of its own. See
//! `script` for what it does.
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_net::{Ipv4Cidr, StackResources, StaticConfigV4};
use embassy_time::{with_deadline, Instant};
use herald_embedded::embassy::{Resources, Runner};
use herald_qemu_mps2::lan9118::Lan9118;
use herald_qemu_mps2::script::{self, Next};
use herald_qemu_mps2::{clock, lan9118, println, semihosting};
use static_cell::StaticCell;

/// Services this board registers itself.
const REGISTRATIONS: usize = 1;

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Lan9118>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn herald_task(mut runner: Runner<'static, REGISTRATIONS>) -> ! {
    runner.run().await
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let peripherals = cortex_m::Peripherals::take().unwrap();
    clock::start(peripherals.SYST);
    let device = lan9118::start();
    let net_config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(script::ADDRESS, script::PREFIX),
        dns_servers: Default::default(),
        gateway: None,
    });
    static STACK: StaticCell<StackResources<3>> = StaticCell::new();
    let seed = 0x4e52_414c_4448;
    let (stack, runner) =
        embassy_net::new(device, net_config, STACK.init(StackResources::new()), seed);
    spawner.spawn(net_task(runner).unwrap());
    stack.wait_config_up().await;

    static HERALD: StaticCell<Resources<'static, 16, REGISTRATIONS>> = StaticCell::new();
    let (herald, runner) =
        match herald_embedded::embassy::new(stack, script::config(), HERALD.init(Resources::new()))
        {
            Ok(pair) => pair,
            Err(e) => {
                println!("herald: {}", e);
                semihosting::exit(false)
            }
        };
    spawner.spawn(herald_task(runner).unwrap());
    herald.register(script::registration()).unwrap();
    println!("ready");

    let deadline = Instant::from_millis(u64::from(script::LIMIT_MS));
    while let Ok(event) = with_deadline(deadline, herald.next_event()).await {
        if let Next::Release = script::on_event(&event) {
            let _ = herald.unregister(&script::own());
        }
    }
    script::check_limit();
    semihosting::exit(false)
}
