//! The listener: announcements, pages and snapshots applied to the table of discovered
//! services, and the events they produce.
//!
//! Only the directory followed is heard, and only from its own address (the source of
//! an announcement must be the directory it names; a page must come from the current
//! directory). Its pages are its word: a page lists exactly what the directory holds in
//! its range as of its `as_of`, so whatever the listener holds there that the page does
//! not confirm is corrected:
//!
//! * a state at or below `as_of`, given by a datagram stamped before it, that the page
//!   does not list is removed;
//! * a state inherited from a directory followed before is replaced by the page's, or
//!   removed if the page does not list it, whatever its version, once the failover
//!   grace is over: versions of two independent directories are not comparable. During
//!   the grace only a newer version replaces it (the new directory may share the old
//!   one's store and be behind), and announcements, which may be late copies from the
//!   directory followed before, always need a newer version;
//! * a state newer than the page (announced after the page was written, or forged "from
//!   the future"), or given by a datagram stamped at or after the page's `as_of` (a
//!   registration that reached a replicated publisher late, at an older version than
//!   the page's stamp), is doubted at the first page that does not confirm it, and corrected at
//!   a page that still does not, arriving at least a directory timeout later. No
//!   removal is remembered for a corrected state, so a forged version cannot hide the
//!   real service afterwards.
//!
//! When the table is full, a page's service takes the place of one no page vouches for
//! (inherited first, then doubted), reported as evicted; an announced state no page has
//! doubted stays, and the page's service waits for room.

use super::*;

/// Where a service state comes from.
#[derive(Clone, Copy, Debug)]
pub(super) enum Source {
    /// An announcement stamped `as_of`.
    Announce(Version),
    /// A page (snapshot or sweep) stamped `as_of`.
    Page(Version),
}

impl Source {
    fn as_of(self) -> Version {
        match self {
            Source::Announce(v) | Source::Page(v) => v,
        }
    }
}

