//! Repairs: the changes after a version, for a listener that missed an announcement.
//!
//! Every state carries the `as_of` of the announcement that first carried it (its
//! stamp). A listener that heard every link of the announcement chain up to `since`
//! asks for the states stamped after it, and gets them in [`ChangesPage`]s: live
//! services as they are, removed ones as removals (tombstones are kept for the
//! tombstone retention). A directory that has dropped a state stamped after `since`
//! (a tombstone reaped or evicted, an entry forgotten) or that started after it cannot
//! list every removal since, and answers with a full snapshot instead; so does a
//! replica, which announces nothing.
//!
//! [`ChangesPage`]: crate::wire::Message::ChangesPage

use super::*;
use crate::registry::UNANNOUNCED;
use crate::wire::Change;

/// At most this many states stamped after a version are taken from the registry's
/// index of stamps for one page (sorted on the stack); more, and the page is written by
/// walking the registry.
pub(super) const CHANGED_SCRATCH: usize = 64;

/// The change `entry` stands for: its registration, or its removal.
fn change_of(entry: &Entry) -> Change {
    if entry.record.is_live() {
        Change::Registered(entry.record.service.clone())
    } else {
        Change::Unregistered {
            name: entry.record.name().clone(),
            version: entry.record.service.version,
        }
    }
}

