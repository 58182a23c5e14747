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
                self.write_changes(header, &request.interest, since, buf)
            }
            _ => self.write_page(header, &request.interest, false, buf),
        }
    }

    /// Writes one page of the states matching `interest` stamped after `since`, after
    /// `header.after`, like [`write_page`](Self::write_page).
    pub(super) fn write_changes(
        &self,
        header: &PageHeader,
        interest: &Interest,
        since: Version,
        buf: &mut [u8],
    ) -> Option<(usize, Option<ServiceName>, bool)> {
        let env = &self.config.environment;
        let mut writer = BatchWriter::changes_page(env, header, buf).ok()?;
        let (last, complete) = self.fill_page(header, &mut writer, |e| {
            if e.stamp <= since || !interest.matches(e.record.name().as_str()) {
                return None;
            }
            Some(if e.record.is_live() {
                Change::Registered(e.record.service.clone())
            } else {
                Change::Unregistered {
                    name: e.record.name().clone(),
                    version: e.record.service.version,
                }
            })
        });
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
