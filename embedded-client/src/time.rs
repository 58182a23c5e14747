//! Conversions from the drivers' clocks to the core's [`Instant`]. All three count
//! microseconds (smoltcp's from an origin of its own choosing), so they map one to one.

use herald_core::Instant;

/// The core instant for an embassy-time instant (microseconds since boot).
#[cfg(feature = "embassy")]
pub fn from_embassy(instant: embassy_time::Instant) -> Instant {
    Instant::from_micros(instant.as_micros())
}

/// The first embassy-time tick at or after a core instant, so that a timer set for a
/// deadline never fires before it (saturating at embassy-time's largest instant).
///
/// In `u64` arithmetic, whole seconds and the remainder apart: a `u128` product and
/// division would link a 128-bit division routine (about 0.7 KB of flash).
#[cfg(feature = "embassy")]
pub fn to_embassy(instant: Instant) -> embassy_time::Instant {
    const MICROS: u64 = 1_000_000;
    let micros = instant.as_micros();
    // The remainder's product stays below 10^6 * TICK_HZ, far within u64 for any tick
    // rate embassy-time offers (at most a few GHz).
    let ticks = (micros / MICROS)
        .checked_mul(embassy_time::TICK_HZ)
        .and_then(|t| t.checked_add((micros % MICROS * embassy_time::TICK_HZ).div_ceil(MICROS)))
        .unwrap_or(u64::MAX);
    embassy_time::Instant::from_ticks(ticks)
}

/// The core instant for a smoltcp instant; times before smoltcp's origin map to zero.
pub fn from_smoltcp(instant: smoltcp::time::Instant) -> Instant {
    Instant::from_micros(u64::try_from(instant.total_micros()).unwrap_or(0))
}

/// The smoltcp instant for a core instant (saturating at smoltcp's largest instant).
pub fn to_smoltcp(instant: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(i64::try_from(instant.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoltcp_round_trips_and_clamps() {
        let t = Instant::from_micros(1_234_567);
        assert_eq!(from_smoltcp(to_smoltcp(t)), t);
        assert_eq!(
            from_smoltcp(smoltcp::time::Instant::from_micros(-5)),
            Instant::ZERO
        );
        assert_eq!(
            to_smoltcp(Instant::from_micros(u64::MAX)).total_micros(),
            i64::MAX
        );
    }

    #[cfg(feature = "embassy")]
    #[test]
    fn embassy_deadlines_round_up() {
        for micros in [0, 1, 29, 31, 999_999, 42_000_000, 42_000_017, u64::MAX / 2] {
            let t = Instant::from_micros(micros);
            let back = from_embassy(to_embassy(t));
            assert!(back >= t, "{micros}");
            assert!(back.as_micros() - micros < 1_000_000 / embassy_time::TICK_HZ + 1);
            // The same tick as the exact 128-bit computation.
            let exact =
                (u128::from(micros) * u128::from(embassy_time::TICK_HZ)).div_ceil(1_000_000);
            assert_eq!(u128::from(to_embassy(t).as_ticks()), exact, "{micros}");
        }
        assert_eq!(
            to_embassy(Instant::from_micros(u64::MAX)),
            embassy_time::Instant::MAX
        );
    }
}
