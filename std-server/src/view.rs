//! The registry as the HTTP and DNS interfaces see it: a copy of the live services that
//! the serve loop refreshes after every wake-up in which the directory's version moved,
//! and a bounded log of the changes, each numbered by the registry version it made.
//!
//! The serve loop owns the [`Directory`]; the interfaces run on other tasks. After each
//! wake-up the loop calls [`Feed::observe`], which compares the directory's newest version
//! with the last one seen and, when it moved, walks the registry once for the records
//! newer than that (so the copy is never staler than the directory's own state by more
//! than one wake-up). Readers take the lock briefly and are woken through a
//! [`watch`] channel carrying the newest version. The subscriber table
//! ([`subscribers`]) is refreshed with the metrics, its watchers woken by a channel of
//! its own.

pub mod subscribers;

use crate::client::{EventKind, ServiceInfo};
use crate::clock::Clock;
use herald_core::{Directory, RecordState, Version};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Changes kept for watchers that resume (`Last-Event-ID`): one further behind gets a
/// full resynchronisation instead.
pub const LOG_CAPACITY: usize = 4096;
/// How often lease expiries are refreshed when nothing else changed (renewals keep the
/// version, so they are only seen by this pass).
const LEASE_REFRESH: Duration = Duration::from_secs(1);

/// One live service and when its lease runs out.
#[derive(Clone, Debug)]
pub struct Listed {
    /// The service, as `herald list --json` prints it (its version included).
    pub info: ServiceInfo,
    /// When its lease runs out unless renewed.
    pub expires: Instant,
}

/// One change to the registry.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    /// The registry version it made (the SSE event id).
    #[serde(skip)]
    pub version: u64,
    /// What happened.
    #[serde(rename = "event")]
    pub kind: EventKind,
    /// The service (for `unregistered`, its last state).
    #[serde(flatten)]
    pub service: ServiceInfo,
}

/// The copy of the registry and the change log.
#[derive(Debug, Default)]
pub struct State {
    /// The newest version observed.
    pub version: u64,
    /// Live services by name.
    pub services: BTreeMap<String, Listed>,
    /// The latest changes, oldest first, in version order.
    log: VecDeque<Change>,
    /// Every change newer than this is in the log.
    floor: u64,
    /// The unicast subscribers, as of the last metrics refresh, and how they changed.
    pub subscribers: subscribers::Subscribers,
}

impl State {
    /// The changes newer than `version`, or `None` when some of them are no longer kept
    /// (the caller must resynchronise from [`services`](Self::services)).
    pub fn changes_since(&self, version: u64) -> Option<Vec<Change>> {
        if version < self.floor {
            return None;
        }
        let start = self.log.partition_point(|c| c.version <= version);
        Some(self.log.range(start..).cloned().collect())
    }

    /// Live services whose name `matches`, in name order.
    pub fn list(&self, matches: impl Fn(&str) -> bool) -> Vec<ServiceInfo> {
        self.services
            .values()
            .filter(|l| matches(&l.info.name))
            .map(|l| l.info.clone())
            .collect()
    }

    fn record(&mut self, change: Change) {
        if self.log.len() == LOG_CAPACITY {
            if let Some(dropped) = self.log.pop_front() {
                self.floor = dropped.version;
            }
        }
        self.log.push_back(change);
    }
}

/// The readers' handle: the state, and a channel that ticks with each new version.
#[derive(Clone, Debug)]
pub struct View {
    state: Arc<RwLock<State>>,
    version: watch::Receiver<u64>,
    who: watch::Receiver<u64>,
}

impl View {
    /// Reads the state (briefly: the serve loop waits for the lock).
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver that is told each new version.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.clone()
    }

    /// A receiver that is told the sequence number of each new subscriber change.
    pub fn subscribe_subscribers(&self) -> watch::Receiver<u64> {
        self.who.clone()
    }
}

