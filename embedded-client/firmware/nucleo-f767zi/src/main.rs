//! A Nucleo-F767ZI on Ethernet that registers one service with Herald (`nucleo-f767zi`
//! on its own address, port 7) and prints, over defmt RTT, every service it discovers,
//! changes and loses. It finds the directory by its beacons on the group, or uses
//! `DIRECTORY` when that is set.
//!
//! Build: `cargo build --release` here (target thumbv7em-none-eabihf); flash and watch
//! the log with `cargo run --release` (probe-rs). Without the `herald` feature it only
//! brings the network up and listens on the group: the baseline for the footprint.
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_net::{Stack, StackResources};
use embassy_stm32::eth::{Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::peripherals::{ETH, ETH_SMA};
use embassy_stm32::rng::Rng;
use embassy_stm32::time::Hertz;
use embassy_stm32::{bind_interrupts, eth, peripherals, rng, Config};
#[cfg(not(feature = "defmt"))]
use panic_halt as _;
use static_cell::StaticCell;
#[cfg(feature = "defmt")]
use {defmt_rtt as _, panic_probe as _};

/// Logs with defmt when it is on; otherwise only evaluates the arguments.
macro_rules! say {
    ($s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        defmt::info!($s $(, $x)*);
        #[cfg(not(feature = "defmt"))]
        let _ = ($(&$x),*);
    }};
}

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    RNG => rng::InterruptHandler<peripherals::RNG>;
});

type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Device>) -> ! {
    runner.run().await
}

#[embassy_executor::main]
async fn main(spawner: Spawner) -> ! {
    let mut config = Config::default();
    {
        use embassy_stm32::rcc::*;
        // 8 MHz from the ST-LINK's MCO, HSE bypass; 216 MHz system clock.
        config.rcc.hse = Some(Hse {
            freq: Hertz(8_000_000),
            mode: HseMode::Bypass,
        });
        config.rcc.pll_src = PllSource::HSE;
        config.rcc.pll = Some(Pll {
            prediv: PllPreDiv::DIV4,
            mul: PllMul::MUL216,
            divp: Some(PllPDiv::DIV2),
            divq: None,
            divr: None,
        });
        config.rcc.ahb_pre = AHBPrescaler::DIV1;
        config.rcc.apb1_pre = APBPrescaler::DIV4;
        config.rcc.apb2_pre = APBPrescaler::DIV2;
        config.rcc.sys = Sysclk::PLL1_P;
    }
    let p = embassy_stm32::init(config);

    let mut rng = Rng::new(p.RNG, Irqs);
    let mut seed = [0; 8];
    rng.fill_bytes(&mut seed);
    let seed = u64::from_le_bytes(seed);

    // A locally administered MAC derived from the random seed.
    let mac = [
        0x02,
        0x00,
        seed as u8,
        (seed >> 8) as u8,
        (seed >> 16) as u8,
        (seed >> 24) as u8,
    ];
    static PACKETS: StaticCell<PacketQueue<4, 4>> = StaticCell::new();
    // The board's RMII pins (LAN8742A PHY).
    let device = Ethernet::new(
        PACKETS.init(PacketQueue::<4, 4>::new()),
        p.ETH,
        Irqs,
        p.PA1,  // REF_CLK
        p.PA7,  // CRS_DV
        p.PC4,  // RXD0
        p.PC5,  // RXD1
        p.PG13, // TXD0
        p.PB13, // TXD1
        p.PG11, // TX_EN
        mac,
        p.ETH_SMA,
        p.PA2, // MDIO
        p.PC1, // MDC
    );

    #[cfg(feature = "dhcp")]
    let net_config = embassy_net::Config::dhcpv4(Default::default());
    #[cfg(not(feature = "dhcp"))]
    let net_config = embassy_net::Config::ipv4_static(embassy_net::StaticConfigV4 {
        address: embassy_net::Ipv4Cidr::new(embassy_net::Ipv4Address::new(192, 168, 69, 1), 24),
        dns_servers: heapless::Vec::new(),
        gateway: None,
    });
    static RESOURCES: StaticCell<StackResources<3>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        device,
        net_config,
        RESOURCES.init(StackResources::new()),
        seed,
    );
    spawner.spawn(net_task(runner).unwrap());

    stack.wait_config_up().await;
    let Some(v4) = stack.config_v4() else {
        panic!("no IPv4 configuration")
    };
    let address = v4.address.address();
    say!("network up: {}", address);

    run(spawner, stack, address, seed).await
}

