//! Repair on demand: the listener follows its directory's announcement chain, and
//! when a link is missing (an announcement names a `previous` it has not heard, or a
//! beacon an `as_of` it has not heard) it asks for the changes since the last link it
//! holds, not for the whole registry.
//!
//! A state that a page or an announcement brings but the listener refuses as perhaps
//! older than a removal it has forgotten (see the `removals` module) is not held: the
//! chain counts nothing from its version on until a snapshot or repair is asked for
//! again, so the next link or beacon asks for it once more (a page written after the
//! removals heard is taken), instead of the listener settling past it. A subscriber,
//! which may hear neither, asks at the end of the next delivery (see the subscription
//! module).

use super::*;

/// How many recent links a listener remembers, to chain those that arrived out of
/// order (or during a repair) once the link before them is in (one in a register-only
/// build, which follows no chain).
const LINKS_KEPT: usize = if LISTEN { 8 } else { 1 };

/// How far a listener holds its directory's announcement chain.
#[derive(Clone, Debug, Default)]
pub(super) struct Chain {
    /// Every change stamped up to this `as_of` is held (0: none; a snapshot is due).
    heard: Version,
    /// Recent links, as (`previous`, `as_of`).
    links: heapless::Deque<(Version, Version), LINKS_KEPT>,
    /// The lowest version of a state refused since the last snapshot or repair was
    /// asked for: its stamp is above it, so the chain is held only up to it.
    refused: Option<Version>,
    /// The `as_of` of the last snapshot, repair or delivery taken whole: the
    /// directory's own word, which no announcement (forged "from the future" without
    /// keys) can raise.
    settled: Version,
}

impl Chain {
    /// The `as_of` up to which every change is held.
    pub(super) fn heard(&self) -> Version {
        self.refused.map_or(self.heard, |v| v.min(self.heard))
    }

    /// True when a datagram stamped `as_of` was written before the last snapshot,
    /// repair or delivery taken: every change it tells is held already, and a state in
    /// it may be one removed before that, whose removal this listener never heard, so
    /// nothing refuses it. (Removals after it are remembered, and refuse such states.)
    pub(super) fn holds_past(&self, as_of: Version) -> bool {
        as_of < self.settled.min(self.heard())
    }

    /// A state at `version` was refused as perhaps older than a forgotten removal: the
    /// changes from it on are not all held.
    pub(super) fn refuse(&mut self, version: Version) {
        self.refused = Some(self.refused.map_or(version, |v| v.min(version)));
    }

    /// A snapshot or repair since [`heard`](Self::heard) is asked for: it brings again
    /// every state refused so far.
    pub(super) fn asked(&mut self) {
        self.refused = None;
    }

    /// An announcement linking `previous` to `as_of` arrived: true when it continues
    /// the chain held (nothing was missed before it).
    pub(super) fn link(&mut self, previous: Version, as_of: Version) -> bool {
        push_newest(&mut self.links, (previous, as_of));
        let chained = previous <= self.heard();
        self.fold();
        chained
    }

    /// A snapshot or repair stamped `as_of` is complete: every change up to it is held,
    /// and the links heard since that follow it count.
    pub(super) fn settle(&mut self, as_of: Version) {
        self.heard = as_of;
        self.settled = as_of;
        self.fold();
    }

    /// A delivery of every change after what was held, up to `as_of`, came in full.
    pub(super) fn advance(&mut self, as_of: Version) {
        self.heard = self.heard.max(as_of);
        self.settled = self.settled.max(as_of);
        self.fold();
    }

    /// Advances over every remembered link that starts at or before what is held.
    fn fold(&mut self) {
        while let Some(next) = self
            .links
            .iter()
            .filter(|(previous, as_of)| *previous <= self.heard && *as_of > self.heard)
            .map(|(_, as_of)| *as_of)
            .max()
        {
            self.heard = next;
        }
    }
}

impl<const R: usize> Client<'_, R> {
    /// The digest of the services held, as a directory's beacon carries it.
    pub(super) fn digest(&self) -> u64 {
        self.table
            .iter()
            .filter(|(_, k)| !k.removed)
            .fold(0, |d, (_, k)| {
                let name = k.service.registration.name.as_str();
                d ^ crate::directory::digest::service_hash(name, k.service.version)
            })
    }

    /// Asks the current directory for the changes since the last link held (unless a
    /// snapshot or repair is under way).
    pub(super) fn request_repair(&mut self) {
        if self.snapshot.is_some() {
            return;
        }
        let since = self.chain.heard();
        self.request_snapshot(self.now);
        if let Some(s) = self.snapshot.as_mut() {
            s.since = (since > Version(0)).then_some(since);
        }
    }

    /// A page of the changes after the repair's `since`: new states and removals.
    pub(super) fn handle_changes_page(&mut self, header: PageHeader, items: Items<'_, Change>) {
        if !self.expects_page(&header) || self.snapshot.as_ref().is_some_and(|s| s.since.is_none())
        {
            return;
        }
        self.answered();
        let last = self.apply_changes(header.as_of, items);
        self.page_done(&header, last, false);
    }

    /// Takes the changes of a page written as of `as_of` (a repair's or a delivery's),
    /// and returns the last name in it.
    pub(super) fn apply_changes(
        &mut self,
        as_of: Version,
        items: Items<'_, Change>,
    ) -> Option<ServiceName> {
        let mut last = None;
        for change in items {
            last = Some(change.name().clone());
            match change {
                Change::Registered(service) => {
                    self.apply_service(service, listening::Source::Announce(as_of))
                }
                Change::Unregistered { name, version } => self.apply_removal(&name, version, as_of),
            }
        }
        last
    }
}