impl Feed {
    /// Takes the subscriber `rows` of `directory` (as the listing makes them) and
    /// wakes the subscriber watchers when the table changed.
    pub fn set_subscribers(
        &mut self,
        rows: Vec<crate::subscribers::SubscriberInfo>,
        directory: &Directory<'_>,
    ) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        if state.subscribers.refresh(rows, directory) {
            self.who.send_replace(state.subscribers.sequence());
        }
    }
}

/// The serve loop's side: refreshes the state.
#[derive(Debug)]
pub struct Feed {
    state: Arc<RwLock<State>>,
    version: watch::Sender<u64>,
    who: watch::Sender<u64>,
    leases_refreshed: Option<Instant>,
    /// The first observation (which loads the registry without logging changes) is done.
    started: bool,
    /// The zone link-local locations are shown in ([`crate::net::link_zone`]).
    zone: u32,
}

impl Feed {
    /// An empty feed and its readers' handle.
    pub fn new() -> (Feed, View) {
        let state = Arc::new(RwLock::new(State {
            subscribers: subscribers::Subscribers::starting_now(),
            ..State::default()
        }));
        let (tx, rx) = watch::channel(0);
        let (who_tx, who_rx) = watch::channel(0);
        let feed = Feed {
            state: state.clone(),
            version: tx,
            who: who_tx,
            leases_refreshed: None,
            started: false,
            zone: 0,
        };
        let view = View {
            state,
            version: rx,
            who: who_rx,
        };
        (feed, view)
    }

    /// Shows link-local locations, which the wire carries without a zone, in `zone`.
    pub fn on_link(self, zone: u32) -> Feed {
        Feed { zone, ..self }
    }

    /// Brings the copy up to `directory`'s state as of version `upto` (the newest on
    /// disk: records newer than it wait for a later call): the records newer than the
    /// last version seen become changes; lease expiries are refreshed at most every
    /// second.
    pub fn observe(&mut self, directory: &Directory<'_>, clock: &Clock, upto: Version) {
        let newest = upto.0.min(directory.as_of().0);
        let now = Instant::now();
        let seen = self.read_version();
        let first = !self.started;
        self.started = true;
        let moved = newest != seen || first;
        let leases = self
            .leases_refreshed
            .is_none_or(|t| now - t >= LEASE_REFRESH);
        if !moved && !leases {
            return;
        }
        self.leases_refreshed = Some(now);
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let mut changes = Vec::new();
        for record in directory.records() {
            let name = record.name().as_str();
            let version = record.service.version.0;
            if version > newest {
                continue;
            }
            // A record not newer than the last version seen, yet new to the copy (one
            // a replica took from the shared store after newer ones): its event is
            // numbered with the newest version, so the log stays in order.
            let id = if version > seen { version } else { newest };
            match record.state {
                RecordState::Live { expires } => {
                    let expires = clock.std(expires);
                    if version <= seen && !first {
                        if let Some(l) = state.services.get_mut(name) {
                            l.expires = expires;
                            continue;
                        }
                    }
                    let info = ServiceInfo::on_link(&record.service, self.zone);
                    let old = state.services.insert(
                        name.to_owned(),
                        Listed {
                            info: info.clone(),
                            expires,
                        },
                    );
                    if !first && (version > seen || old.is_none()) {
                        let kind = match old {
                            Some(_) => EventKind::Changed,
                            None => EventKind::Discovered,
                        };
                        changes.push(Change {
                            version: id,
                            kind,
                            service: info,
                        });
                    }
                }
                RecordState::Departed { .. } => {
                    if let Some(old) = state.services.remove(name) {
                        changes.push(Change {
                            version: id,
                            kind: EventKind::Unregistered,
                            service: old.info,
                        });
                    }
                }
            }
        }
        changes.sort_by_key(|c| c.version);
        for change in changes {
            state.record(change);
        }
        state.version = newest;
        if first {
            state.floor = newest;
        }
        drop(state);
        if moved {
            self.version.send_replace(newest);
        }
    }

