//! Anti-entropy: the paced sweep of the whole registry, and the snapshot pages it
//! shares with snapshot answers.

use super::*;

impl Directory<'_> {
    /// Writes one page of live services matching `interest`, after `header.after`, of
    /// `kind` (a sweep's, a snapshot's or a delivered snapshot's). Returns the length,
    /// the last name written and whether the page is complete.
    pub(super) fn write_page(
        &self,
        header: &PageHeader,
        interest: &Interest,
        kind: PageKind,
        buf: &mut [u8],
    ) -> Option<(usize, Option<ServiceName>, bool)> {
        let env = &self.config.environment;
        let mut writer = BatchWriter::page(env, header, kind, buf).ok()?;
        let (last, complete) = self.fill_page(header, &mut writer, |e| {
            (e.record.is_live() && interest.matches(e.record.name().as_str()))
                .then(|| e.record.service.clone())
        });
        Some((writer.len(), last, complete))
    }

    /// Fills `writer` with `item` of each entry in name order after `header.after` that
    /// has one, as many as fit; marks the page complete when all did. Returns the last
    /// name written (or `header.after`) and whether the page is complete.
    pub(super) fn fill_page<T: wire::Item>(
        &self,
        header: &PageHeader,
        writer: &mut BatchWriter<'_>,
        item: impl Fn(&Entry) -> Option<T>,
    ) -> (Option<ServiceName>, bool) {
        let registry = &self.registry;
        let from = registry.position_after(header.after.as_ref().map(|n| n.as_str()));
        let entries = (from..).map_while(|p| {
            registry
                .slot_at_position(p)
                .and_then(|slot| registry.get(slot))
        });
        fill_from(header, writer, entries, item)
    }

    pub(super) fn transmit_sweep(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if !self.sweep_due {
            return None;
        }
        if !self.config.multicast {
            // Nothing goes to the group: no sweep either (its pacing stands).
            self.sweep_due = false;
            self.next_sweep = self.now + self.config.sweep_period;
            return None;
        }
        self.sweep_due = false;
        let header = PageHeader {
            request: 0,
            as_of: self.last_version,
            after: self.sweep_cursor.clone(),
            complete: false,
        };
        let (len, last, complete) =
            self.write_page(&header, &Interest::all(), PageKind::Sync, buf)?;
        let now = self.now;
        if complete {
            self.sweep_cursor = None;
            let next = self.sweep_started + self.config.sweep_period;
            self.next_sweep = next.max(now + self.config.interval);
        } else {
            // Pace the pages so that a whole sweep takes about one sweep period.
            let written = self
                .registry
                .position_after(last.as_ref().map(|n| n.as_str()))
                .saturating_sub(
                    self.registry
                        .position_after(self.sweep_cursor.as_ref().map(|n| n.as_str())),
                );
            let total = self.registry.len().max(1) as u64;
            let share = self.config.sweep_period.mul(written as u64).div(total);
            self.next_sweep = now + share.max(self.config.interval);
            self.sweep_cursor = last;
        }
        Some(Transmit {
            destination: self.config.group,
            len,
        })
    }
}

/// Fills `writer` with `item` of each of `entries` (in name order, all after
/// `header.after`) that has one, as many as fit; marks the page complete when all did.
/// Returns the last name written (or `header.after`) and whether the page is complete.
pub(super) fn fill_from<'e, T: wire::Item>(
    header: &PageHeader,
    writer: &mut BatchWriter<'_>,
    entries: impl Iterator<Item = &'e Entry>,
    item: impl Fn(&Entry) -> Option<T>,
) -> (Option<ServiceName>, bool) {
    let mut last = header.after.clone();
    let mut complete = true;
    for e in entries {
        if let Some(item) = item(e) {
            if !writer.push(&item) {
                complete = false;
                break;
            }
            last = Some(e.record.name().clone());
        }
    }
    writer.set_complete(complete);
    (last, complete)
}
