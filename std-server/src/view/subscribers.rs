//! The subscriber table as the HTTP interface sees it: the rows of the last refresh
//! (with each subscriber's interest, to answer "who listens to this name"), and a
//! bounded log of how the table changed between refreshes (a subscriber came, changed
//! its interests or address, went), for `GET /v1/subscribers/watch`.
//!
//! The serve loop refreshes it at most every metrics refresh (a pass over the table),
//! so a subscriber that comes and goes between two refreshes is not seen, and a change
//! is reported up to one refresh late. Why a subscriber went is told by the
//! directory's counts of expired and of unsubscribed subscriptions: when only one of
//! them moved since the last refresh, every one that went ended that way; when both
//! moved, it is not known which did which.

use crate::client::api::{Ended, SubscriberChange, SubscriberChangeKind};
use crate::subscribers::SubscriberInfo;
use herald_core::{Directory, Interest};
use std::collections::{BTreeMap, VecDeque};

/// Changes kept for watchers that fell behind; one further behind gets the table again.
pub const LOG_CAPACITY: usize = 1024;

/// One subscription: its row and its interest as the directory holds it.
#[derive(Clone, Debug)]
pub struct Subscription {
    /// As `herald list --subscribers --json` prints it.
    pub info: SubscriberInfo,
    /// What it listens to (matched as [`Directory::subscribers_of`] matches).
    pub interest: Interest,
}

/// The table, by subscriber id, and its change log.
#[derive(Debug, Default)]
pub struct Subscribers {
    /// Live subscriptions by id (hex), as of the last refresh.
    table: BTreeMap<String, Subscription>,
    /// The latest changes, oldest first.
    log: VecDeque<SubscriberChange>,
    /// The sequence number of the newest change (0: none yet).
    sequence: u64,
    /// The directory's counts of expired and of unsubscribed subscriptions at the
    /// last refresh.
    ended: (u64, u64),
}

impl Subscribers {
    /// The rows, in id order.
    pub fn rows(&self) -> Vec<SubscriberInfo> {
        self.table.values().map(|s| s.info.clone()).collect()
    }

    /// The rows of the subscribers interested in `name`, in id order.
    pub fn interested_in(&self, name: &str) -> Vec<SubscriberInfo> {
        self.table
            .values()
            .filter(|s| s.interest.matches(name))
            .map(|s| s.info.clone())
            .collect()
    }

    /// The sequence number of the newest change.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The changes after sequence number `after`, or `None` when some are no longer
    /// kept (the watcher must start again from [`rows`](Self::rows)).
    pub fn changes_since(&self, after: u64) -> Option<Vec<SubscriberChange>> {
        let oldest = self.log.front().map_or(self.sequence + 1, |c| c.sequence);
        if after > self.sequence || after + 1 < oldest {
            return None;
        }
        let start = self.log.partition_point(|c| c.sequence <= after);
        Some(self.log.range(start..).cloned().collect())
    }

    /// Takes the table of `directory` (`rows`, as the listing makes them); logs what
    /// came, changed and went since the last call. True when something changed.
    pub fn refresh(&mut self, rows: Vec<SubscriberInfo>, directory: &Directory<'_>) -> bool {
        let mut interests: BTreeMap<String, Interest> = directory
            .subscribers()
            .map(|s| (format!("{:016x}", s.id), s.interest.clone()))
            .collect();
        let mut table = BTreeMap::new();
        let mut changes = Vec::new();
        for info in rows {
            let interest = interests.remove(&info.id).unwrap_or_default();
            match self.table.remove(&info.id) {
                None => changes.push((SubscriberChangeKind::Came, info.clone(), None)),
                Some(old) if old.info.interests != info.interests => {
                    changes.push((SubscriberChangeKind::Changed, info.clone(), None))
                }
                Some(old) if old.info.address != info.address => {
                    changes.push((SubscriberChangeKind::Changed, info.clone(), None))
                }
                Some(_) => {}
            }
            table.insert(info.id.clone(), Subscription { info, interest });
        }
        let stats = directory.stats();
        let expired = stats.subscribers_expired.saturating_sub(self.ended.0);
        let unsubscribed = stats.unsubscribes.saturating_sub(self.ended.1);
        self.ended = (stats.subscribers_expired, stats.unsubscribes);
        let gone = std::mem::replace(&mut self.table, table);
        let ended = match (expired, unsubscribed) {
            (0, _) => Some(Ended::Unsubscribed),
            (_, 0) => Some(Ended::Expired),
            _ => None,
        };
        for (_, s) in gone {
            changes.push((SubscriberChangeKind::Went, s.info, ended));
        }
        let moved = !changes.is_empty();
        for (kind, subscriber, ended) in changes {
            self.sequence += 1;
            if self.log.len() == LOG_CAPACITY {
                self.log.pop_front();
            }
            self.log.push_back(SubscriberChange {
                sequence: self.sequence,
                kind,
                subscriber,
                ended,
            });
        }
        moved
    }
}
