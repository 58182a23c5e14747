//! Admission control: how much a directory does for a sender before it knows the sender
//! is real, and how much it does for any one sender at all.
//!
//! * **Return-routability cookies.** A snapshot request without a valid cookie is
//!   answered with a [`CookieReply`] only, never larger than [`AMPLIFICATION`] times the
//!   request, so a forged source address (or a captured request replayed from another
//!   address) reflects no more than that to its victim. A cookie is a keyed hash of the
//!   sender's address and port and of a coarse time bucket ([`COOKIE_PERIOD`]), under
//!   the directory's secret ([`AdmissionConfig::cookie_secret`]): the directory keeps no
//!   state for it, and it is valid for one to two periods. A frame that cannot be
//!   decoded is rejected only when the rejection stays within the same bound.
//! * **Snapshot byte budgets.** A verified sender's pages are paced by a token bucket
//!   per source address (a bounded table, least recently used forgotten) and by a global
//!   one; an answer that runs out of budget is cut short (counted) and the client asks
//!   again later from where it stopped.
//! * **Reply priority.** Snapshot answers (pages and cookies) wait in their own bounded
//!   queue ([`SNAPSHOT_QUEUE`]) behind the replies to registrations, renewals and
//!   unregistrations; when it is full a new snapshot request is dropped (counted), not
//!   delayed. A new publisher catching up holds its pages there, not the cookies
//!   behind them.
//! * **Registration budgets.** One address, and one /24 (IPv4) or /64 (IPv6) network,
//!   may hold only so many live registrations taken by this directory; beyond it a new
//!   name is refused with [`RejectReason::SourceBudget`]. The counts come from each
//!   entry's source address, kept in memory only (restored and replicated records have
//!   none and count for nobody), and are cached for recent addresses and networks so
//!   that a registration does not cost a pass over the registry.
//! * **Subscription budgets.** Likewise one address, and one /24 or /64 network, may
//!   hold only so many subscriptions at this directory; beyond it a new subscription is
//!   refused with [`RejectReason::SourceBudget`], so one source cannot take the whole
//!   subscriber table (nor multiply what each change costs to deliver). They are
//!   counted over the subscriber table when a subscription is taken (renewals are not).

use super::{ConfigError, Directory};
use crate::auth::equal_in_constant_time;
use crate::budget::ByteBudgets;
use crate::name::Environment;
use crate::time::{Duration, Instant};
use crate::wire::{
    self, CookieReply, PageHeader, Reject, RejectReason, SnapshotRequest, COOKIE_LEN,
};
use crate::Transmit;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How many snapshot answers (pages still to send, or cookies) may wait for
/// `poll_transmit`; a snapshot request beyond it is dropped and counted.
pub const SNAPSHOT_QUEUE: usize = 16;
/// The most an unverified sender receives, as a multiple of the bytes it sent.
pub const AMPLIFICATION: usize = 3;
/// The time bucket of a cookie: a cookie is valid in its bucket and the next.
pub const COOKIE_PERIOD: Duration = Duration::from_secs(60);
/// How many source addresses' snapshot budgets are kept.
const BUDGET_SOURCES: usize = 64;
/// How many addresses' and networks' registration counts are kept.
const COUNTED: usize = 128;
/// How long a count that refuses registrations is trusted before the registry is
/// counted again (removals since then are not in it).
const RECOUNT: Duration = Duration::from_secs(1);

/// Admission settings: snapshot cookies and byte budgets, per-source registration
/// budgets (`docs/PROTOCOL.md`, "Admission control").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// The secret that keys snapshot cookies. A shell fills it from the operating
    /// system's random source at start; the all-zero default lets anyone compute
    /// cookies and is only for tests.
    pub cookie_secret: [u8; 32],
    /// Snapshot bytes per second one verified source address may receive, also its
    /// burst (default 1 MiB).
    pub snapshot_source_rate: u32,
    /// Snapshot bytes per second all sources together may receive, also the burst
    /// (default 8 MiB).
    pub snapshot_rate: u32,
    /// Live registrations one address may hold (default 1024).
    pub registrations_per_address: u32,
    /// Live registrations one /24 (IPv4) or /64 (IPv6) network may hold (default 4096).
    pub registrations_per_network: u32,
    /// Subscriptions one address may hold (default 64).
    pub subscriptions_per_address: u32,
    /// Subscriptions one /24 (IPv4) or /64 (IPv6) network may hold (default 512).
    pub subscriptions_per_network: u32,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            cookie_secret: [0; 32],
            snapshot_source_rate: 1 << 20,
            snapshot_rate: 8 << 20,
            registrations_per_address: 1024,
            registrations_per_network: 4096,
            subscriptions_per_address: 64,
            subscriptions_per_network: 512,
        }
    }
}

