//! The unicast subscriber table in etcd: every directory of a cluster holds every
//! subscription, so the publisher delivers to subscribers whichever directory they
//! talk to, and a new publisher continues where its predecessor was.
//!
//! A directory writes what its own subscribers do (a subscription taken, renewed or
//! changed, a cursor acknowledged at a replica: [`SubscriberEvent::Stored`]; an end:
//! [`SubscriberEvent::Removed`]) lazily, within [`LAZY_WRITES_AFTER`](super::LAZY_WRITES_AFTER)
//! (latest state per subscriber): a subscription lost in a crash is taken again at its
//! next renewal, and a cursor lost only repeats a delivery the listener takes once. Every
//! directory [applies](Directory::apply_subscriber) what the others wrote, from the
//! watch, and [forgets](Directory::forget_subscriber) what they deleted.
//!
//! Writes follow the records' discipline: each is guarded by the key's revision as last
//! seen; on a conflict the directory reads the key, applies it (the same subscription
//! merges: the later lease, the further cursor), and writes again only what still
//! differs. A deletion that meets a key changed since (renewed at another directory)
//! takes that subscription instead of deleting it.

use super::deletions::Deletions;
use super::store::{self, EtcdError, Keys, SubscriberEntry};
use crate::clock::Clock;
use etcd_client::KvClient;
use herald_core::directory::MAX_SUBSCRIBER_LEN;
use herald_core::registry::WallClock;
use herald_core::{Directory, Subscriber, SubscriberEvent};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// Tries of a write whose key keeps changing under it, before it waits for the next
/// flush.
const WRITE_TRIES: usize = 3;
/// At most one "subscriber table full" error per this period in the log.
const FULL_LOG_EVERY: Duration = Duration::from_secs(10);

/// What to do with a subscriber's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// Write the directory's current form of the subscription.
    Put,
    /// Delete the key (the subscription ended here).
    Delete,
}

/// The subscriptions' side of the etcd backend: the write queue and the revisions seen.
#[derive(Debug, Default)]
pub struct Subscriptions {
    queue: BTreeMap<u64, Op>,
    /// The `mod_revision` of each subscriber key as last seen.
    known: HashMap<u64, i64>,
    /// While a read of the table is in flight ([`read_started`](Self::read_started)): the
    /// keys deleted since, by the revision of their deletion. A read older than a
    /// deletion does not bring the subscription back.
    deleted_while_reading: Deletions<u64>,
    full_logged: Option<Instant>,
}

fn decode(entry: &SubscriberEntry, wall: WallClock) -> Result<Subscriber, String> {
    let subscriber = Subscriber::from_bytes(&entry.value, wall).map_err(|e| e.to_string())?;
    if subscriber.id != entry.id {
        return Err(format!("the subscription holds {:#x}", subscriber.id));
    }
    Ok(subscriber)
}

fn encode(subscriber: &Subscriber, wall: WallClock) -> Option<Vec<u8>> {
    let mut buf = [0u8; MAX_SUBSCRIBER_LEN];
    subscriber.to_bytes(wall, &mut buf).map(<[u8]>::to_vec)
}

impl Subscriptions {
    /// Writes waiting to go to etcd.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Takes the directory's subscriber events into the queue; true when there were any.
    pub fn take(&mut self, directory: &mut Directory<'_>) -> bool {
        let mut any = false;
        while let Some(event) = directory.poll_subscriber_event() {
            any = true;
            let (id, op) = match event {
                SubscriberEvent::Stored(s) => (s.id, Op::Put),
                SubscriberEvent::Removed(id) => (id, Op::Delete),
            };
            self.queue.insert(id, op);
        }
        any
    }

