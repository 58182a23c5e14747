//! The unregister-notification counters and announcement batching.
//!
//! A removed service stays in the registry as [`Departed`](crate::RecordState::Departed)
//! with a counter of notifications still to send. The first notification is due at
//! once; each processing interval makes the next one due; every notification actually
//! written into a datagram decrements the counter, so exactly N go out (XOOM sends one
//! less than configured). When the counter reaches zero the entry stays as a tombstone
//! for the directory's retention time, then is reaped. The counters live in the
//! registry's own bounded storage.
//!
//! New and changed registrations are announced at once and then repeated a few times
//! (default 3 in all), one per processing interval, so that a listener on a lossy link
//! rarely has to wait for the anti-entropy sweep. Listeners ignore the repeats (same
//! version). Announcements batch every pending change, live and departed, into as few
//! datagrams as fit.

use crate::registry::{Entry, List, RecordState, Registry, UNANNOUNCED};
use crate::wire::{BatchWriter, Change};

/// Marks a live entry as changed: it will be announced as registered at once, and
/// `announcements - 1` more times, one per processing interval.
pub(crate) fn mark_changed(entry: &mut Entry, announcements: u8) {
    entry.announce = announcements > 0;
    entry.repeats = announcements.saturating_sub(1);
    entry.due = false;
    entry.stamp = UNANNOUNCED;
}

/// Turns an entry into a departed one with `notifications` still to send, the first due
/// at once when `due` (a replica leaves the counting to the publisher).
pub(crate) fn depart(entry: &mut Entry, version: crate::Version, notifications: u8, due: bool) {
    if entry.record.is_live() {
        entry.record.ended = entry.record.service.version;
    }
    entry.record.service.version = version;
    entry.record.state = RecordState::Departed {
        remaining: notifications,
    };
    // A count of its own: no older removal's is in it.
    entry.record.counted_from = crate::Version(0);
    entry.announce = false;
    entry.repeats = 0;
    entry.due = due;
    entry.stamp = UNANNOUNCED;
}

/// Makes the next repeat due: an unregistered notification for every departed entry
/// that still has some, a registered announcement for every live entry that still has
/// repeats (none can unless registrations are announced more than once,
/// `live_repeats`: then the whole registry is looked at, else only the departed entries
/// with notifications left, which the registry lists). Returns how many entries became
/// due, and whether any entry still has something to repeat after this.
pub(crate) fn tick(registry: &mut Registry<'_>, live_repeats: bool) -> (usize, bool) {
    let (mut newly_due, mut any) = (0, false);
    if !live_repeats {
        let mut next = registry.walk(List::Notifying).next();
        while let Some(slot) = next {
            // Becoming due leaves the entry where it is in this list.
            next = registry.next_in(slot, List::Notifying);
            if let Some(mut e) = registry.get_mut(slot) {
                if !e.due {
                    e.due = true;
                    newly_due += 1;
                }
                any = true;
            }
        }
        return (newly_due, any);
    }
    for slot in 0..registry.len() {
        let Some(mut e) = registry.get_mut(slot) else {
            continue;
        };
        match e.record.state {
            RecordState::Departed { remaining } if remaining > 0 => {
                if !e.due {
                    e.due = true;
                    newly_due += 1;
                }
                any = true;
            }
            RecordState::Live { .. } if e.repeats > 0 => {
                if !e.announce {
                    e.announce = true;
                    e.repeats -= 1;
                    newly_due += 1;
                }
                any |= e.repeats > 0 || e.announce;
            }
            _ => {}
        }
    }
    (newly_due, any)
}

/// What one announcement datagram carried.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct Written {
    /// Registered changes written.
    pub registered: usize,
    /// Unregistered notifications written.
    pub unregistered: usize,
}

