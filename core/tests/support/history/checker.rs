//! The invariants a history must keep, checked as it is recorded and once it settles.

use super::super::{HashMap, HashSet};
use herald_core::{ClientEvent, Instant, Service};
use std::collections::BTreeMap;

/// One broken invariant.
#[derive(Clone, Debug)]
pub struct Violation {
    /// Which invariant (a short fixed label).
    pub invariant: &'static str,
    /// When it was seen.
    pub at: Instant,
    /// The name concerned, if one is.
    pub name: Option<String>,
    /// What happened.
    pub detail: String,
}

/// Version spaces: directories sharing a store share versions (space 0); independent
/// directories each count their own (space = directory index).
pub type Space = usize;

/// More version spaces than any topology has (independent directories are two).
const SPACES: Space = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Live,
    Gone,
}

/// What a listener last reported for a name.
#[derive(Clone, Copy, Debug)]
struct Track {
    kind: Kind,
    version: u64,
    space: Space,
}

/// Unregistered notifications sent for one removal.
#[derive(Clone, Copy, Debug)]
struct Count {
    sent: usize,
    first: Instant,
    last: Instant,
}

/// Checks listener events, notification counts and the settled state.
pub struct Checker {
    /// Notifications a directory sends per removal (N).
    pub notifications: usize,
    tracks: HashMap<(usize, String), Track>,
    /// Every (space, name, version) a directory sent as live.
    ever_live: HashSet<(Space, String, u64)>,
    /// The part of `ever_live` a listener could have been told: announced or paged (not
    /// only acknowledged to its registrant).
    shown_live: HashSet<(Space, String, u64)>,
    /// Every (space, name, version) a directory held live: `ever_live`, and states only
    /// stored (such as a request's winner kept at a new version before it reached the
    /// publisher).
    held_live: HashSet<(Space, String, u64)>,
    newest_live: HashMap<(Space, String), u64>,
    /// The newest removal announced per (space, name).
    newest_removal: HashMap<(Space, String), u64>,
    counts: BTreeMap<(Space, String, u64), Count>,
    /// What was found.
    pub violations: Vec<Violation>,
}

impl Checker {
    /// A checker for directories that send `notifications` per removal.
    pub fn new(notifications: usize) -> Self {
        Checker {
            notifications,
            tracks: HashMap::default(),
            ever_live: HashSet::default(),
            shown_live: HashSet::default(),
            held_live: HashSet::default(),
            newest_live: HashMap::default(),
            newest_removal: HashMap::default(),
            counts: BTreeMap::new(),
            violations: Vec::new(),
        }
    }

    fn violate(&mut self, invariant: &'static str, at: Instant, name: &str, detail: String) {
        self.violations.push(Violation {
            invariant,
            at,
            name: Some(name.to_string()),
            detail,
        });
    }

    /// A directory announced `name` live at `version`: never older than a removal of it
    /// already announced.
    pub fn live_announced(
        &mut self,
        at: Instant,
        directory: usize,
        space: Space,
        name: &str,
        version: u64,
    ) {
        if let Some(removed) = self.newest_removal.get(&(space, name.to_string())).copied() {
            if version < removed {
                self.violate(
                    "directory resurrection",
                    at,
                    name,
                    format!("directory {directory} announced v{version} live after announcing its removal at v{removed}"),
                );
            }
        }
        self.live_sent(space, name, version);
    }

    /// True when a directory announced the removal of `name` at `version`.
    pub fn removal_announced(&self, space: Space, name: &str, version: u64) -> bool {
        self.counts
            .contains_key(&(space, name.to_string(), version))
    }

    /// A directory sent `name` at `version` as live (announcement or page).
    pub fn live_sent(&mut self, space: Space, name: &str, version: u64) {
        self.shown_live.insert((space, name.to_string(), version));
        self.live_acknowledged(space, name, version);
    }

    /// A directory acknowledged a registration of `name` at `version`: live there, shown
    /// to a listener or not.
    pub fn live_acknowledged(&mut self, space: Space, name: &str, version: u64) {
        if self.ever_live.insert((space, name.to_string(), version)) {
            let newest = self
                .newest_live
                .entry((space, name.to_string()))
                .or_default();
            *newest = (*newest).max(version);
        }
    }

    /// A directory held `name` live at `version` (stored it), sent or not.
    pub fn live_held(&mut self, space: Space, name: &str, version: u64) {
        self.held_live.insert((space, name.to_string(), version));
    }

    /// The publisher sent one `unregistered` notification for a removal.
    pub fn notification_sent(&mut self, space: Space, name: &str, version: u64, at: Instant) {
        let newest = self
            .newest_removal
            .entry((space, name.to_string()))
            .or_default();
        *newest = (*newest).max(version);
        self.counts
            .entry((space, name.to_string(), version))
            .and_modify(|c| {
                c.sent += 1;
                c.last = at;
            })
            .or_insert(Count {
                sent: 1,
                first: at,
                last: at,
            });
    }

