//! Time from SysTick: one interrupt per millisecond counts the time since boot (and,
//! with the `embassy` feature, fires embassy-time's timers and polls the LAN9118).

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;

/// The core clock of QEMU's MPS2 boards.
const CORE_HZ: u32 = 25_000_000;

static MILLIS: AtomicU32 = AtomicU32::new(0);

/// Starts SysTick at 1 kHz.
pub fn start(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(CORE_HZ / 1000 - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Milliseconds since [`start`] (wraps after 49 days).
pub fn millis() -> u32 {
    MILLIS.load(Ordering::Relaxed)
}

/// The time since [`start`] for smoltcp.
pub fn now() -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_millis(i64::from(millis()))
}

#[exception]
fn SysTick() {
    let now = MILLIS.fetch_add(1, Ordering::Relaxed) + 1;
    #[cfg(feature = "embassy")]
    {
        crate::timer::expire(now);
        crate::lan9118::poll_again();
    }
    #[cfg(not(feature = "embassy"))]
    let _ = now;
}