    fn read_version(&self) -> u64 {
        self.state.read().unwrap_or_else(|p| p.into_inner()).version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(version: u64) -> Change {
        Change {
            version,
            kind: EventKind::Discovered,
            service: ServiceInfo {
                name: format!("s{version}"),
                locations: Vec::new(),
                meta: BTreeMap::new(),
                version,
            },
        }
    }

    /// A live record at `version`, its lease running out at `expires`.
    fn record(name: &str, version: u64, expires: herald_core::Instant) -> herald_core::Record {
        use herald_core::{Location, Registration, Service, ServiceName, Version};
        let at = Location::new([127, 0, 0, 1].into(), 80).unwrap();
        let registration = Registration::new(ServiceName::new(name).unwrap(), &[at]).unwrap();
        herald_core::Record {
            service: Service {
                registration,
                version: Version(version),
            },
            registrant: 1,
            sequence: 1,
            state: RecordState::Live { expires },
            ended: herald_core::Version(0),
            counted_from: herald_core::Version(0),
        }
    }

    #[test]
    fn a_record_taken_late_from_the_store_keeps_the_log_in_order() {
        use herald_core::directory::DirectoryConfig;
        let clock = Clock::new();
        let address = herald_core::Location::new([127, 0, 0, 1].into(), 37399).unwrap();
        let config = DirectoryConfig::new(address, "237.37.37.1:37371".parse().unwrap());
        let mut slots = vec![None; 8];
        let mut index = vec![0u32; 8];
        let mut directory = Directory::new(config, &mut slots, &mut index).unwrap();
        let now = clock.now();
        let expires = now + herald_core::Duration::from_secs(60);
        let (mut feed, view) = Feed::new();
        feed.observe(&directory, &clock, directory.as_of());
        let start = view.read().version;
        directory
            .apply(now, record("a", start + 10, expires))
            .unwrap();
        feed.observe(&directory, &clock, directory.as_of());
        // Another directory's older change arrives after a newer one.
        directory
            .apply(now, record("b", start + 5, expires))
            .unwrap();
        directory
            .apply(now, record("c", start + 20, expires))
            .unwrap();
        feed.observe(&directory, &clock, directory.as_of());
        let state = view.read();
        let log: Vec<(String, u64)> = state
            .changes_since(start)
            .unwrap()
            .into_iter()
            .map(|c| (c.service.name, c.version))
            .collect();
        assert_eq!(
            log,
            [
                ("a".to_owned(), start + 10),
                ("b".to_owned(), start + 20),
                ("c".to_owned(), start + 20),
            ]
        );
        let after_a: Vec<String> = state
            .changes_since(start + 10)
            .unwrap()
            .into_iter()
            .map(|c| c.service.name)
            .collect();
        assert_eq!(after_a, ["b", "c"], "a watcher that saw `a` gets `b` too");
    }

    #[test]
    fn a_watcher_too_far_behind_must_resynchronise() {
        let mut state = State {
            floor: 10,
            ..State::default()
        };
        assert!(
            state.changes_since(9).is_none(),
            "before the first kept change"
        );
        assert_eq!(state.changes_since(10).unwrap().len(), 0);
        for v in 11..11 + LOG_CAPACITY as u64 {
            state.record(change(v));
        }
        assert_eq!(state.changes_since(10).unwrap().len(), LOG_CAPACITY);
        let since: Vec<u64> = state
            .changes_since(20)
            .unwrap()
            .iter()
            .map(|c| c.version)
            .collect();
        assert_eq!(since.first(), Some(&21));
        // One more: the oldest change is dropped, and who last saw 10 missed it.
        state.record(change(11 + LOG_CAPACITY as u64));
        assert!(state.changes_since(10).is_none());
        assert_eq!(state.changes_since(11).unwrap().len(), LOG_CAPACITY);
    }
}
