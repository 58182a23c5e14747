//! The embassy-time driver on SysTick: one tick per millisecond (embassy-time's
//! `tick-hz-1_000`), timers kept in embassy's queue and fired from SysTick.

use core::cell::RefCell;
use core::task::Waker;
use critical_section::Mutex;
use embassy_time_driver::Driver;
use embassy_time_queue_utils::Queue;

/// The timers waiting.
static QUEUE: Mutex<RefCell<Queue>> = Mutex::new(RefCell::new(Queue::new()));

/// The driver: time from [`crate::clock`].
struct SysTickDriver;

impl Driver for SysTickDriver {
    fn now(&self) -> u64 {
        u64::from(crate::clock::millis())
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        critical_section::with(|cs| {
            // A timer already due fires on the next tick.
            QUEUE.borrow_ref_mut(cs).schedule_wake(at, waker);
        });
    }
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver);

/// Fires the timers due at `now` milliseconds (called from SysTick).
pub fn expire(now: u32) {
    critical_section::with(|cs| {
        QUEUE.borrow_ref_mut(cs).next_expiration(u64::from(now));
    });
}