    /// A listener now follows a directory of another version space: what it reported
    /// before is not comparable by version.
    pub fn forget_listener(&mut self, listener: usize) {
        self.tracks.retain(|(l, _), _| *l != listener);
    }

    /// `listener` gave `name` up for room: it holds nothing of it now, and may take any
    /// live state of it again.
    pub fn evicted(&mut self, listener: usize, name: &str) {
        self.tracks.remove(&(listener, name.to_string()));
    }

    /// Checks one event of `listener`, which follows version space `space`.
    /// `kept_renewing` is `Some` (with what is known of the removal) when an
    /// `unregistered` event concerns a registration its registrant never gave up, under
    /// conditions where the client promises to hold it.
    pub fn listener_event(
        &mut self,
        at: Instant,
        listener: usize,
        space: Space,
        event: &ClientEvent,
        kept_renewing: Option<String>,
    ) {
        let (kind, service): (Kind, &Service) = match event {
            ClientEvent::Discovered(s) | ClientEvent::Changed(s) => (Kind::Live, s),
            ClientEvent::Unregistered(s) => (Kind::Gone, s),
            _ => return,
        };
        let name = service.name().as_str().to_string();
        let version = service.version.0;
        let key = (listener, name.clone());
        let elsewhere = |s: &HashSet<(Space, String, u64)>| {
            (0..SPACES).any(|other| other != space && s.contains(&(other, name.clone(), version)))
        };
        if kind == Kind::Gone
            && !self.ever_live.contains(&(space, name.clone(), version))
            && elsewhere(&self.ever_live)
        {
            // A state of the version space it followed before, inherited through a
            // failover and dropped because the directory it follows now does not hold
            // it: its version says nothing of this space's.
            self.tracks.remove(&key);
            return;
        }
        let before = self.tracks.get(&key).copied().filter(|t| t.space == space);
        if kind == Kind::Live && !self.ever_live.contains(&(space, name.clone(), version)) {
            self.violate(
                "resurrection",
                at,
                &name,
                format!("listener {listener}: {event:?} at a version no directory sent as live"),
            );
        }
        match (before, kind) {
            (Some(t), Kind::Live) if t.kind == Kind::Gone && version <= t.version => self.violate(
                "resurrection",
                at,
                &name,
                format!(
                    "listener {listener}: discovered v{version} after unregistered v{}",
                    t.version
                ),
            ),
            (Some(t), Kind::Live) if version <= t.version => self.violate(
                "version order",
                at,
                &name,
                format!(
                    "listener {listener}: {event:?} after v{} was reported",
                    t.version
                ),
            ),
            (Some(t), Kind::Gone) if version < t.version => self.violate(
                "version order",
                at,
                &name,
                format!(
                    "listener {listener}: unregistered v{version} after v{} was reported",
                    t.version
                ),
            ),
            _ => {}
        }
        if let (Kind::Gone, Some(hint)) = (kind, kept_renewing) {
            self.violate(
                "spurious expiry",
                at,
                &name,
                format!(
                    "listener {listener}: unregistered v{version} (port {}) while its registrant kept renewing; {hint}",
                    port(service)
                ),
            );
        }
        let version = before.map_or(version, |t| t.version.max(version));
        self.tracks.insert(
            key,
            Track {
                kind,
                version,
                space,
            },
        );
    }

    /// After the run: every removal was notified exactly N times, or fewer when the name
    /// was registered again before the count ended, or up to `slack(first, last)` more
    /// when the publisher changed meanwhile. A removal first notified after `counting`
    /// may still be counting when the run ends (N notifications take N - 1 processing
    /// intervals): it is held to the upper bound only.
    ///
    /// A removal is the end of a live period: removals of one name at successive
    /// versions with no live version sent in between are one removal to a listener
    /// (whatever it last saw live, it is told once that it is gone), and are counted
    /// together. Two directories of a shared store may each remove the same
    /// registration before they hear of the other's removal (a retransmitted
    /// unregistration, or one of a lease the publisher expired); the store keeps the
    /// newer, and the publisher carries its count over to that version.
    ///
    /// A live version that was only acknowledged or stored, never announced nor paged,
    /// started no live period any listener could see: a late retransmitted registration that a
    /// directory other than the publisher accepted after the publisher's removal, and
    /// that a late retransmitted unregistration removed again before the store brought
    /// the publisher anything but that removal. The publisher, which never held it, joins
    /// that removal to its own (same registration, under B old) and listeners are told N
    /// times in all; when the content differs it announces afresh. Or a request's winner
    /// kept at a new version by a directory whose clock runs ahead, removed there before
    /// it reached the publisher, which removed the older state. Removals separated
    /// only by such versions pass when either way of counting holds: all together, or
    /// each on its own. Counted each on its own, a removal that a later one of its group
    /// continued may stop short of N: the directory, which cannot know that the version
    /// in between was never shown (under clock skew it may be newer than the first
    /// removal), counts the later removal afresh, and every listener that took the first
    /// takes the later as newer. So it does when a removal settles a conflict with a live
    /// state another directory gave its version: a listener holding that state takes
    /// only the later removal.
    pub fn check_notifications(
        &mut self,
        now: Instant,
        counting: Instant,
        slack: impl Fn(Instant, Instant) -> usize,
    ) {
        let shown = self.group_removals(&self.shown_live, false);
        let held: HashSet<_> = self.ever_live.union(&self.held_live).cloned().collect();
        let each = self.group_removals(&held, true);
        let mut found = Vec::new();
        for (key, versions, c) in &shown {
            if self
                .count_fault(key, versions, c, false, counting, &slack)
                .is_none()
            {
                continue;
            }
            for (k, vs, part) in &each {
                if k == key && vs.iter().all(|v| versions.contains(v)) {
                    let continued = vs.last() < versions.last();
                    let fault = self.count_fault(k, vs, part, continued, counting, &slack);
                    if let Some(detail) = fault {
                        found.push((k.1.clone(), detail));
                    }
                }
            }
        }
        for (name, detail) in found {
            self.violate("notification count", now, &name, detail);
        }
    }

