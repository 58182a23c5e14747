//! The smallest program that uses all of herald-core's client: it registers a service,
//! feeds every datagram that "arrives" (read from a buffer the optimizer cannot see
//! through) to the client, and hands every datagram and event it produces to the same
//! kind of opaque sink. Built with and without the `herald` feature, it measures the
//! core's own share of flash and RAM, apart from any network stack.
#![no_std]
#![no_main]

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};
use cortex_m_rt::entry;
use panic_halt as _;

/// Where "received" datagrams come from: written by nobody, read through volatile reads,
/// so nothing about their content is known at compile time.
static mut INBOX: [u8; 1400] = [0; 1400];
/// Where everything produced goes.
static mut OUTBOX: [u8; 1400] = [0; 1400];

fn inbox_len() -> usize {
    // SAFETY: single-threaded, no interrupt touches it.
    unsafe { read_volatile(addr_of!(INBOX[0])) as usize * 5 + 16 }
}

fn tick() -> u64 {
    // SAFETY: as above.
    unsafe { u64::from(read_volatile(addr_of!(INBOX[1]))) * 1_000 }
}

fn sink(len: usize) {
    // SAFETY: as above.
    unsafe { write_volatile(addr_of_mut!(OUTBOX[0]), len as u8) }
}

#[cfg(feature = "herald")]
#[entry]
fn main() -> ! {
    use core::net::{IpAddr, Ipv4Addr, SocketAddr};
    use herald_core::client::ClientStorage;
    use herald_core::*;

    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    let directory = Location::new(ip, 37399).unwrap_or_else(|_| loop {});
    let mut config = ClientConfig::new(0x5eed);
    let _ = config.directories.push(directory);
    config.interest = Some(Interest::all());
    let mut storage = ClientStorage::<8>::new();
    let (slots, index) = storage.parts();
    let Ok(mut client) = Client::<'_, 2>::new(config, slots, index) else {
        loop {}
    };
    if let (Ok(name), Ok(here)) = (ServiceName::new("sensor"), Location::new(ip, 7)) {
        if let Ok(registration) = Registration::new(name, &[here]) {
            let _ = client.register(Instant::ZERO, registration);
        }
    }
    let from = SocketAddr::new(ip, 37399);
    let mut buf = [0u8; 1400];
    loop {
        let now = Instant::from_micros(tick());
        let len = inbox_len().min(buf.len());
        for (i, b) in buf[..len].iter_mut().enumerate() {
            // SAFETY: as above.
            *b = unsafe { read_volatile(addr_of!(INBOX[i])) };
        }
        client.handle_datagram(now, from, &buf[..len]);
        client.handle_timeout(now);
        while let Some(t) = client.poll_transmit(now, &mut buf) {
            sink(t.len);
        }
        while let Some(event) = client.poll_event() {
            sink(core::mem::size_of_val(&event));
        }
    }
}

#[cfg(not(feature = "herald"))]
#[entry]
fn main() -> ! {
    let mut buf = [0u8; 1400];
    loop {
        let len = inbox_len().min(buf.len());
        for (i, b) in buf[..len].iter_mut().enumerate() {
            // SAFETY: as above.
            *b = unsafe { read_volatile(addr_of!(INBOX[i])) };
        }
        sink(buf[..len].iter().fold(tick() as usize, |a, b| a ^ usize::from(*b)));
    }
}
