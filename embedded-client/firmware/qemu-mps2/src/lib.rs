//! Herald on QEMU's `mps2-an386` (Cortex-M4, SMSC LAN9118 Ethernet): what the two
//! firmware shells share. `bin/bare.rs` runs the client on a bare smoltcp poll loop,
//! `bin/embassy.rs` on embassy-net; both follow the [`script`] and print one line per
//! event over [`semihosting`]. `embedded-client/tests/qemu.rs` runs them against a real
//! `herald serve`.
#![no_std]

#[macro_use]
pub mod semihosting;
pub mod clock;
pub mod lan9118;
pub mod provisioning;
pub mod script;
#[cfg(feature = "embassy")]
pub mod timer;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("panic: {}", info);
    semihosting::exit(false)
}
