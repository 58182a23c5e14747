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

use crate::registry::{Entry, RecordState, Registry, UNANNOUNCED};
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
/// repeats. Returns how many entries became due, and whether any entry still has
/// something to repeat after this.
pub(crate) fn tick(registry: &mut Registry<'_>) -> (usize, bool) {
    let (mut newly_due, mut any) = (0, false);
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

/// Writes as many pending changes as fit into `writer`, clearing their flags and
/// counting down the notifications written, and stamps every state announced for the
/// first time with `link` (the datagram's `as_of`). `dirty` is called for every entry
/// whose stored state changed (a departed entry whose last notification was written is
/// then finished: `Departed { remaining: 0 }`). The pass starts at slot `from`
/// (wrapping) and stops once `pending` changes are written; it returns the slot to
/// start the next pass at (after the last slot written, possibly the registry's length,
/// where the next new entry goes), so that a burst of changes costs one pass over the
/// registry in all, not one per datagram.
pub(crate) fn fill(
    registry: &mut Registry<'_>,
    writer: &mut BatchWriter<'_>,
    from: usize,
    pending: usize,
    link: crate::Version,
    mut dirty: impl FnMut(&mut Entry),
) -> (Written, usize) {
    let mut written = Written::default();
    let len = registry.len();
    let start = if from < len { from } else { 0 };
    // The next pass resumes after the last slot written, without wrapping: new entries
    // go to the end of the slots, so after the last slot is where they will be.
    let mut resume = start;
    for k in 0..len {
        let slot = (start + k) % len;
        if written.registered + written.unregistered >= pending {
            return (written, resume);
        }
        let Some(mut e) = registry.get_mut(slot) else {
            continue;
        };
        match e.record.state {
            RecordState::Live { .. } if e.announce => {
                if !writer.push(&Change::Registered(e.record.service.clone())) {
                    return (written, slot);
                }
                e.announce = false;
                if e.stamp == UNANNOUNCED {
                    e.stamp = link;
                }
                written.registered += 1;
                resume = slot + 1;
            }
            RecordState::Departed { remaining } if e.due && remaining > 0 => {
                let change = Change::Unregistered {
                    name: e.record.service.registration.name.clone(),
                    version: e.record.service.version,
                };
                if !writer.push(&change) {
                    return (written, slot);
                }
                e.due = false;
                if e.stamp == UNANNOUNCED {
                    e.stamp = link;
                }
                e.record.state = RecordState::Departed {
                    remaining: remaining - 1,
                };
                written.unregistered += 1;
                resume = slot + 1;
                dirty(&mut e);
            }
            _ => {}
        }
    }
    (written, resume)
}

/// True when a state no announcement carried yet is among the `pending` changes that
/// [`fill`] would find from slot `from`: a pass that stops as soon as it knows.
pub(crate) fn any_first(registry: &Registry<'_>, from: usize, pending: usize) -> bool {
    let len = registry.len();
    let start = if from < len { from } else { 0 };
    let mut seen = 0;
    for k in 0..len {
        if seen >= pending {
            break;
        }
        let Some(e) = registry.get((start + k) % len) else {
            continue;
        };
        if is_pending(e) {
            if e.stamp == UNANNOUNCED {
                return true;
            }
            seen += 1;
        }
    }
    false
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

    /// New entries go to the end of the slots: a pass that wrote the last slot must
    /// resume after it, where the next new entries will be, and not back where it began
    /// (every later pass would then walk over everything announced since, which made
    /// the announcement writer the directory's hottest path under a stream of new
    /// registrations).
    #[test]
    fn a_pass_that_wrote_the_last_slot_resumes_after_it() {
        let mut slots: [Slot; 8] = [const { None }; 8];
        let mut index = [0u32; 8];
        let mut registry = Registry::new(&mut slots, &mut index);
        for i in 0..4 {
            let slot = registry
                .insert(entry(["a", "b", "c", "d"][i]))
                .ok()
                .unwrap();
            if i >= 2 {
                mark_changed(&mut registry.get_mut(slot).unwrap(), 1);
            }
        }
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let header = AnnounceHeader {
            directory: Location::new(ip, 37399).unwrap(),
            as_of: Version(5),
            previous: Version(4),
        };
        let env = Environment::default();
        let mut buf = [0u8; 1400];
        let mut writer = BatchWriter::announce(&env, &header, &mut buf).unwrap();
        let (written, next) = fill(&mut registry, &mut writer, 2, 2, Version(5), |_| {});
        assert_eq!(written.registered, 2);
        assert_eq!(next, 4, "resumes after the last slot written");
        // The next new entry, in slot 4, is the first the next pass looks at.
        let slot = registry.insert(entry("e")).ok().unwrap();
        mark_changed(&mut registry.get_mut(slot).unwrap(), 1);
        assert!(any_first(&registry, next, 1));
    }
}