impl AdmissionConfig {
    /// Checks the settings: no budget may be zero.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let budgets = [
            self.snapshot_source_rate,
            self.snapshot_rate,
            self.registrations_per_address,
            self.registrations_per_network,
            self.subscriptions_per_address,
            self.subscriptions_per_network,
        ];
        if budgets.contains(&0) {
            return Err(ConfigError::ZeroBudget);
        }
        Ok(())
    }
}

/// A snapshot answer waiting to be sent.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // A fixed-size queue: boxing is not an option.
pub(super) enum Answer {
    /// An unverified request: its cookie, in at most `limit` bytes.
    Cookie {
        to: SocketAddr,
        request: u32,
        limit: usize,
    },
    /// A verified request: its pages, one per `poll_transmit`.
    Pages {
        to: SocketAddr,
        request: SnapshotRequest,
    },
}

/// The directory's admission state: the snapshot queue and the byte budgets.
#[derive(Debug)]
pub(super) struct Admission {
    answers: heapless::Deque<Answer, SNAPSHOT_QUEUE>,
    budgets: ByteBudgets<BUDGET_SOURCES>,
    counts: heapless::Vec<Count, COUNTED>,
}

impl Admission {
    pub(super) fn new(config: &AdmissionConfig) -> Self {
        Admission {
            answers: heapless::Deque::new(),
            budgets: ByteBudgets::new(config.snapshot_rate, Instant::ZERO),
            counts: heapless::Vec::new(),
        }
    }

    /// Takes the first cookie answer out of the queue, the other answers keeping their
    /// order.
    fn take_cookie(&mut self) -> Option<Answer> {
        let mut cookie = None;
        for _ in 0..self.answers.len() {
            let answer = self.answers.pop_front()?;
            if cookie.is_none() && matches!(answer, Answer::Cookie { .. }) {
                cookie = Some(answer);
            } else {
                // Back where it was: one was just taken out, so there is room.
                let _ = self.answers.push_back(answer);
            }
        }
        cookie
    }

    /// Refills the budgets of `ip` and of everyone; true when both have bytes left.
    pub(super) fn may_send(&mut self, config: &AdmissionConfig, ip: IpAddr, now: Instant) -> bool {
        self.budgets
            .may_send(config.snapshot_source_rate, config.snapshot_rate, ip, now)
    }

    /// Charges `bytes` sent to `ip`.
    pub(super) fn spent(&mut self, ip: IpAddr, bytes: usize) {
        self.budgets.spent(ip, bytes);
    }
}

/// Who a registration or subscription budget is kept for: one address, or one /24 (IPv4) or /64
/// (IPv6) network (its address with the host part zeroed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holder {
    Address(IpAddr),
    Network(IpAddr),
}

impl Holder {
    fn network(ip: IpAddr) -> Self {
        Holder::Network(match ip {
            IpAddr::V4(a) => {
                let [a, b, c, _] = a.octets();
                IpAddr::V4(Ipv4Addr::new(a, b, c, 0))
            }
            IpAddr::V6(a) => {
                let mut o = a.octets();
                o[8..].fill(0);
                IpAddr::V6(Ipv6Addr::from(o))
            }
        })
    }

    /// True when a registration from `source` counts for this holder.
    fn holds(self, source: IpAddr) -> bool {
        match self {
            Holder::Address(ip) => source == ip,
            Holder::Network(_) => Holder::network(source) == self,
        }
    }
}

/// A holder's live registrations, at most, as counted at `counted` plus those taken
/// since.
#[derive(Clone, Copy, Debug)]
struct Count {
    holder: Holder,
    live: u32,
    counted: Instant,
}

/// The address a budget is kept for: an IPv4 address however it arrived (a dual-stack
/// socket shows it IPv4-mapped).
pub(super) fn source_of(from: SocketAddr) -> IpAddr {
    from.ip().to_canonical()
}

