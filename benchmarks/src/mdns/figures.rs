//! What one run measures: idle windows and each system's figures at one N.

use super::*;

/// Idle traffic of one window, one system.
#[derive(Clone, Copy, Default)]
pub(super) struct Window {
    pub(super) multicast: Tally,
    pub(super) unicast: Tally,
    /// Herald only: registrant → directory datagrams (side A's loopback).
    pub(super) renew_in: Tally,
    /// Herald only: directory → registrant datagrams.
    pub(super) renew_out: Tally,
}

impl Window {
    pub(super) fn of(veth: &Counts, lo: &Counts, system: fn(&Flow) -> bool, port: u16) -> Window {
        Window {
            multicast: veth.sum(|f| system(f) && f.multicast),
            unicast: veth.sum(|f| system(f) && !f.multicast),
            // On loopback every frame is seen twice (sent, received): count the received.
            renew_in: lo.sum(|f| !f.outgoing && f.udp && f.dst == port),
            renew_out: lo.sum(|f| !f.outgoing && f.udp && f.src == port),
        }
    }

    /// Bytes on the veth plus renewal bytes (renewals cross the network when the
    /// registrants are on other hosts than the directory).
    pub(super) fn total_bytes(&self) -> u64 {
        self.multicast.bytes + self.unicast.bytes + self.renew_in.bytes + self.renew_out.bytes
    }

    pub(super) fn json(&self) -> Value {
        let t = |t: Tally| json!({"packets": t.packets, "bytes": t.bytes});
        json!({"multicast": t(self.multicast), "unicast": t(self.unicast),
            "renew_in": t(self.renew_in), "renew_out": t(self.renew_out)})
    }
}

/// Mean and largest of `f` over windows.
pub(super) fn mean_max(windows: &[Window], f: impl Fn(&Window) -> u64) -> (f64, u64) {
    let values: Vec<u64> = windows.iter().map(f).collect();
    let mean = values.iter().sum::<u64>() as f64 / values.len().max(1) as f64;
    (mean, values.into_iter().max().unwrap_or(0))
}

/// Times the benchmark browses again after mdns-sd ended a browse; after that the
/// browse stays ended (browsing again at N = 10,000 only refills the channel at once).
pub(super) const REBROWSE: usize = 3;

/// When the last frame of each step of Herald's registration burst crossed an interface,
/// from the first register call: the registrations reaching the directory's loopback,
/// its acknowledgements leaving, its announcements reaching the watcher's side.
#[derive(Clone, Copy, Default, Debug)]
pub(super) struct Timeline {
    pub(super) last_register: Option<Duration>,
    pub(super) last_ack: Option<Duration>,
    pub(super) last_announcement: Option<Duration>,
}

/// One system's figures at one N.
#[derive(Default)]
pub(super) struct Figures {
    /// Per service: its register call → its discovery.
    pub(super) discover: Vec<Duration>,
    /// First register call → last discovery (all N), if all were discovered.
    pub(super) all: Option<Duration>,
    /// Unregister call → removal event, per sample (`None`: not within the bound).
    pub(super) remove: Vec<Option<Duration>>,
    /// Herald only: unregister call → acknowledged, per sample of `remove`.
    pub(super) remove_acked: Vec<Duration>,
    /// Side A → side B on the veth, first 10 s.
    pub(super) first: Tally,
    /// Registrant ↔ directory on side A's loopback, first 10 s (Herald only).
    pub(super) first_lo: Tally,
    /// Herald only: where the registration burst's time went, from the first register
    /// call (see [`Timeline`]).
    pub(super) timeline: Timeline,
    pub(super) idle: Vec<Window>,
    /// mdns-sd only: when mdns-sd ended the browse (after the first registration), each
    /// time (the benchmark browsed again).
    pub(super) closed: Vec<Duration>,
}

impl Figures {
    /// Herald only: how long the slowest removal took to be acknowledged (where the
    /// time went: the directory's durable write, or the announcement after it).
    pub(super) fn slowest_removal_acked(&self) -> Option<Duration> {
        let slowest = (self.remove.iter().enumerate())
            .filter_map(|(i, r)| r.map(|r| (r, i)))
            .max()?;
        self.remove_acked.get(slowest.1).copied()
    }

    /// Whether mdns-sd ended the browse for good (the idle figures then lack a browser).
    pub(super) fn browse_ended(&self) -> bool {
        self.closed.len() > REBROWSE
    }

    pub(super) fn json(&self) -> Value {
        let removed: Vec<Duration> = self.remove.iter().flatten().copied().collect();
        json!({
            "discover": Summary::of(&self.discover).json(),
            "discovered": self.discover.len(),
            "all_ms": self.all.map(ms),
            "last_register_ms": self.timeline.last_register.map(ms),
            "last_ack_ms": self.timeline.last_ack.map(ms),
            "last_announcement_ms": self.timeline.last_announcement.map(ms),
            "remove": Summary::of(&removed).json(),
            "remove_missed": self.remove.len() - removed.len(),
            "remove_acked": Summary::of(&self.remove_acked).json(),
            "slowest_remove_acked_ms": self.slowest_removal_acked().map(ms),
            "first10_bytes": self.first.bytes, "first10_packets": self.first.packets,
            "first10_lo_bytes": self.first_lo.bytes, "first10_lo_packets": self.first_lo.packets,
            "idle_windows": self.idle.iter().map(Window::json).collect::<Vec<_>>(),
            "browse_closed_after_ms": self.closed.iter().copied().map(ms).collect::<Vec<_>>(),
            "browse_ended": self.browse_ended(),
        })
    }
}

/// The results at one N.
pub(super) struct Scenario {
    pub(super) n: usize,
    pub(super) clients: usize,
    pub(super) herald: Figures,
    pub(super) mdns: Figures,
}