#[cfg(feature = "herald")]
mod herald {
    //! The Herald part: one registration, every discovery printed.
    use super::*;
    use core::net::IpAddr;
    use embassy_net::Ipv4Address;
    use herald_embedded::embassy::{Herald, Resources, Runner};
    use herald_embedded::{ClientEvent, Location, Registration, ServiceName};

    /// A directory to use from the start (address, port); `None` learns it from beacons.
    const DIRECTORY: Option<([u8; 4], u16)> = None;
    /// The port the registered service is announced on.
    const SERVICE_PORT: u16 = 7;
    /// Services remembered at once (none without discovery), and services registered
    /// by this board.
    #[cfg(feature = "listen")]
    const SERVICES: usize = 8;
    #[cfg(not(feature = "listen"))]
    const SERVICES: usize = 0;
    const REGISTRATIONS: usize = 1;
    type HeraldResources = Resources<'static, SERVICES, REGISTRATIONS, 4, 2048>;

    #[embassy_executor::task]
    async fn herald_task(mut runner: Runner<'static, REGISTRATIONS>) -> ! {
        runner.run().await
    }

    /// Starts the client and registers this board's service. A plain function, not part
    /// of `run`: the configuration and the registration it builds are moved into the
    /// client, and an async function would keep room for them in its task's state for
    /// as long as the task runs (760 bytes of static RAM).
    fn start(
        spawner: Spawner,
        stack: Stack<'static>,
        address: Ipv4Address,
        seed: u64,
    ) -> Herald<'static, REGISTRATIONS> {
        let mut config = herald_embedded::Config::new(seed);
        #[cfg(feature = "listen")]
        {
            config.client.interest = Some(herald_embedded::Interest::all());
        }
        if let Some((ip, port)) = DIRECTORY {
            if let Ok(directory) = Location::new(IpAddr::from(ip), port) {
                let _ = config.client.directories.push(directory);
            }
        }
        static HERALD: StaticCell<HeraldResources> = StaticCell::new();
        let (herald, runner) =
            match herald_embedded::embassy::new(stack, config, HERALD.init(Resources::new())) {
                Ok(pair) => pair,
                Err(_) => panic!("herald could not start"),
            };
        spawner.spawn(herald_task(runner).unwrap());

        let registration = ServiceName::new("nucleo-f767zi")
            .ok()
            .zip(Location::new(IpAddr::V4(address), SERVICE_PORT).ok())
            .and_then(|(name, here)| Registration::new(name, &[here]).ok());
        if let Some(registration) = registration {
            let _ = herald.register(registration);
        }
        herald
    }

    pub(super) async fn run(
        spawner: Spawner,
        stack: Stack<'static>,
        address: Ipv4Address,
        seed: u64,
    ) -> ! {
        let herald = start(spawner, stack, address, seed);
        loop {
            match herald.next_event().await {
                ClientEvent::Discovered(s) | ClientEvent::Changed(s) => {
                    for location in s.registration.locations.iter() {
                        print_location(s.name().as_str(), location);
                    }
                }
                ClientEvent::Unregistered(s) => say!("service {} gone", s.name().as_str()),
                ClientEvent::Registered { lease, .. } => {
                    say!("registered, lease {} ms", lease.as_millis())
                }
                ClientEvent::Unreachable => say!("no directory answers yet"),
                _ => {}
            }
        }
    }

    /// Prints with defmt's own formatting (no `core::fmt`, which costs flash).
    fn print_location(name: &str, location: &Location) {
        match location.ip() {
            IpAddr::V4(ip) => {
                let [a, b, c, d] = ip.octets();
                say!(
                    "service {} at {}.{}.{}.{}:{}",
                    name,
                    a,
                    b,
                    c,
                    d,
                    location.port()
                )
            }
            IpAddr::V6(_) => say!(
                "service {} at an IPv6 address, port {}",
                name,
                location.port()
            ),
        }
    }
}

#[cfg(feature = "herald")]
use herald::run;

#[cfg(all(feature = "herald", feature = "mdns"))]
compile_error!("`herald` and `mdns` are alternatives: build one at a time");