    /// The removals counted, grouped per name across successive versions with no
    /// version of `live` in between (nor, when `at_same_version`, at the version of the
    /// removal before: a state two directories gave the same version as a removal, which
    /// a listener holding it would not take as older).
    fn group_removals(
        &self,
        live: &HashSet<(Space, String, u64)>,
        at_same_version: bool,
    ) -> Vec<((Space, String), Vec<u64>, Count)> {
        let mut removals: Vec<((Space, String), Vec<u64>, Count)> = Vec::new();
        for ((space, name, version), c) in &self.counts {
            let key = (*space, name.clone());
            let joined = match removals.last_mut() {
                Some((k, versions, total)) if *k == key => {
                    let previous = *versions.last().unwrap_or(version);
                    let live_between = live.iter().any(|(s, l, v)| {
                        let after = previous < *v || (at_same_version && previous == *v);
                        *s == *space && l == name && after && v < version
                    });
                    if !live_between {
                        versions.push(*version);
                        total.sent += c.sent;
                        total.first = total.first.min(c.first);
                        total.last = total.last.max(c.last);
                    }
                    !live_between
                }
                _ => false,
            };
            if !joined {
                removals.push((key, vec![*version], *c));
            }
        }
        removals
    }

    /// What is wrong with the count `c` of the removal of `key` at `versions`, if
    /// anything. A removal `continued` by a later one may have been notified fewer times.
    fn count_fault(
        &self,
        key: &(Space, String),
        versions: &[u64],
        c: &Count,
        continued: bool,
        counting: Instant,
        slack: &impl Fn(Instant, Instant) -> usize,
    ) -> Option<String> {
        let n = self.notifications;
        let last = versions.last().copied().unwrap_or_default();
        let superseded = self.newest_live.get(key).is_some_and(|v| *v > last);
        let extra = slack(c.first, c.last);
        let ok = if superseded || continued || c.first > counting {
            c.sent <= n + extra
        } else {
            c.sent >= n && c.sent <= n + extra
        };
        if ok {
            return None;
        }
        let shown: Vec<String> = versions.iter().map(|v| format!("v{v}")).collect();
        Some(format!(
            "removal {} (space {}) notified {} times, expected {n}{}{} (first {}, last {})",
            shown.join("+"),
            key.0,
            c.sent,
            if extra > 0 {
                format!(" to {}", n + extra)
            } else {
                String::new()
            },
            if superseded {
                ", or fewer: registered again"
            } else {
                ""
            },
            c.first,
            c.last
        ))
    }

    /// A listener's view must equal the registry of the directory it follows (names and
    /// contents; versions may differ after a failover between independent directories).
    /// `invariant` tells which check this is (soon after the faults stop, or later).
    pub fn check_converged(
        &mut self,
        invariant: &'static str,
        now: Instant,
        listener: usize,
        view: &BTreeMap<String, Service>,
        registry: &BTreeMap<String, Service>,
        what: &str,
    ) {
        let mut differences = Vec::new();
        for (name, s) in registry {
            match view.get(name) {
                None => differences.push((name, format!("missing (v{})", s.version.0))),
                Some(v) if !v.registration.same_content(&s.registration) => differences.push((
                    name,
                    format!(
                        "held v{} port {}, directory has v{} port {}",
                        v.version.0,
                        port(v),
                        s.version.0,
                        port(s)
                    ),
                )),
                Some(_) => {}
            }
        }
        for (name, v) in view {
            if !registry.contains_key(name) {
                differences.push((
                    name,
                    format!("held v{} but not in the registry", v.version.0),
                ));
            }
        }
        let total = differences.len();
        for (name, d) in differences.into_iter().take(5) {
            self.violate(
                invariant,
                now,
                name,
                format!("listener {listener} ({what}): {name} {d}; {total} differences in all"),
            );
        }
    }
}

/// The port of a service's first location: the simulated registrations use a new port
/// for every registration call, so it names the call.
pub fn port(service: &Service) -> u16 {
    service
        .registration
        .locations
        .iter()
        .next()
        .map_or(0, |l| l.socket_addr().port())
}
