//! Announcements on the group: changes and removals as they happen, their paced
//! repeats (see [`notify`]), and the beacon.
//!
//! The announcements that carry a change for the first time form a chain: each names
//! the `as_of` of the one before (`previous`), so a listener that missed one knows it
//! at the next one (or at the next beacon, whose `as_of` it has not heard) and asks
//! for the changes since the last link it holds (see the `changes` module). A beacon is
//! due one processing interval after the last link (a *tail beacon*; each link pushes
//! it back, and any beacon sent meanwhile stands for it), so a listener that lost the
//! last link of a burst repairs within about one interval; this is why a new
//! registration is announced once by default, with no repeats.

use super::*;

impl Directory<'_> {
    pub(super) fn schedule_tick(&mut self) {
        if self.publishing && self.next_tick.is_none() {
            self.next_tick = Some(self.now + self.config.interval);
        }
    }

    /// How many times a change is announced here: none by a replica.
    pub(super) fn announcements(&self) -> u8 {
        if self.publishing {
            self.config.registration_announcements
        } else {
            0
        }
    }

    pub(super) fn transmit_announcement(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if self.pending == 0 || !self.announces() {
            return None;
        }
        // A datagram that carries a change for the first time is a link of the chain,
        // with a version of its own; one of repeats only stands where the chain is.
        let previous = self.chain;
        let link = notify::any_first(&self.registry);
        let as_of = if link { self.next_version() } else { previous };
        let header = wire::AnnounceHeader {
            directory: self.config.address,
            as_of,
            previous,
        };
        let mut writer = BatchWriter::announce(&self.config.environment, &header, buf).ok()?;
        let dirty = &mut self.dirty;
        let written = notify::fill(&mut self.registry, &mut writer, self.pending, as_of, |e| {
            touch(e, dirty, false)
        });
        let items = written.registered + written.unregistered;
        if items == 0 {
            // Nothing fitted: cannot happen with a valid maximum size; resynchronise the
            // count rather than spin.
            self.pending = 0;
            return None;
        }
        self.chain = as_of;
        if link {
            // A listener that lost this link hears of it at the next link, or at the
            // beacon one interval after the last link (its `as_of`), not a whole beacon
            // interval later: what lets a new registration be announced once. Each link
            // pushes that beacon back, so a steady stream of changes keeps beacons at
            // their interval.
            self.tail_beacon = Some(self.now + self.config.interval);
        }
        self.pending -= items;
        self.stats.registered_announced += written.registered as u64;
        self.stats.unregistered_announced += written.unregistered as u64;
        Some(Transmit {
            destination: self.config.group,
            len: writer.len(),
        })
    }

    /// Without multicast: makes every announcement due, so that the chain stamps the
    /// changes (deliveries are computed from the stamps), and sends none.
    pub(super) fn announce_unsent(&mut self, buf: &mut [u8]) {
        // Each announcement written takes at least one pending change.
        while self.transmit_announcement(buf).is_some() {}
    }

    pub(super) fn transmit_beacon(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if !core::mem::take(&mut self.beacon_due) || !self.config.multicast {
            return None;
        }
        // A beacon after the last link stands for the tail beacon.
        self.tail_beacon = None;
        self.write_beacon(self.config.group, buf)
    }

    /// After this directory stopped publishing, a beacon (`publishing` false) to the
    /// next subscriber not told yet, one per call: a subscriber hears no beacon on the
    /// group, and follows the publisher at once instead of at its next renewal.
    pub(super) fn transmit_demotion(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let from = self.subscribers.demoted_from?;
        let table = &self.subscribers;
        // Only those that talk to this directory: it holds the others for the publisher.
        let next = (from..table.len()).find(|&i| table.get(i).is_some_and(|s| !s.gone && s.here));
        let Some(i) = next.filter(|_| !self.publishing) else {
            self.subscribers.demoted_from = None;
            return None;
        };
        self.subscribers.demoted_from = Some(i + 1);
        let to = self.subscribers.get(i)?.address;
        self.write_beacon(to, buf)
    }

    fn write_beacon(&self, destination: SocketAddr, buf: &mut [u8]) -> Option<Transmit> {
        let beacon = Beacon {
            directory: self.config.address,
            as_of: self.last_version,
            services: u32::try_from(self.live()).unwrap_or(u32::MAX),
            publishing: self.publishing,
            digest: self.digest(),
        };
        let len = wire::encode(&self.config.environment, &beacon, buf).ok()?;
        Some(Transmit { destination, len })
    }
}
