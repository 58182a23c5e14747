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
use crate::subscribers::{fingerprint, SubscriberInfo};
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
    /// The sequence number of the newest change (none yet: the one it started at).
    sequence: u64,
    /// The directory's counts of expired and of unsubscribed subscriptions at the
    /// last refresh.
    ended: (u64, u64),
}

impl Subscribers {
    /// An empty table whose changes are numbered after `sequence`: a resume point below
    /// it, or above the newest change, is not one of this table's (it gets the table
    /// again).
    pub fn starting_at(sequence: u64) -> Subscribers {
        Subscribers {
            sequence,
            ..Subscribers::default()
        }
    }

    /// Numbered from the Unix time in microseconds now, so that the ids of a feed an
    /// earlier process served (which started earlier, and cannot have numbered a
    /// million changes a second) are too old for this one.
    pub fn starting_now() -> Subscribers {
        // Room to count on whatever the clock says.
        Subscribers::starting_at(crate::clock::unix_micros().min(u64::MAX / 2))
    }

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
            .map(|s| (fingerprint(s.id), s.interest.clone()))
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
            (0, 1..) => Some(Ended::Unsubscribed),
            (1.., 0) => Some(Ended::Expired),
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

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::directory::DirectoryConfig;

    fn row(id: u64, interests: &[&str]) -> SubscriberInfo {
        SubscriberInfo {
            id: fingerprint(id),
            address: "127.0.0.1:5000".parse().unwrap(),
            interests: interests.iter().map(|s| s.to_string()).collect(),
            since_unix_ms: 1,
            acked: None,
            lag: None,
        }
    }

    fn kinds(changes: &[SubscriberChange]) -> Vec<(SubscriberChangeKind, u64, Option<Ended>)> {
        changes
            .iter()
            .map(|c| (c.kind, c.sequence, c.ended))
            .collect()
    }

    #[test]
    fn refreshes_log_what_came_changed_and_went() {
        use SubscriberChangeKind::*;
        let address = herald_core::Location::new([127, 0, 0, 1].into(), 37399).unwrap();
        let config = DirectoryConfig::new(address, "237.37.37.1:37371".parse().unwrap());
        let (mut slots, mut index) = (vec![None; 4], vec![0u32; 4]);
        let directory = Directory::new(config, &mut slots, &mut index).unwrap();
        let mut who = Subscribers::default();
        assert!(who.refresh(vec![row(1, &["a"]), row(2, &[])], &directory));
        // Acknowledgements alone are no change.
        let mut acked = row(1, &["a"]);
        acked.acked = Some(5);
        assert!(!who.refresh(vec![acked, row(2, &[])], &directory));
        assert!(who.refresh(vec![row(1, &["a", "b*"])], &directory));
        let all = who.changes_since(0).unwrap();
        // Neither counter of the directory moved: why 2 went is not known.
        assert_eq!(
            kinds(&all),
            [
                (Came, 1, None),
                (Came, 2, None),
                (Changed, 3, None),
                (Went, 4, None)
            ]
        );
        assert_eq!(all[3].subscriber.id, fingerprint(2));
        assert_eq!(kinds(&who.changes_since(3).unwrap()), [(Went, 4, None)]);
        assert!(who.changes_since(4).unwrap().is_empty());
        assert!(
            who.changes_since(5).is_none(),
            "a sequence never handed out"
        );
        assert_eq!(who.rows().len(), 1);
    }

    #[test]
    fn a_resume_point_of_an_earlier_run_gets_the_table_again() {
        let address = herald_core::Location::new([127, 0, 0, 1].into(), 37399).unwrap();
        let config = DirectoryConfig::new(address, "237.37.37.1:37371".parse().unwrap());
        let (mut slots, mut index) = (vec![None; 4], vec![0u32; 4]);
        let directory = Directory::new(config, &mut slots, &mut index).unwrap();
        let mut who = Subscribers::starting_at(1_000);
        // The id of the first table, before any change, is a resume point.
        assert!(who.changes_since(1_000).unwrap().is_empty());
        who.refresh(vec![row(1, &[])], &directory);
        assert_eq!(who.sequence(), 1_001);
        assert_eq!(who.changes_since(1_000).unwrap().len(), 1);
        // Ids an earlier run handed out (from 1 on), or none yet handed out.
        assert!(who.changes_since(1).is_none());
        assert!(who.changes_since(999).is_none());
        assert!(who.changes_since(1_002).is_none());
        // Any number a client sends (the header is untrusted).
        assert!(who.changes_since(u64::MAX).is_none());
    }

    #[test]
    fn a_watcher_too_far_behind_gets_the_table_again() {
        let address = herald_core::Location::new([127, 0, 0, 1].into(), 37399).unwrap();
        let config = DirectoryConfig::new(address, "237.37.37.1:37371".parse().unwrap());
        let (mut slots, mut index) = (vec![None; 4], vec![0u32; 4]);
        let directory = Directory::new(config, &mut slots, &mut index).unwrap();
        let mut who = Subscribers::default();
        for i in 0..=LOG_CAPACITY as u64 {
            who.refresh(vec![row(i, &[])], &directory);
        }
        // One came and one went per refresh after the first.
        assert_eq!(who.sequence(), 2 * LOG_CAPACITY as u64 + 1);
        assert!(who.changes_since(0).is_none());
        // The newest change dropped from the log: who saw it gets every kept one.
        let dropped = who.sequence() - LOG_CAPACITY as u64;
        assert!(who.changes_since(dropped - 1).is_none());
        assert_eq!(who.changes_since(dropped).unwrap().len(), LOG_CAPACITY);
    }
}