impl Directory<'_> {
    /// Writes one page answering a snapshot request: the changes after its `since`
    /// when this directory holds them all, otherwise a page of the snapshot. Returns
    /// the length, the last name written and whether the page is complete.
    pub(super) fn write_answer(
        &self,
        header: &PageHeader,
        request: &wire::SnapshotRequest,
        buf: &mut [u8],
    ) -> Option<(usize, Option<ServiceName>, bool)> {
        match request.since {
            // A replica keeps no announcement chain (it announces nothing): its stamps
            // say nothing of what a listener heard.
            Some(since) if self.publishing && since >= self.repair_floor => {
                let kind = PageKind::Changes;
                self.write_changes(header, &request.interest, since, kind, buf)
            }
            _ => self.write_page(header, &request.interest, PageKind::Snapshot, buf),
        }
    }

    /// Writes one page of the states matching `interest` stamped after `since`, after
    /// `header.after`, like [`write_page`](Self::write_page). The states stamped after
    /// `since` come from the registry's index of stamps when they are few (at most
    /// [`CHANGED_SCRATCH`]), sorted by name; otherwise the whole registry is walked.
    /// `kind` is a page of changes, answering a request or delivered.
    pub(super) fn write_changes(
        &self,
        header: &PageHeader,
        interest: &Interest,
        since: Version,
        kind: PageKind,
        buf: &mut [u8],
    ) -> Option<(usize, Option<ServiceName>, bool)> {
        let mut changed = [0u32; CHANGED_SCRATCH];
        self.write_changes_in(header, interest, since, kind, &mut changed, buf)
    }

    /// [`write_changes`](Self::write_changes), taking the states stamped after `since`
    /// from the index when they fit in `changed`.
    fn write_changes_in(
        &self,
        header: &PageHeader,
        interest: &Interest,
        since: Version,
        kind: PageKind,
        changed: &mut [u32],
        buf: &mut [u8],
    ) -> Option<(usize, Option<ServiceName>, bool)> {
        let env = &self.config.environment;
        let mut writer = BatchWriter::page(env, header, kind, buf).ok()?;
        let wanted = |e: &Entry| e.stamp > since && interest.matches(e.record.name().as_str());
        let item = |e: &Entry| wanted(e).then(|| change_of(e));
        let registry = &self.registry;
        let (last, complete) = match registry.stamped_after(since, changed) {
            Some(n) => {
                let after = header.after.as_ref().map(|n| n.as_str());
                let name = |slot: u32| {
                    registry
                        .get(slot as usize)
                        .map(|e| e.record.name().as_str())
                };
                let mut kept = 0;
                for i in 0..n {
                    let slot = changed[i];
                    let due = registry.get(slot as usize).is_some_and(&wanted);
                    if due && name(slot) > after {
                        changed[kept] = slot;
                        kept += 1;
                    }
                }
                let changed = &mut changed[..kept];
                changed.sort_unstable_by(|&a, &b| name(a).cmp(&name(b)));
                let entries = changed.iter().filter_map(|&s| registry.get(s as usize));
                anti_entropy::fill_from(header, &mut writer, entries, item)
            }
            None => self.fill_page(header, &mut writer, item),
        };
        Some((writer.len(), last, complete))
    }

    /// `entry` is no longer held: a repair since a version before its last change (or,
    /// for a live entry, before now) can no longer list that change.
    pub(super) fn forget_changes(&mut self, entry: &Entry) {
        let floor = if entry.record.is_live() || entry.stamp == UNANNOUNCED {
            self.last_version
        } else {
            entry.stamp.max(entry.record.service.version)
        };
        self.repair_floor = self.repair_floor.max(floor);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::registry::UNANNOUNCED;
    use core::net::{IpAddr, Ipv4Addr};
    use std::vec;

    const KIND: PageKind = PageKind::Changes;

    /// Pages written from the index of stamps are, byte for byte, those written by
    /// walking the registry (forced by a scratch too small for any change): same
    /// states, in name order, split into the same pages, for random stamps, removals,
    /// interests and cursors.
    #[test]
    fn pages_from_the_index_of_stamps_are_those_of_the_walk() {
        const SERVICES: usize = 150;
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let group = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 37371);
        let mut config = DirectoryConfig::new(Location::new(ip, 37399).unwrap(), group);
        config.max_datagram = 600;
        let (mut slots, mut index) = (vec![None; SERVICES], vec![0u32; SERVICES]);
        let mut d = Directory::new(config, &mut slots, &mut index).unwrap();
        let now = Instant::from_millis(1_000);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for i in 0..SERVICES {
            // Names inserted out of order, so slot order is not name order.
            let name = std::format!("svc-{}-{i}", next(10));
            let state = if next(4) == 0 {
                RecordState::Departed { remaining: 0 }
            } else {
                RecordState::Live {
                    expires: now + Duration::from_secs(60),
                }
            };
            let record = crate::registry::test_record(&name, Version(1 + i as u64), state);
            d.restore(now, record).unwrap();
        }
        for round in 0..30 {
            // Restamp some entries: most recent, some unannounced or from before.
            for _ in 0..1 + next(20) {
                let slot = next(d.registry.len() as u64) as usize;
                let stamp = match next(6) {
                    0 => Version(0),
                    1 => UNANNOUNCED,
                    _ => Version(100 + round * 10 + next(10)),
                };
                if let Some(mut e) = d.registry.get_mut(slot) {
                    e.stamp = stamp;
                }
            }
            let since = Version(90 + next(round * 10 + 30));
            let interest = match next(3) {
                0 => Interest::all(),
                n => Interest::parse_all([std::format!("svc-{n}*").as_str()]).unwrap(),
            };
            let mut header = PageHeader {
                request: 1,
                as_of: Version(1_000),
                after: None,
                complete: false,
            };
            let mut pages = 0;
            loop {
                let (mut a, mut b) = ([0u8; 600], [0u8; 600]);
                let mut changed = [0u32; CHANGED_SCRATCH];
                let indexed = d
                    .write_changes_in(&header, &interest, since, KIND, &mut changed, &mut a)
                    .unwrap();
                let walked = d
                    .write_changes_in(&header, &interest, since, KIND, &mut [], &mut b)
                    .unwrap();
                assert_eq!(indexed, walked, "round {round}, page {pages}");
                assert_eq!(a[..indexed.0], b[..walked.0], "round {round}, page {pages}");
                pages += 1;
                if indexed.2 {
                    break;
                }
                header.after = indexed.1;
            }
        }
    }
}