/// Writes as many pending changes as fit into `writer`, oldest first (the registry
/// lists them), clearing their flags and counting down the notifications written, and
/// stamps every state announced for the first time with `link` (the datagram's
/// `as_of`). `dirty` is called for every entry whose stored state changed (a departed
/// entry whose last notification was written is then finished: `Departed { remaining:
/// 0 }`). It stops once `pending` changes are written.
pub(crate) fn fill(
    registry: &mut Registry<'_>,
    writer: &mut BatchWriter<'_>,
    pending: usize,
    link: crate::Version,
    mut dirty: impl FnMut(&mut Entry),
) -> Written {
    let mut written = Written::default();
    while written.registered + written.unregistered < pending {
        // Each change written leaves the list: the head is always the next one.
        let Some(slot) = registry.walk(List::Pending).next() else {
            break;
        };
        let Some(mut e) = registry.get_mut(slot) else {
            break;
        };
        match e.record.state {
            RecordState::Live { .. } => {
                if !writer.push(&Change::Registered(e.record.service.clone())) {
                    break;
                }
                e.announce = false;
                written.registered += 1;
            }
            RecordState::Departed { remaining } => {
                let change = Change::Unregistered {
                    name: e.record.service.registration.name.clone(),
                    version: e.record.service.version,
                };
                if !writer.push(&change) {
                    break;
                }
                e.due = false;
                e.record.state = RecordState::Departed {
                    remaining: remaining.saturating_sub(1),
                };
                written.unregistered += 1;
                dirty(&mut e);
            }
        }
        if e.stamp == UNANNOUNCED {
            e.stamp = link;
        }
    }
    written
}

/// True when a state no announcement carried yet is among the changes pending.
pub(crate) fn any_first(registry: &Registry<'_>) -> bool {
    registry
        .entries(List::Pending)
        .any(|(_, e)| e.stamp == UNANNOUNCED)
}

/// True when `entry` has something to announce now.
pub(crate) fn is_pending(entry: &Entry) -> bool {
    match entry.record.state {
        RecordState::Live { .. } => entry.announce,
        RecordState::Departed { remaining } => entry.due && remaining > 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::Location;
    use crate::name::Environment;
    use crate::registry::Slot;
    use crate::service::Version;
    use crate::wire::AnnounceHeader;
    use core::net::{IpAddr, Ipv4Addr};

    fn entry(name: &str) -> Entry {
        crate::registry::live_entry(name)
    }

    /// The changes are written in the order they became due, from the registry's list
    /// of them, whatever slots they are in: one that does not fit waits at the head for
    /// the next datagram, and a change made later is found without walking over the
    /// ones written before (a pass over the slots from a cursor walked the whole
    /// registry for each new name once evictions had moved the slots about).
    #[test]
    fn changes_are_written_in_the_order_they_became_due() {
        let mut slots: [Slot; 8] = [const { None }; 8];
        let mut index = [0u32; 8];
        let mut registry = Registry::new(&mut slots, &mut index);
        for name in ["a", "b", "c", "d"] {
            registry.insert(entry(name)).ok().unwrap();
        }
        // Due in the order d, b, c (not the slots' order).
        for name in ["d", "b", "c"] {
            let slot = registry.find(name).unwrap();
            mark_changed(&mut registry.get_mut(slot).unwrap(), 1);
        }
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let header = AnnounceHeader {
            directory: Location::new(ip, 37399).unwrap(),
            as_of: Version(5),
            previous: Version(4),
        };
        let env = Environment::default();
        let names = |registry: &Registry<'_>| -> heapless::Vec<heapless::String<4>, 8> {
            registry
                .walk(List::Pending)
                .map(|slot| {
                    let e = registry.get(slot).unwrap();
                    heapless::String::try_from(e.record.name().as_str()).unwrap()
                })
                .collect()
        };
        assert_eq!(names(&registry), ["d", "b", "c"]);
        assert!(any_first(&registry));
        let mut buf = [0u8; 1400];
        let mut writer = BatchWriter::announce(&env, &header, &mut buf).unwrap();
        let written = fill(&mut registry, &mut writer, 2, Version(5), |_| {});
        assert_eq!(written.registered, 2, "stops at the count it was given");
        assert_eq!(names(&registry), ["c"], "the first two went");
        let stamped = |name| registry.get(registry.find(name).unwrap()).unwrap().stamp;
        assert_eq!((stamped("d"), stamped("b")), (Version(5), Version(5)));
        assert_eq!(stamped("c"), UNANNOUNCED);
        // A change made now comes after the one still waiting.
        let slot = registry.find("a").unwrap();
        mark_changed(&mut registry.get_mut(slot).unwrap(), 1);
        assert_eq!(names(&registry), ["c", "a"]);
        let mut buf = [0u8; 1400];
        let mut writer = BatchWriter::announce(&env, &header, &mut buf).unwrap();
        let written = fill(&mut registry, &mut writer, 8, Version(6), |_| {});
        assert_eq!(written.registered, 2);
        assert!(names(&registry).is_empty());
        assert!(!any_first(&registry));
    }
}