    /// Applies a subscription read from etcd (at start-up, from the watch, after a
    /// reload or a conflict) and remembers its revision. A corrupt one is logged and
    /// skipped; one that does not fit is logged (rate-limited).
    pub fn apply(&mut self, directory: &mut Directory<'_>, clock: &Clock, entry: &SubscriberEntry) {
        self.known.insert(entry.id, entry.mod_revision);
        let subscriber = match decode(entry, clock.wall()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(id = format_args!("{:#x}", entry.id), error = %e, "etcd: skipped a corrupt subscription");
                return;
            }
        };
        if directory.apply_subscriber(clock.now(), subscriber).is_err() {
            let now = Instant::now();
            if self
                .full_logged
                .is_none_or(|t| now.duration_since(t) >= FULL_LOG_EVERY)
            {
                self.full_logged = Some(now);
                tracing::error!(
                    id = format_args!("{:#x}", entry.id),
                    capacity = directory.subscriber_capacity(),
                    "the subscriber table is full: a subscription from etcd was not taken; raise --subscribers"
                );
            }
        }
    }

    /// Takes a subscription written by another directory (the watch); its own writes
    /// coming back are skipped.
    pub fn written(
        &mut self,
        directory: &mut Directory<'_>,
        clock: &Clock,
        entry: &SubscriberEntry,
    ) {
        if !self.is_known(entry.id, entry.mod_revision) {
            self.apply(directory, clock, entry);
        }
    }

    /// A subscription was deleted (the watch): another directory ended it.
    pub fn deleted(
        &mut self,
        directory: &mut Directory<'_>,
        clock: &Clock,
        id: u64,
        mod_revision: i64,
    ) {
        if self.is_known(id, mod_revision) {
            return;
        }
        self.known.remove(&id);
        self.deleted_while_reading.deleted(&id, mod_revision);
        directory.forget_subscriber(clock.now(), id);
    }

    /// A read of the table starts: every deletion before now is in what it finds, and
    /// those from now on are remembered until it is taken ([`reload`](Self::reload)).
    pub fn read_started(&mut self) {
        self.deleted_while_reading.read_started();
    }

    /// The read of the table failed: no deletion is remembered until the next.
    pub fn read_ended(&mut self) {
        self.deleted_while_reading.read_ended();
    }

    fn is_known(&self, id: u64, mod_revision: i64) -> bool {
        self.known.get(&id).is_some_and(|&r| r >= mod_revision)
    }

    /// Takes every subscription read again at revision `read_at` (after an outage,
    /// when the watch stopped, or after an election), and forgets those etcd no longer
    /// holds that are not queued here. A deletion queued here of a key that changed
    /// since it was last seen (the subscription renewed at another directory
    /// meanwhile) is dropped: that subscription is taken instead. A key this directory
    /// wrote, saw written or saw deleted after the read is neither taken from it nor
    /// forgotten for its absence (the watch brings what changed after the read).
    pub fn reload(
        &mut self,
        directory: &mut Directory<'_>,
        clock: &Clock,
        entries: &[SubscriberEntry],
        read_at: i64,
    ) {
        let newer =
            |known: &HashMap<u64, i64>, id: &u64| known.get(id).is_some_and(|&r| r > read_at);
        for entry in entries {
            if !newer(&self.known, &entry.id)
                && self.queue.get(&entry.id) == Some(&Op::Delete)
                && self.known.get(&entry.id) != Some(&entry.mod_revision)
            {
                self.queue.remove(&entry.id);
            }
        }
        self.known.retain(|_, &mut r| r > read_at);
        for entry in entries {
            let deleted_after = self.deleted_while_reading.after(&entry.id, read_at);
            if !self.known.contains_key(&entry.id) && !deleted_after {
                self.apply(directory, clock, entry);
            }
        }
        self.deleted_while_reading.read_ended();
        let present: HashSet<u64> = entries.iter().map(|e| e.id).collect();
        let gone: Vec<u64> = directory
            .subscribers()
            .map(|s| s.id)
            .filter(|id| {
                !present.contains(id) && !self.queue.contains_key(id) && !newer(&self.known, id)
            })
            .collect();
        for id in gone {
            directory.forget_subscriber(clock.now(), id);
        }
    }

    /// Writes the queue: the subscriptions in transactions of [`store::MAX_TXN_KEYS`],
    /// each key guarded by its revision as last seen (a transaction that meets a changed
    /// key is done again key by key), then the deletions. Returns how many keys were
    /// written; those whose keys keep changing stay queued.
    pub async fn flush(
        &mut self,
        kv: &mut KvClient,
        keys: &Keys,
        directory: &mut Directory<'_>,
        clock: &Clock,
    ) -> Result<(u64, usize), EtcdError> {
        let (mut txns, mut written) = (0, 0);
        let puts: Vec<u64> = self.ids(Op::Put);
        for chunk in puts.chunks(store::MAX_TXN_KEYS) {
            let wall = clock.wall();
            let held: HashMap<u64, &Subscriber> =
                directory.subscribers().map(|s| (s.id, s)).collect();
            let mut batch = Vec::with_capacity(chunk.len());
            for id in chunk {
                match held.get(id).and_then(|s| encode(s, wall)) {
                    Some(value) => batch.push((*id, value)),
                    // Ended since (its deletion follows), or cannot be encoded.
                    None => {
                        self.queue.remove(id);
                    }
                }
            }
            let txn: Vec<(String, &[u8], i64)> = batch
                .iter()
                .map(|(id, v)| (keys.subscriber(*id), v.as_slice(), self.revision(*id)))
                .collect();
            if txn.is_empty() {
                continue;
            }
            if let Some(revision) = store::put_keys(kv, &txn).await? {
                txns += 1;
                written += batch.len();
                for (id, _) in &batch {
                    self.known.insert(*id, revision);
                    self.queue.remove(id);
                }
                continue;
            }
            for (id, _) in &batch {
                let (t, w) = self.put_one(kv, keys, directory, clock, *id).await?;
                txns += t;
                written += w;
            }
        }
        for id in self.ids(Op::Delete) {
            let (t, w) = self.delete_one(kv, keys, directory, clock, id).await?;
            txns += t;
            written += w;
        }
        Ok((txns, written))
    }

    fn ids(&self, op: Op) -> Vec<u64> {
        self.queue
            .iter()
            .filter(|(_, o)| **o == op)
            .map(|(id, _)| *id)
            .collect()
    }

    fn revision(&self, id: u64) -> i64 {
        self.known.get(&id).copied().unwrap_or(0)
    }

    /// Writes subscription `id` alone: on a conflict reads the key, applies it, and
    /// writes again what still differs.
    async fn put_one(
        &mut self,
        kv: &mut KvClient,
        keys: &Keys,
        directory: &mut Directory<'_>,
        clock: &Clock,
        id: u64,
    ) -> Result<(u64, usize), EtcdError> {
        for _ in 0..WRITE_TRIES {
            let wall = clock.wall();
            let Some(value) = directory
                .subscribers()
                .find(|s| s.id == id)
                .and_then(|s| encode(s, wall))
            else {
                self.queue.remove(&id);
                return Ok((0, 0));
            };
            let txn = [(keys.subscriber(id), value.as_slice(), self.revision(id))];
            if let Some(revision) = store::put_keys(kv, &txn).await? {
                self.known.insert(id, revision);
                self.queue.remove(&id);
                return Ok((1, 1));
            }
            match store::get_subscriber(kv, keys, id).await? {
                None => {
                    self.known.remove(&id);
                }
                Some(theirs) => {
                    self.apply(directory, clock, &theirs);
                    let ours = directory
                        .subscribers()
                        .find(|s| s.id == id)
                        .and_then(|s| encode(s, clock.wall()));
                    if ours.as_ref() == Some(&theirs.value) {
                        self.queue.remove(&id);
                        return Ok((0, 0));
                    }
                }
            }
        }
        tracing::debug!(
            id = format_args!("{id:#x}"),
            "etcd: a subscription keeps changing under a write; trying again later"
        );
        Ok((0, 0))
    }

    /// Deletes subscription `id`'s key if it is still as last seen; a key changed since
    /// (the subscription renewed or taken at another directory) is applied instead.
    async fn delete_one(
        &mut self,
        kv: &mut KvClient,
        keys: &Keys,
        directory: &mut Directory<'_>,
        clock: &Clock,
        id: u64,
    ) -> Result<(u64, usize), EtcdError> {
        if let Some(revision) =
            store::delete_key_if(kv, keys.subscriber(id), self.revision(id)).await?
        {
            self.known.remove(&id);
            self.queue.remove(&id);
            self.deleted_while_reading.deleted(&id, revision);
            return Ok((1, 1));
        }
        self.queue.remove(&id);
        match store::get_subscriber(kv, keys, id).await? {
            None => {
                self.known.remove(&id);
            }
            Some(theirs) => self.apply(directory, clock, &theirs),
        }
        Ok((0, 0))
    }
}
