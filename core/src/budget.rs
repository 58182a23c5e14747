//! Byte budgets per source address: how much may be sent to any one address, and to
//! all of them together, per second. A directory paces its snapshot answers with them;
//! a shell paces what it answers to unverified senders (the DNS interface) the same way.

use crate::time::Instant;
use core::net::IpAddr;

/// A token bucket of bytes, refilled at a rate per second up to one second's worth. A
/// datagram may be sent while the balance is positive and may take it below zero: the
/// debt is paid back before the next one.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: i64,
    at: Instant,
}

impl Bucket {
    fn full(rate: u32, at: Instant) -> Self {
        Bucket {
            tokens: i64::from(rate),
            at,
        }
    }

    fn refill(&mut self, rate: u32, now: Instant) {
        let rate = i64::from(rate);
        let elapsed = now.saturating_since(self.at).as_micros();
        let earned = elapsed.saturating_mul(rate.unsigned_abs()) / 1_000_000;
        if earned > 0 {
            let earned = i64::try_from(earned).unwrap_or(i64::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(rate);
            self.at = now;
        }
    }

    fn spend(&mut self, bytes: usize) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.tokens = self.tokens.saturating_sub(bytes);
    }
}

/// One source address's budget.
#[derive(Clone, Copy, Debug)]
struct Source {
    ip: IpAddr,
    bucket: Bucket,
    last_used: Instant,
}

/// The byte budgets of up to `N` source addresses (the least recently used forgotten
/// when a new one comes) and the one of all sources together, each a token bucket
/// holding at most one second's worth.
#[derive(Debug)]
pub struct ByteBudgets<const N: usize> {
    sources: heapless::Vec<Source, N>,
    global: Bucket,
}

impl<const N: usize> ByteBudgets<N> {
    /// Full budgets at `now`, the global one holding one second at `global_rate`.
    pub fn new(global_rate: u32, now: Instant) -> Self {
        ByteBudgets {
            sources: heapless::Vec::new(),
            global: Bucket::full(global_rate, now),
        }
    }

    /// Refills the budgets of `ip` (at `source_rate` bytes per second) and of everyone
    /// (at `global_rate`); true when both have bytes left.
    pub fn may_send(
        &mut self,
        source_rate: u32,
        global_rate: u32,
        ip: IpAddr,
        now: Instant,
    ) -> bool {
        self.global.refill(global_rate, now);
        let index = match self.sources.iter().position(|s| s.ip == ip) {
            Some(i) => i,
            None => {
                if self.sources.is_full() {
                    let oldest = (0..self.sources.len()).min_by_key(|&i| self.sources[i].last_used);
                    if let Some(oldest) = oldest {
                        self.sources.swap_remove(oldest);
                    }
                }
                let fresh = Source {
                    ip,
                    bucket: Bucket::full(source_rate, now),
                    last_used: now,
                };
                // Fails only when no source is kept at all (N = 0): then only the global
                // budget counts.
                if self.sources.push(fresh).is_err() {
                    return self.global.tokens > 0;
                }
                self.sources.len() - 1
            }
        };
        let source = &mut self.sources[index];
        source.last_used = now;
        source.bucket.refill(source_rate, now);
        source.bucket.tokens > 0 && self.global.tokens > 0
    }

    /// Charges `bytes` sent to `ip`.
    pub fn spent(&mut self, ip: IpAddr, bytes: usize) {
        self.global.spend(bytes);
        if let Some(s) = self.sources.iter_mut().find(|s| s.ip == ip) {
            s.bucket.spend(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;
    use core::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn a_source_gets_its_rate_and_everyone_the_global_one() {
        let t0 = Instant::ZERO;
        let mut b = ByteBudgets::<2>::new(3000, t0);
        assert!(b.may_send(1000, 3000, ip(1), t0));
        b.spent(ip(1), 1500);
        // In debt: nothing more until it is paid back.
        assert!(!b.may_send(1000, 3000, ip(1), t0 + Duration::from_millis(400)));
        assert!(b.may_send(1000, 3000, ip(1), t0 + Duration::from_millis(600)));
        // Another source has its own budget, until the global one runs out.
        let t1 = t0 + Duration::from_millis(600);
        assert!(b.may_send(1000, 3000, ip(2), t1));
        b.spent(ip(2), 3000);
        assert!(!b.may_send(1000, 3000, ip(3), t1));
        // A second refills the global budget; the third source took the place of the
        // least recently used.
        assert!(b.may_send(1000, 3000, ip(3), t1 + Duration::from_secs(1)));
        assert_eq!(b.sources.len(), 2);
        assert!(b.sources.iter().all(|s| s.ip != ip(1)));
        // With no source kept, only the global budget counts.
        let mut none = ByteBudgets::<0>::new(100, t0);
        assert!(none.may_send(1, 100, ip(1), t0));
        none.spent(ip(1), 100);
        assert!(!none.may_send(1, 100, ip(2), t0));
    }
}