impl<const R: usize> Client<'_, R> {
    /// Services known and not removed.
    pub(super) fn live_count(&self) -> usize {
        self.table.iter().filter(|(_, k)| !k.removed).count()
    }

    pub(super) fn handle_announce(
        &mut self,
        from: SocketAddr,
        header: AnnounceHeader,
        items: Items<'_, Change>,
    ) {
        if !self.listening() {
            return;
        }
        if !header.directory.is(from) {
            // Not sent by the directory it names: forged, or replayed from elsewhere.
            self.stats.foreign_directory += 1;
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
        if self.chain.holds_past(header.as_of) {
            // Written before the last snapshot, repair or delivery taken: a late copy,
            // or a genuine announcement replayed within the replay window, which would
            // bring back a name removed before that (and so never heard removed).
            self.stats.stale += 1;
            return;
        }
        if !self.chain.link(header.previous, header.as_of) && self.snapshot.is_none() {
            // A link of the chain is missing: ask for what changed since.
            self.request_repair();
        }
        let source = Source::Announce(header.as_of);
        for change in items {
            match change {
                Change::Registered(service) => self.apply_service(service, source),
                Change::Unregistered { name, version } => {
                    self.apply_removal(&name, version, header.as_of)
                }
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

    /// Remembers a removal at `version`, told by a datagram stamped `stamp`.
    fn bury(&mut self, name: &str, version: Version, stamp: Version) {
        self.removals.bury(name, version, stamp, self.now);
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

    /// Replaces the state in `slot` by `service` (a change event only if the content
    /// differs from what the user was told).
    fn replace(&mut self, slot: usize, service: Service, standing: Standing, as_of: Version) {
        self.update(slot, |k| {
            k.as_of = as_of;
            let differs = !k.service.registration.same_content(&service.registration);
            // Gone and back before the user was told it went: a change at most.
            k.removed = false;
            k.evicted = false;
            if differs && k.told {
                k.changed = true;
            }
            k.service = service;
            k.standing = standing;
            k.doubted = None;
        });
    }

    /// A service is live in this state (from an announcement or a page).
    pub(super) fn apply_service(&mut self, service: Service, source: Source) {
        let name = service.registration.name.as_str();
        if !self.interested(name) {
            return;
        }
        let standing = match source {
            Source::Page(_) => Standing::Confirmed,
            Source::Announce(_) => Standing::Announced,
        };
        if let Some(slot) = self.table.find(name) {
            let Some(k) = self.table.get(slot) else {
                return;
            };
            // Only a page overrides an inherited state whatever its version, and only
            // after the failover grace: a late copy of an announcement may come from a
            // directory followed before, and during the grace the directory followed may
            // be one of the same store that has not caught up (versions comparable, its
            // older state not to be taken).
            let inherited = k.standing == Standing::Inherited
                && standing == Standing::Confirmed
                && self.now >= self.grace_until;
            // A state removed and not yet reported is back only if no removal refuses it.
            let verdict = if k.removed {
                self.removals
                    .judge(name, service.version, source.as_of(), self.now)
            } else {
                Verdict::Taken
            };
            if verdict != Verdict::Taken {
                self.refused(service.version, verdict);
            } else if inherited || service.version > k.service.version {
                self.replace(slot, service, standing, source.as_of());
            } else if service.version == k.service.version && standing == Standing::Confirmed {
                self.update(slot, |k| {
                    k.standing = Standing::Confirmed;
                    k.doubted = None;
                    k.as_of = k.as_of.max(source.as_of());
                });
            } else {
                self.stats.stale += 1;
            }
            return;
        }
        match self
            .removals
            .judge(name, service.version, source.as_of(), self.now)
        {
            Verdict::Taken => {}
            Verdict::RefusedUntil(t) => {
                // Perhaps live: ask again once no page written before the removal can
                // still be on its way.
                self.recheck = Some(self.recheck.map_or(t, |r| r.max(t)));
                self.refused(service.version, Verdict::RefusedUntil(t));
                return;
            }
            verdict => {
                self.refused(service.version, verdict);
                return;
            }
        }
        let known = Known {
            service,
            told: false,
            changed: false,
            removed: false,
            evicted: false,
            reported: 0,
            standing,
            doubted: None,
            as_of: source.as_of(),
        };
        match self.table.insert(known) {
            Ok(_) => self.pending += 1,
            Err(_) => {
                self.stats.table_full += 1;
                self.note_dropped();
                if standing == Standing::Confirmed {
                    // The directory's word outranks what it has not confirmed: make room
                    // for the next page (the entry leaves once its removal is polled).
                    self.evict_unconfirmed();
                }
            }
        }
    }

    /// A state at `version` was refused: one perhaps older than a forgotten removal only
    /// (perhaps live) is not held, so the announcement chain stops below it (see the
    /// repair module).
    fn refused(&mut self, version: Version, verdict: Verdict) {
        self.stats.stale += 1;
        if matches!(verdict, Verdict::Unsure | Verdict::RefusedUntil(_)) {
            self.chain.refuse(version);
        }
    }

    /// Gives up one entry that no page of the directory followed vouches for (inherited
    /// first, then doubted), remembering no removal for it: it is reported as evicted.
    /// An announced state no page has doubted is as much the directory's word as the
    /// page's: it stays, and the newcomer waits for room.
    fn evict_unconfirmed(&mut self) {
        let rank = |k: &Known| match (k.standing, k.doubted) {
            _ if k.removed => None,
            (Standing::Inherited, _) => Some(0),
            (Standing::Announced, Some(_)) => Some(1),
            (Standing::Announced, None) | (Standing::Confirmed, _) => None,
        };
        let victim = self
            .table
            .iter()
            .filter_map(|(slot, k)| rank(k).map(|r| (r, slot)))
            .min();
        if let Some((_, slot)) = victim {
            self.update(slot, |k| {
                k.removed = true;
                k.evicted = true;
            });
        }
    }

    /// A service was removed at `version`, told by a datagram stamped `stamp`.
    ///
    /// A removal is taken only at a version above the state held, inherited or not: a
    /// late copy of an announcement may come from a directory followed before (the
    /// inherited entry's own, when the listener moved back), and an inherited entry that
    /// the new directory removed at a lower version of its own goes at its next page.
    pub(super) fn apply_removal(&mut self, name: &ServiceName, version: Version, stamp: Version) {
        if !self.interested(name.as_str()) {
            return;
        }
        let slot = self.table.find(name.as_str());
        let takes_down = slot
            .and_then(|slot| self.table.get(slot))
            .is_some_and(|k| !k.removed && k.service.version < version);
        // A removal remembered at or after this one makes it no news, unless it takes
        // down a live state held: one taken since, below the stamp of a page that
        // removed the name (a registration that reached the publisher after the page,
        // see the removals module), is ended by any newer removal.
        if !takes_down
            && self
                .removals
                .get(name.as_str())
                .is_some_and(|v| v >= version)
        {
            return;
        }
        // Only a removal that takes a live state down needs its stamp: a page written
        // before it may still be on its way (see the removals module). Any other (a
        // repeat, or a name not held) is no news a page could undo, and must not keep
        // the listener waiting.
        self.bury(
            name.as_str(),
            version,
            if takes_down { stamp } else { version },
        );
        if let Some(slot) = slot {
            let applies = self
                .table
                .get(slot)
                .is_some_and(|k| k.service.version < version);
            if applies {
                self.update(slot, |k| {
                    k.removed = true;
                    k.service.version = version;
                });
            } else {
                self.stats.stale += 1;
            }
        }
    }

    /// A page of the directory's sweep: applied like any page, unless it was written
    /// before the last snapshot, repair or delivery taken (a late copy, or one
    /// replayed within the replay window): it may list a name removed before that, and
    /// never heard removed here.
    pub(super) fn handle_sweep_page(&mut self, header: PageHeader, items: Items<'_, Service>) {
        if self.chain.holds_past(header.as_of) {
            self.stats.stale += 1;
            return;
        }
        self.apply_page(&header, items);
    }

    /// Applies a page: every service in it, and the correction of what this client holds
    /// in the page's range that the page does not confirm (see the module docs).
    pub(super) fn apply_page(&mut self, header: &PageHeader, items: Items<'_, Service>) {
        let mut last: Option<ServiceName> = None;
        for service in items.clone() {
            last = Some(service.registration.name.clone());
            self.apply_service(service, Source::Page(header.as_of));
        }
        let graced = self.now < self.grace_until;
        // The range this page speaks for: (after, last] or (after, end).
        let upper = if header.complete { None } else { last };
        if !header.complete && upper.is_none() {
            return;
        }
        let now = self.now;
        let patience = self.config.directory_timeout;
        let mut listed = items.peekable();
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
            while listed
                .peek()
                .is_some_and(|s| s.registration.name.as_str() < name)
            {
                listed.next();
            }
            let entry = listed
                .peek()
                .filter(|s| s.registration.name.as_str() == name)
                .cloned();
            if k.removed
                || entry
                    .as_ref()
                    .is_some_and(|s| s.version == k.service.version)
            {
                continue;
            }
            if graced {
                // Kept through the failover grace (its registrant may be moving too, or
                // this directory behind): settled by a snapshot once the grace ends.
                self.unsettled = true;
                break;
            }
            // A state given by a datagram stamped at or after the page may be newer than
            // the page even at a version below its stamp: a registration made through a
            // replica reaches the publisher late, with an older version than the page's.
            let predates = k.service.version <= header.as_of && k.as_of < header.as_of;
            if k.standing == Standing::Inherited || predates {
                match entry {
                    // Listed at an older version than one the page should include: the
                    // held state never came from this directory.
                    Some(service) => self.replace(slot, service, Standing::Confirmed, header.as_of),
                    // Removed at a version of its own the listener does not know: reported
                    // at the version held, and a registration that reaches the directory
                    // after the page at a version below its stamp is still taken. (So
                    // for a state inherited from the directory followed before: a
                    // registration made through a replica that the publisher held only
                    // after the page is taken when it arrives.)
                    None => {
                        let name = k.service.registration.name.clone();
                        let held = k.service.version;
                        self.removals
                            .bury_unlisted(name.as_str(), held, header.as_of, self.now);
                        self.update(slot, |k| k.removed = true);
                    }
                }
                continue;
            }
            // Newer than the page and not confirmed by it.
            match k.doubted {
                Some(since) if now.saturating_since(since) >= patience => match entry {
                    Some(service) => self.replace(slot, service, Standing::Confirmed, header.as_of),
                    None => self.update(slot, |k| k.removed = true),
                },
                Some(_) => {}
                None => self.update(slot, |k| k.doubted = Some(now)),
            }
        }
    }

    pub(super) fn handle_snapshot_page(&mut self, header: PageHeader, items: Items<'_, Service>) {
        if !self.expects_page(&header) {
            return;
        }
        self.answered();
        let last = items.clone().last().map(|s| s.registration.name);
        self.apply_page(&header, items);
        self.page_done(&header, last, true);
    }

    /// True when `header` is the page the snapshot (or repair) in progress waits for.
    /// A page of it further on is dropped, and noted: the one awaited may have come
    /// before its turn.
    pub(super) fn expects_page(&mut self, header: &PageHeader) -> bool {
        if self.chain.holds_past(header.as_of) {
            // A late answer to an earlier attempt (one request id serves them all),
            // written before the last snapshot, repair or delivery taken: a state in it
            // may have been removed before that, unknown to this listener. The attempt
            // goes on for a page written later.
            return false;
        }
        let Some(s) = self
            .snapshot
            .as_mut()
            .filter(|s| s.request == header.request)
        else {
            return false;
        };
        if s.after == header.after {
            return true;
        }
        // `None` (the start) sorts first.
        if header.after > s.after {
            s.overtaken = true;
        }
        false
    }

    /// A page of the snapshot (`full`) or repair in progress was applied: ask for the
    /// next, or finish.
    pub(super) fn page_done(&mut self, header: &PageHeader, last: Option<ServiceName>, full: bool) {
        let now = self.now;
        let timeout = self.config.request_timeout;
        let pages = self.config.snapshot_pages.max(1);
        let Some(s) = self.snapshot.as_mut() else {
            return;
        };
        s.as_of = Some(s.as_of.map_or(header.as_of, |v| v.min(header.as_of)));
        s.attempts = 0;
        s.cookied = false;
        if header.complete {
            // The directory's word: the listener holds every change up to the oldest
            // page's stamp, whatever links it heard before (even a forged one "from
            // the future" no longer hides that a beacon shows more).
            let as_of = s.as_of.unwrap_or(header.as_of);
            self.chain.settle(as_of);
            self.snapshot.clear();
            if full {
                self.snapshot_done = Some(self.services().count());
            }
            return;
        }
        if last.is_some() {
            s.after = last;
        }
        s.pages_left = s.pages_left.saturating_sub(1);
        if s.pages_left == 0 || core::mem::take(&mut s.overtaken) {
            // The window is used up, or a page further on came before this one (the
            // next may be among those dropped): ask for the next window at once.
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
                match (told, gone.evicted) {
                    (true, false) => return Some(ClientEvent::Unregistered(gone.service)),
                    (true, true) => return Some(ClientEvent::Evicted(gone.service)),
                    (false, _) => continue,
                }
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

impl<const R: usize> Client<'_, R> {
    /// The listener follows another directory: what it holds came from the previous
    /// one, which may share the new one's store (one version space, the new one perhaps
    /// behind) or not (versions not comparable). Every entry becomes inherited and the
    /// removals remembered become inherited removals: until the failover grace ends
    /// they still refuse older states, and only newer ones replace inherited entries;
    /// then the new directory's word wins whatever its versions (see
    /// [`Client::settle_inherited`]). The highest version seen is forgotten.
    pub(super) fn follow_afresh(&mut self) {
        for (_, k) in self.table.iter_mut() {
            k.standing = Standing::Inherited;
            k.doubted = None;
            k.as_of = Version(0);
        }
        self.removals.inherit();
        self.chain = Chain::default();
        self.inherited = true;
    }

    /// A state refused while a page written before a forgotten removal could still be
    /// on its way: once that time is over, a snapshot brings it if it is really live.
    pub(super) fn recheck_refused(&mut self) {
        if self.recheck.is_some_and(|t| t <= self.now) && self.snapshot.is_none() {
            self.recheck = None;
            self.request_snapshot(self.now);
        }
    }

    /// After a failover, once the grace is over: the inherited removals are forgotten,
    /// and if they were any, or entries inherited from the previous directory are left,
    /// or a page during the grace did not list a state held in its range, a snapshot
    /// settles them (the grace kept the pages before from removing them or from taking
    /// states older than them). It replaces a snapshot in progress, whose
    /// pages so far the grace held back.
    pub(super) fn settle_inherited(&mut self) {
        if !self.inherited || self.now < self.grace_until {
            return;
        }
        self.inherited = false;
        let forgotten = self.removals.forget_inherited();
        let left = self
            .table
            .iter()
            .any(|(_, k)| k.standing == Standing::Inherited && !k.removed);
        if left || forgotten || core::mem::take(&mut self.unsettled) {
            self.request_snapshot(self.now);
        }
    }
}
