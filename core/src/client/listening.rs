//! The listener: announcements, pages and snapshots applied to the table of discovered
//! services, and the events they produce.

use super::*;

impl<const R: usize> Client<'_, R> {
    /// Services known and not removed.
    pub(super) fn live_count(&self) -> usize {
        self.table.iter().filter(|(_, k)| !k.removed).count()
    }

    pub(super) fn handle_announce(&mut self, header: AnnounceHeader, items: Items<'_, Change>) {
        if !self.listening() {
            return;
        }
        if self.current_directory() != Some(header.directory) {
            // Only a publisher announces: a listener following a replica moves to a
            // known directory that announces (its snapshot there covers what came
            // before), without waiting for that directory's beacon.
            let following_replica = self
                .current
                .is_some_and(|c| !self.directories[c].publishing);
            let known = self
                .directories
                .iter()
                .position(|d| d.location == header.directory);
            match known {
                Some(i) if following_replica => {
                    self.directories[i].publishing = true;
                    self.switch_to(i);
                }
                _ => {
                    self.stats.foreign_directory += 1;
                    return;
                }
            }
        }
        for change in items {
            if change.version() > self.max_seen {
                self.max_seen = change.version();
            }
            match change {
                Change::Registered(service) => self.apply_service(service),
                Change::Unregistered { name, version } => self.apply_removal(&name, version),
            }
        }
    }

    /// A client without an interest only fills its table from snapshots it asks for,
    /// and then with everything.
    pub(super) fn interested(&self, name: &str) -> bool {
        self.config
            .interest
            .as_ref()
            .is_none_or(|i| i.matches(name))
    }

    pub(super) fn tombstone(&self, name: &str) -> Option<Version> {
        self.tombstones.get(name)
    }

    pub(super) fn bury(&mut self, name: &str, version: Version) {
        self.tombstones.bury(name, version);
    }

    /// Changes the entry in `slot`, keeping the pending count right.
    pub(super) fn update(&mut self, slot: usize, f: impl FnOnce(&mut Known)) {
        if let Some(k) = self.table.get_mut(slot) {
            let was = k.pending();
            f(k);
            match (was, k.pending()) {
                (false, true) => self.pending += 1,
                (true, false) => self.pending -= 1,
                _ => {}
            }
        }
    }

    /// A service is live in this state (from an announcement or a page).
    pub(super) fn apply_service(&mut self, service: Service) {
        let name = service.registration.name.as_str();
        if !self.interested(name) {
            return;
        }
        if self.tombstone(name).is_some_and(|v| v >= service.version) {
            self.stats.stale += 1;
            return;
        }
        match self.table.find(name) {
            Some(slot) => {
                let Some(k) = self.table.get(slot) else {
                    return;
                };
                if service.version <= k.service.version {
                    self.stats.stale += 1;
                    return;
                }
                self.update(slot, |k| {
                    let differs = !k.service.registration.same_content(&service.registration);
                    // Gone and back before the user was told it went: a change at most.
                    k.removed = false;
                    if differs && k.told {
                        k.changed = true;
                    }
                    k.service = service;
                });
            }
            None => {
                let known = Known {
                    service,
                    told: false,
                    changed: false,
                    removed: false,
                    reported: 0,
                };
                match self.table.insert(known) {
                    Ok(_) => self.pending += 1,
                    Err(_) => self.stats.table_full += 1,
                }
            }
        }
    }

    /// A service was removed at `version`.
    pub(super) fn apply_removal(&mut self, name: &ServiceName, version: Version) {
        if !self.interested(name.as_str()) {
            return;
        }
        if self.tombstone(name.as_str()).is_some_and(|v| v >= version) {
            return;
        }
        self.bury(name.as_str(), version);
        if let Some(slot) = self.table.find(name.as_str()) {
            let current = self.table.get(slot).map(|k| k.service.version);
            if current.is_some_and(|v| v < version) {
                self.update(slot, |k| {
                    k.removed = true;
                    k.service.version = version;
                });
            } else {
                self.stats.stale += 1;
            }
        }
    }

    /// Applies a page: every service in it, and the removal of what this client holds
    /// in the page's range that the page does not list.
    pub(super) fn apply_page(&mut self, header: &PageHeader, items: Items<'_, Service>) {
        let mut last: Option<ServiceName> = None;
        for service in items.clone() {
            last = Some(service.registration.name.clone());
            self.apply_service(service);
        }
        if self.now < self.grace_until {
            return;
        }
        // The range this page speaks for: (after, last] or (after, end).
        let upper = if header.complete { None } else { last };
        if !header.complete && upper.is_none() {
            return;
        }
        let mut listed = items.map(|s| s.registration.name).peekable();
        let mut position = self
            .table
            .position_after(header.after.as_ref().map(|n| n.as_str()));
        while let Some(slot) = self.table.slot_at_position(position) {
            position += 1;
            let Some(k) = self.table.get(slot) else { break };
            let name = k.service.registration.name.as_str();
            if upper.as_ref().is_some_and(|u| name > u.as_str()) {
                break;
            }
            while listed.peek().is_some_and(|n| n.as_str() < name) {
                listed.next();
            }
            let present = listed.peek().is_some_and(|n| n.as_str() == name);
            if !present && !k.removed && k.service.version <= header.as_of {
                let version = header.as_of;
                let name = k.service.registration.name.clone();
                self.bury(name.as_str(), version);
                self.update(slot, |k| {
                    k.removed = true;
                    k.service.version = version;
                });
            }
        }
    }

    pub(super) fn handle_snapshot_page(&mut self, header: PageHeader, items: Items<'_, Service>) {
        let Some(s) = &self.snapshot else { return };
        if s.request != header.request || s.after != header.after {
            return;
        }
        self.answered();
        let last = items.clone().last().map(|s| s.registration.name);
        self.apply_page(&header, items);
        let now = self.now;
        let timeout = self.config.request_timeout;
        let pages = self.config.snapshot_pages.max(1);
        let Some(s) = &mut self.snapshot else { return };
        s.as_of = Some(s.as_of.map_or(header.as_of, |v| v.min(header.as_of)));
        s.attempts = 0;
        if header.complete {
            let as_of = s.as_of.unwrap_or(header.as_of);
            if as_of > self.max_seen {
                self.max_seen = as_of;
            }
            self.snapshot = None;
            self.snapshot_done = Some(self.services().count());
            return;
        }
        if last.is_some() {
            s.after = last;
        }
        s.pages_left = s.pages_left.saturating_sub(1);
        if s.pages_left == 0 {
            // The window is used up: ask for the next one at once.
            s.pages_left = pages;
            s.send = true;
        }
        s.deadline = now + timeout;
    }

    pub(super) fn next_table_event(&mut self) -> Option<ClientEvent> {
        let mut scanned = 0;
        // Counts the slots passed over; a removal shrinks the table instead (counting it
        // too would end the scan before the entries that moved into the hole).
        while self.pending > 0 && scanned <= self.table.len() {
            if self.event_cursor >= self.table.len() {
                self.event_cursor = 0;
            }
            let slot = self.event_cursor;
            let Some(k) = self.table.get_mut(slot) else {
                self.event_cursor += 1;
                scanned += 1;
                continue;
            };
            if !k.pending() {
                self.event_cursor += 1;
                scanned += 1;
                continue;
            }
            self.pending -= 1;
            if k.removed {
                let told = k.told;
                // The last slot moves into this one: look at it next.
                let gone = self.table.remove(slot)?;
                if told {
                    return Some(ClientEvent::Unregistered(gone.service));
                }
                continue;
            }
            self.event_cursor += 1;
            let content = content_hash(&k.service.registration);
            let event = if !k.told {
                ClientEvent::Discovered(k.service.clone())
            } else if content != k.reported {
                ClientEvent::Changed(k.service.clone())
            } else {
                // Changed and changed back before anyone asked: nothing to report.
                k.changed = false;
                continue;
            };
            k.told = true;
            k.changed = false;
            k.reported = content;
            return Some(event);
        }
        if self.pending > 0 {
            // Unreachable when the count is right; never spin on a wrong count.
            self.pending = 0;
        }
        None
    }
}

/// A hash of what a registration publishes (locations and metadata), FNV-1a folded to
/// 32 bits: two different contents collide with a chance of one in four billion.
pub(super) fn content_hash(registration: &Registration) -> u32 {
    let mut h = FNV_OFFSET;
    let mut feed = |bytes: &[u8]| h = fnv1a(h, bytes);
    for l in &registration.locations {
        match l.ip() {
            core::net::IpAddr::V4(a) => feed(&a.octets()),
            core::net::IpAddr::V6(a) => feed(&a.octets()),
        }
        feed(&l.port().to_le_bytes());
    }
    feed(&[0xff]);
    feed(registration.metadata.encoded());
    (h ^ (h >> 32)) as u32
}