impl Directory<'_> {
    /// The cookie for `to` in time bucket `bucket`.
    fn cookie(&self, to: SocketAddr, bucket: u64) -> [u8; COOKIE_LEN] {
        let mut out = [0; COOKIE_LEN];
        // HMAC takes a key of any length: this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.config.admission.cookie_secret)
        else {
            return out;
        };
        mac.update(&bucket.to_le_bytes());
        match source_of(to) {
            IpAddr::V4(a) => mac.update(&a.octets()),
            IpAddr::V6(a) => mac.update(&a.octets()),
        }
        mac.update(&to.port().to_be_bytes());
        let tag = mac.finalize().into_bytes();
        out.copy_from_slice(&tag[..COOKIE_LEN]);
        out
    }

    fn cookie_bucket(&self) -> u64 {
        self.now.as_micros() / COOKIE_PERIOD.as_micros()
    }

    /// True when `cookie` is the one this directory gives `from` now or gave it in the
    /// previous time bucket.
    fn cookie_valid(&self, from: SocketAddr, cookie: &[u8; COOKIE_LEN]) -> bool {
        let bucket = self.cookie_bucket();
        [Some(bucket), bucket.checked_sub(1)]
            .into_iter()
            .flatten()
            .any(|b| equal_in_constant_time(&self.cookie(from, b), cookie))
    }

    /// True when `cookie` is valid for `from`; otherwise a cookie answer to `request`
    /// (a request of `received` bytes) is queued, within the amplification bound, as
    /// for a snapshot request without one (dropped and counted when the queue is full).
    pub(super) fn verify_cookie(
        &mut self,
        from: SocketAddr,
        received: usize,
        request: u32,
        cookie: Option<[u8; COOKIE_LEN]>,
    ) -> bool {
        if cookie.is_some_and(|c| self.cookie_valid(from, &c)) {
            return true;
        }
        let answer = Answer::Cookie {
            to: from,
            request,
            limit: received.saturating_mul(AMPLIFICATION),
        };
        let counter = match self.admission.answers.push_back(answer) {
            Err(_) => &mut self.stats.snapshots_dropped,
            Ok(()) => &mut self.stats.snapshot_cookies,
        };
        *counter += 1;
        false
    }

    /// Takes a snapshot request of `received` bytes from `from`: with a valid cookie its
    /// pages are queued, without one its cookie; either is dropped (and counted) when
    /// the snapshot queue is full.
    pub(super) fn admit_snapshot(
        &mut self,
        from: SocketAddr,
        received: usize,
        request: SnapshotRequest,
    ) {
        let verified = request.cookie.is_some_and(|c| self.cookie_valid(from, &c));
        let answer = if verified {
            Answer::Pages { to: from, request }
        } else {
            Answer::Cookie {
                to: from,
                request: request.request,
                limit: received.saturating_mul(AMPLIFICATION),
            }
        };
        let counter = match (self.admission.answers.push_back(answer), verified) {
            (Err(_), _) => &mut self.stats.snapshots_dropped,
            (Ok(()), true) => &mut self.stats.snapshots,
            (Ok(()), false) => &mut self.stats.snapshot_cookies,
        };
        *counter += 1;
    }

    /// The next snapshot answer datagram (body only: `buf` leaves room for the trailer).
    pub(super) fn transmit_answer(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let trailer = self.config.trailer_len();
        loop {
            let pages = matches!(self.admission.answers.front(), Some(Answer::Pages { .. }));
            let next = if pages && self.is_catching_up() {
                // Pages are held until this new publisher holds what its predecessor
                // sent; a cookie, which depends on no state, goes out meanwhile.
                self.admission.take_cookie()
            } else {
                self.admission.answers.pop_front()
            };
            match next? {
                Answer::Cookie { to, request, limit } => {
                    let reply = CookieReply {
                        request,
                        cookie: self.cookie(to, self.cookie_bucket()),
                    };
                    // Within the amplification bound, trailer included, or not at all.
                    let room = limit.saturating_sub(trailer).min(buf.len());
                    let env = &self.config.environment;
                    if let Ok(len) = wire::encode(env, &reply, &mut buf[..room]) {
                        return Some(Transmit {
                            destination: to,
                            len,
                        });
                    }
                }
                Answer::Pages { to, mut request } => {
                    let ip = source_of(to);
                    let now = self.now;
                    if !self.admission.may_send(&self.config.admission, ip, now) {
                        // Out of budget: the client asks again from where it stopped.
                        self.stats.snapshots_throttled += 1;
                        continue;
                    }
                    let header = PageHeader {
                        request: request.request,
                        as_of: self.last_version,
                        after: request.after.clone(),
                        complete: false,
                    };
                    let written = self.write_answer(&header, &request, buf);
                    let Some((len, last, complete)) = written else {
                        continue;
                    };
                    self.admission.spent(ip, len + trailer);
                    request.max_pages = request.max_pages.saturating_sub(1);
                    if !complete && request.max_pages > 0 {
                        request.after = last;
                        // Back at the front: the next page goes out next.
                        let _ = self
                            .admission
                            .answers
                            .push_front(Answer::Pages { to, request });
                    }
                    return Some(Transmit {
                        destination: to,
                        len,
                    });
                }
            }
        }
    }

    /// Rejects a request of `received` bytes that could not be decoded, unless the
    /// rejection would be more than [`AMPLIFICATION`] times as large (a frame of little
    /// more than a header: its sender, unverified, gets no answer).
    pub(super) fn reject_within_bound(
        &mut self,
        received: usize,
        to: SocketAddr,
        env: Environment,
        request: u32,
        reason: RejectReason,
    ) {
        let reject = Reject {
            request,
            reason,
            directory_environment: self.config.environment.clone(),
            floor: 0,
        };
        // The largest rejection (two 16-byte environments, a 5-byte request id, a zero
        // floor) is 46 bytes.
        let mut buf = [0u8; 64];
        let fits = wire::encode(&env, &reject, &mut buf)
            .is_ok_and(|len| len <= received.saturating_mul(AMPLIFICATION));
        if fits {
            self.reject(to, env, request, reason);
        }
    }

    /// Refuses a new registration from `from` with `source_budget` when its address,
    /// or its /24 or /64 network, already holds as many live registrations as allowed.
    /// True when refused; otherwise the registration is counted for both.
    pub(super) fn over_registration_budget(
        &mut self,
        from: SocketAddr,
        env: &Environment,
        request: u32,
    ) -> bool {
        let ip = source_of(from);
        let budget = &self.config.admission;
        let holders = [
            (Holder::Address(ip), budget.registrations_per_address),
            (Holder::network(ip), budget.registrations_per_network),
        ];
        if holders
            .iter()
            .any(|&(h, budget)| self.held_by(h, budget) >= budget)
        {
            self.reject(from, env.clone(), request, RejectReason::SourceBudget);
            return true;
        }
        for (holder, _) in holders {
            if let Some(c) = self
                .admission
                .counts
                .iter_mut()
                .find(|c| c.holder == holder)
            {
                c.live = c.live.saturating_add(1);
            }
        }
        false
    }

    /// True when a new subscription from `from` would take its address, or its /24 or
    /// /64 network, past its subscription budget.
    pub(super) fn over_subscription_budget(&self, from: SocketAddr) -> bool {
        let ip = source_of(from);
        let budget = &self.config.admission;
        [
            (Holder::Address(ip), budget.subscriptions_per_address),
            (Holder::network(ip), budget.subscriptions_per_network),
        ]
        .iter()
        .any(|&(holder, budget)| {
            let held = self
                .subscribers()
                .filter(|s| holder.holds(source_of(s.address)))
                .count();
            held >= budget as usize
        })
    }

    /// At least the live registrations `holder` holds, compared with `budget`: a count
    /// kept since it was last counted (every registration taken adds one, removals
    /// are not followed, so it can only be too high), counted again when it is missing
    /// or when it would refuse and is older than [`RECOUNT`]. Without a count, a
    /// registry smaller than `budget` needs none: 0.
    fn held_by(&mut self, holder: Holder, budget: u32) -> u32 {
        let now = self.now;
        let counts = &mut self.admission.counts;
        let index = counts.iter().position(|c| c.holder == holder);
        if let Some(c) = index.map(|i| counts[i]) {
            if c.live < budget || now.saturating_since(c.counted) < RECOUNT {
                return c.live;
            }
        } else if self.registry.len() < budget as usize {
            return 0;
        }
        let live = self
            .registry
            .iter()
            .filter(|(_, e)| e.record.is_live() && e.source.is_some_and(|s| holder.holds(s)))
            .count();
        let count = Count {
            holder,
            live: u32::try_from(live).unwrap_or(u32::MAX),
            counted: now,
        };
        let counts = &mut self.admission.counts;
        match index {
            Some(i) => counts[i] = count,
            None => {
                if counts.is_full() {
                    let oldest = (0..counts.len())
                        .min_by_key(|&i| counts[i].counted)
                        .unwrap_or(0);
                    counts.swap_remove(oldest);
                }
                // Cannot fail: room was made above.
                let _ = counts.push(count);
            }
        }
        count.live
    }
}