#[cfg(feature = "mdns")]
mod mdns {
    //! The anchor of the footprint table: an edge-mdns responder (on embassy-net)
    //! announcing one service, `nucleo-f767zi._herald-demo._udp.local` at port 7. It
    //! answers queries and announces; it does not discover other services.
    use super::*;
    use core::convert::Infallible;
    use core::net::{Ipv4Addr, Ipv6Addr};
    use edge_mdns::buf::VecBufAccess;
    use edge_mdns::domain::base::Ttl;
    use edge_mdns::host::{Host, Service, ServiceAnswers};
    use edge_mdns::io::{self, IPV4_DEFAULT_SOCKET};
    use edge_mdns::HostAnswersMdnsHandler;
    use edge_nal::UdpSplit;
    use edge_nal_embassy::{Udp, UdpBuffers};
    use embassy_net::Ipv4Address;
    use embassy_sync::blocking_mutex::raw::NoopRawMutex;
    use embassy_sync::signal::Signal;

    /// The responder's random numbers (query ids, delays): xorshift64 from the seed.
    struct XorShift(u64);

    impl rand_core::TryRng for XorShift {
        type Error = Infallible;

        fn try_next_u32(&mut self) -> Result<u32, Infallible> {
            self.try_next_u64().map(|x| x as u32)
        }

        fn try_next_u64(&mut self) -> Result<u64, Infallible> {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            Ok(self.0)
        }

        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
            for chunk in dst.chunks_mut(8) {
                let bytes = self.try_next_u64()?.to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
            Ok(())
        }
    }

    pub(super) async fn run(
        _spawner: Spawner,
        stack: Stack<'static>,
        address: Ipv4Address,
        seed: u64,
    ) -> ! {
        static BUFFERS: StaticCell<UdpBuffers<1, 1500, 1500, 2>> = StaticCell::new();
        let udp = Udp::new(stack, BUFFERS.init(UdpBuffers::new()));
        let Ok(mut socket) =
            io::bind(&udp, IPV4_DEFAULT_SOCKET, Some(Ipv4Addr::UNSPECIFIED), None).await
        else {
            panic!("mdns could not bind")
        };
        let (recv, send) = socket.split();
        let host = Host {
            hostname: "nucleo-f767zi",
            ipv4: address,
            ipv6: Ipv6Addr::UNSPECIFIED,
            ttl: Ttl::from_secs(60),
        };
        let service = Service {
            name: "nucleo-f767zi",
            priority: 1,
            weight: 5,
            service: "_herald-demo",
            protocol: "_udp",
            port: 7,
            service_subtypes: &[],
            txt_kvs: &[],
        };
        let (recv_buf, send_buf) = (
            VecBufAccess::<NoopRawMutex, 1500>::new(),
            VecBufAccess::<NoopRawMutex, 1500>::new(),
        );
        let signal = Signal::<NoopRawMutex, ()>::new();
        let mdns = io::Mdns::<_, _, _, _, _, NoopRawMutex>::new(
            Some(Ipv4Addr::UNSPECIFIED),
            None,
            recv,
            send,
            &recv_buf,
            &send_buf,
            XorShift(seed | 1),
            &signal,
        );
        let answers = ServiceAnswers::new(&host, &service);
        let _ = mdns.run(HostAnswersMdnsHandler::new(&answers)).await;
        panic!("mdns stopped")
    }
}

#[cfg(feature = "mdns")]
use mdns::run;

/// The baseline: the same network, one UDP socket on the group, datagrams counted.
#[cfg(not(any(feature = "herald", feature = "mdns")))]
async fn run(
    _spawner: Spawner,
    stack: Stack<'static>,
    _address: embassy_net::Ipv4Address,
    _seed: u64,
) -> ! {
    use embassy_net::udp::{PacketMetadata, UdpSocket};
    let group = embassy_net::Ipv4Address::new(237, 37, 37, 1);
    let mut rx_meta = [PacketMetadata::EMPTY; 4];
    let mut rx = [0; 2048];
    let mut tx_meta = [PacketMetadata::EMPTY; 4];
    let mut tx = [0; 2048];
    let mut socket = UdpSocket::new(stack, &mut rx_meta, &mut rx, &mut tx_meta, &mut tx);
    let _ = socket.bind(37371);
    let _ = stack.join_multicast_group(group);
    let mut buf = [0; 1400];
    let mut count = 0u32;
    loop {
        if let Ok((len, _)) = socket.recv_from(&mut buf).await {
            count = count.wrapping_add(1);
            say!("datagram {} of {} bytes", count, len);
        }
    }
}
