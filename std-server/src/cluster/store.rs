//! The registry in etcd: the key layout, the snapshot read at start-up and after an
//! outage, guarded writes and deletes, and the watch that brings every change.
//!
//! Every record lives at `{prefix}/{environment}/services/{name}`, its value the
//! [`Record::to_bytes`](herald_core::Record::to_bytes) encoding (the lease as wall-clock
//! time, so that any directory continues it); every unicast subscription at
//! `{prefix}/{environment}/subscribers/{id as 16 hex digits}`, its value the
//! [`Subscriber::to_bytes`](herald_core::Subscriber::to_bytes) encoding (its lease as
//! wall-clock time, its cursor). Writes are guarded by the key's
//! `mod_revision` as last seen, so a directory never overwrites a change it has not
//! seen: on a conflict it reads the key again and decides (see
//! [`Cluster`](super::Cluster)). Everything read from etcd is untrusted: keys that are
//! not UTF-8 are skipped, and nothing here panics on what a server sends.

use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, KvClient, PutOptions, Txn, TxnOp, WatchClient,
    WatchOptions,
};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Longest wait for one etcd request before etcd counts as unreachable.
pub const OP_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for one page of a snapshot.
const PAGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys read per page of a snapshot.
const PAGE: i64 = 500;
/// Most keys written in one transaction (etcd allows 128 operations by default).
pub const MAX_TXN_KEYS: usize = 100;

/// Why an etcd request failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The client or the server reported an error.
    #[error("{0}")]
    Client(#[from] etcd_client::Error),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The server's answer made no sense.
    #[error("unexpected answer: {0}")]
    Protocol(&'static str),
}

/// gRPC's status code `UNAVAILABLE`: the member refused or dropped the connection, or
/// has no leader.
const GRPC_UNAVAILABLE: i32 = 14;

impl EtcdError {
    /// True when the member the request went to could not take it (connection refused
    /// or lost, no leader): another member may.
    pub fn is_unavailable(&self) -> bool {
        match self {
            EtcdError::Client(etcd_client::Error::GRpcStatus(status)) => {
                status.code() as i32 == GRPC_UNAVAILABLE
            }
            EtcdError::Client(
                etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_),
            ) => true,
            _ => false,
        }
    }
}

/// Runs `request`, failing with [`EtcdError::Timeout`] after `limit`.
pub async fn timed<T>(
    limit: Duration,
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, EtcdError> {
    match tokio::time::timeout(limit, request).await {
        Ok(result) => result.map_err(EtcdError::from),
        Err(_) => Err(EtcdError::Timeout(limit)),
    }
}

/// The smallest key after every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Where a directory's keys are.
#[derive(Clone, Debug)]
pub struct Keys {
    services: String,
    subscribers: String,
    publisher: String,
}

impl Keys {
    /// The keys of `environment` under `prefix` (no trailing `/`), with the publisher key
    /// of `group`.
    pub fn new(prefix: &str, environment: &str, group: SocketAddr) -> Keys {
        Keys {
            services: format!("{prefix}/{environment}/services/"),
            subscribers: format!("{prefix}/{environment}/subscribers/"),
            publisher: format!("{prefix}/{environment}/publisher/{group}"),
        }
    }

    /// The prefix of every record key.
    pub fn services(&self) -> &str {
        &self.services
    }

    /// The key of `name`'s record.
    pub fn service(&self, name: &str) -> String {
        format!("{}{name}", self.services)
    }

    /// The service name in a record key (`None` for a key that is not one).
    pub fn name<'k>(&self, key: &'k [u8]) -> Option<&'k str> {
        let rest = key.strip_prefix(self.services.as_bytes())?;
        std::str::from_utf8(rest).ok().filter(|n| !n.is_empty())
    }

    /// The publisher key of the group.
    pub fn publisher(&self) -> &str {
        &self.publisher
    }

    /// The prefix of every subscriber key.
    pub fn subscribers(&self) -> &str {
        &self.subscribers
    }

    /// The key of subscriber `id`.
    pub fn subscriber(&self, id: u64) -> String {
        format!("{}{id:016x}", self.subscribers)
    }

    /// The subscriber id in a subscriber key (`None` for a key that is not one).
    pub fn subscriber_id(&self, key: &[u8]) -> Option<u64> {
        let rest = key.strip_prefix(self.subscribers.as_bytes())?;
        if rest.len() != 16 || !rest.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u64::from_str_radix(std::str::from_utf8(rest).ok()?, 16).ok()
    }

    /// The keys one watch covers: from the records' prefix to the end of the
    /// subscribers' (`services/` sorts before `subscribers/`).
    fn watched(&self) -> (&str, Vec<u8>) {
        (&self.services, prefix_end(self.subscribers.as_bytes()))
    }
}

/// One record key as read from etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The service name (from the key).
    pub name: String,
    /// The encoded record.
    pub value: Vec<u8>,
    /// The revision of the key's last change.
    pub mod_revision: i64,
}

/// One subscriber key as read from etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberEntry {
    /// The subscriber id (from the key).
    pub id: u64,
    /// The encoded subscription.
    pub value: Vec<u8>,
    /// The revision of the key's last change.
    pub mod_revision: i64,
}

/// Every record and subscriber key at one revision.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The store's revision the snapshot was read at.
    pub revision: i64,
    /// The records, in key order.
    pub entries: Vec<Entry>,
    /// The subscriptions, in key order.
    pub subscribers: Vec<SubscriberEntry>,
}

fn entry(keys: &Keys, kv: &etcd_client::KeyValue) -> Option<Entry> {
    match keys.name(kv.key()) {
        Some(name) => Some(Entry {
            name: name.to_owned(),
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
        }),
        None => {
            tracing::warn!(key = %String::from_utf8_lossy(kv.key()), "etcd: skipped a key that names no service");
            None
        }
    }
}

fn subscriber_entry(keys: &Keys, kv: &etcd_client::KeyValue) -> Option<SubscriberEntry> {
    match keys.subscriber_id(kv.key()) {
        Some(id) => Some(SubscriberEntry {
            id,
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
        }),
        None => {
            tracing::warn!(key = %String::from_utf8_lossy(kv.key()), "etcd: skipped a key that names no subscriber");
            None
        }
    }
}

/// Reads every record key and then every subscriber key, page by page, all at the
/// revision of the first page.
pub async fn load(kv: &mut KvClient, keys: &Keys) -> Result<Snapshot, EtcdError> {
    let mut snapshot = Snapshot::default();
    let mut records = Vec::new();
    load_prefix(kv, keys.services(), &mut snapshot.revision, |kv| {
        records.extend(entry(keys, kv));
    })
    .await?;
    let mut subscribers = Vec::new();
    load_prefix(kv, keys.subscribers(), &mut snapshot.revision, |kv| {
        subscribers.extend(subscriber_entry(keys, kv));
    })
    .await?;
    snapshot.entries = records;
    snapshot.subscribers = subscribers;
    Ok(snapshot)
}

/// Reads every key under `prefix`, page by page, at `revision` (0: at the revision of
/// the first page, which it is set to).
async fn load_prefix(
    kv: &mut KvClient,
    prefix: &str,
    revision: &mut i64,
    mut take: impl FnMut(&etcd_client::KeyValue),
) -> Result<(), EtcdError> {
    let end = prefix_end(prefix.as_bytes());
    let mut from = prefix.as_bytes().to_vec();
    loop {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
        if *revision > 0 {
            options = options.with_revision(*revision);
        }
        let page = timed(PAGE_TIMEOUT, kv.get(from.clone(), Some(options))).await?;
        if *revision == 0 {
            *revision = page
                .header()
                .map(|h| h.revision())
                .ok_or(EtcdError::Protocol("a range answer without a header"))?;
        }
        let kvs = page.kvs();
        kvs.iter().for_each(&mut take);
        match kvs.last() {
            Some(last) if page.more() => {
                let next = [last.key(), &[0]].concat();
                if next <= from {
                    return Err(EtcdError::Protocol("a range answer that does not advance"));
                }
                from = next;
            }
            _ => return Ok(()),
        }
    }
}

/// Reads subscriber `id`'s key.
pub async fn get_subscriber(
    kv: &mut KvClient,
    keys: &Keys,
    id: u64,
) -> Result<Option<SubscriberEntry>, EtcdError> {
    let key = keys.subscriber(id);
    let answer = timed(OP_TIMEOUT, kv.get(key.as_str(), None)).await?;
    Ok(answer
        .kvs()
        .iter()
        .find(|kv| kv.key() == key.as_bytes())
        .and_then(|kv| subscriber_entry(keys, kv)))
}

/// Reads one record key.
pub async fn get(kv: &mut KvClient, keys: &Keys, name: &str) -> Result<Option<Entry>, EtcdError> {
    let answer = timed(OP_TIMEOUT, kv.get(keys.service(name), None)).await?;
    Ok(answer
        .kvs()
        .iter()
        .find(|kv| kv.key() == keys.service(name).as_bytes())
        .and_then(|kv| entry(keys, kv)))
}

/// A record to write, if the key is still at `expect` (0: if the key does not exist).
#[derive(Clone, Debug)]
pub struct Put {
    /// The service name.
    pub name: String,
    /// The encoded record.
    pub value: Vec<u8>,
    /// The `mod_revision` the key must still have.
    pub expect: i64,
}

/// Writes every put in one transaction if every key is still as expected. Returns the
/// revision of the write, or `None` when some key had changed (nothing was written).
pub async fn put_all(
    kv: &mut KvClient,
    keys: &Keys,
    puts: &[Put],
) -> Result<Option<i64>, EtcdError> {
    let puts: Vec<(String, &[u8], i64)> = puts
        .iter()
        .map(|p| (keys.service(&p.name), p.value.as_slice(), p.expect))
        .collect();
    put_keys(kv, &puts).await
}

/// Writes every `(key, value, expected mod_revision)` in one transaction if every key is
/// still as expected (0: does not exist). Returns the revision of the write, or `None`
/// when some key had changed (nothing was written).
pub async fn put_keys(
    kv: &mut KvClient,
    puts: &[(String, &[u8], i64)],
) -> Result<Option<i64>, EtcdError> {
    let compares: Vec<Compare> = puts
        .iter()
        .map(|(key, _, expect)| Compare::mod_revision(key.as_str(), CompareOp::Equal, *expect))
        .collect();
    let ops: Vec<TxnOp> = puts
        .iter()
        .map(|(key, value, _)| TxnOp::put(key.as_str(), value.to_vec(), None))
        .collect();
    let txn = Txn::new().when(compares).and_then(ops);
    revision_if_done(kv, txn).await
}

/// Runs `txn`; the revision it made, or `None` when its comparisons failed (it did
/// nothing).
async fn revision_if_done(kv: &mut KvClient, txn: Txn) -> Result<Option<i64>, EtcdError> {
    let answer = timed(OP_TIMEOUT, kv.txn(txn)).await?;
    if !answer.succeeded() {
        return Ok(None);
    }
    answer
        .header()
        .map(|h| Some(h.revision()))
        .ok_or(EtcdError::Protocol("a transaction answer without a header"))
}

/// Deletes `name`'s record if the key is still at `mod_revision`; the revision of the
/// deletion, or `None` when the key had changed.
pub async fn delete_if(
    kv: &mut KvClient,
    keys: &Keys,
    name: &str,
    mod_revision: i64,
) -> Result<Option<i64>, EtcdError> {
    delete_key_if(kv, keys.service(name), mod_revision).await
}

/// Deletes `key` if it is still at `mod_revision`; the revision of the deletion, or
/// `None` when the key had changed.
pub async fn delete_key_if(
    kv: &mut KvClient,
    key: String,
    mod_revision: i64,
) -> Result<Option<i64>, EtcdError> {
    let txn = Txn::new()
        .when([Compare::mod_revision(
            key.clone(),
            CompareOp::Equal,
            mod_revision,
        )])
        .and_then([TxnOp::delete(key, None::<DeleteOptions>)]);
    revision_if_done(kv, txn).await
}

/// Deletes every `(name, mod_revision)` in one transaction, if every key is still at
/// that revision; the revision of the deletion, or `None` (none was deleted).
pub async fn delete_all_if(
    kv: &mut KvClient,
    keys: &Keys,
    names: &[(String, i64)],
) -> Result<Option<i64>, EtcdError> {
    let compares: Vec<Compare> = names
        .iter()
        .map(|(name, revision)| {
            Compare::mod_revision(keys.service(name), CompareOp::Equal, *revision)
        })
        .collect();
    let deletes: Vec<TxnOp> = names
        .iter()
        .map(|(name, _)| TxnOp::delete(keys.service(name), None::<DeleteOptions>))
        .collect();
    let txn = Txn::new().when(compares).and_then(deletes);
    revision_if_done(kv, txn).await
}

/// Puts `value` at `key` attached to `lease` if the key does not exist; true if it was
/// put (the campaign of an election).
pub async fn create_with_lease(
    kv: &mut KvClient,
    key: &str,
    value: &str,
    lease: i64,
) -> Result<bool, EtcdError> {
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            value,
            Some(PutOptions::new().with_lease(lease)),
        )]);
    Ok(timed(OP_TIMEOUT, kv.txn(txn)).await?.succeeded())
}

/// A change the watch reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The record was written.
    Put(Entry),
    /// The record was deleted.
    Delete {
        /// The service name.
        name: String,
        /// The revision of the deletion.
        mod_revision: i64,
    },
    /// The subscription was written.
    PutSubscriber(SubscriberEntry),
    /// The subscription was deleted.
    DeleteSubscriber {
        /// The subscriber id.
        id: u64,
        /// The revision of the deletion.
        mod_revision: i64,
    },
}

/// What the watch task reports.
#[derive(Debug)]
pub enum WatchMessage {
    /// Changes, in the order they happened.
    Changes(Vec<Change>),
    /// The watch stopped (etcd unreachable, or the revision was compacted): reload.
    Failed(String),
}

/// Classifies an event of a watch. etcd marks a deletion by a `create_revision` of 0
/// (this is how it tells its own watchers); reading it so avoids the client library's
/// panic on an event type it does not know.
fn change(keys: &Keys, event: &etcd_client::Event) -> Option<Change> {
    let kv = event.kv()?;
    let Some(name) = keys.name(kv.key()) else {
        let id = keys.subscriber_id(kv.key())?;
        return Some(if kv.create_revision() == 0 {
            Change::DeleteSubscriber {
                id,
                mod_revision: kv.mod_revision(),
            }
        } else {
            Change::PutSubscriber(SubscriberEntry {
                id,
                value: kv.value().to_vec(),
                mod_revision: kv.mod_revision(),
            })
        });
    };
    Some(if kv.create_revision() == 0 {
        Change::Delete {
            name: name.to_owned(),
            mod_revision: kv.mod_revision(),
        }
    } else {
        Change::Put(Entry {
            name: name.to_owned(),
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
        })
    })
}

/// A watch of every record and subscriber key, from a revision on, in a task of its own that hands
/// what it sees to the serve loop.
#[derive(Debug)]
pub struct Watcher {
    messages: mpsc::Receiver<WatchMessage>,
    task: JoinHandle<()>,
}

impl Watcher {
    /// Starts watching the records and subscribers from `revision` on.
    pub fn start(client: WatchClient, keys: &Keys, revision: i64) -> Watcher {
        let (tx, messages) = mpsc::channel(64);
        let task = tokio::spawn(watch(client, keys.clone(), revision, tx));
        Watcher { messages, task }
    }

    /// The next message (cancel-safe). After [`WatchMessage::Failed`] nothing more comes.
    pub async fn recv(&mut self) -> WatchMessage {
        self.messages
            .recv()
            .await
            .unwrap_or_else(|| WatchMessage::Failed("the watch task ended".to_owned()))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch(mut client: WatchClient, keys: Keys, revision: i64, tx: mpsc::Sender<WatchMessage>) {
    let failed = |why: String| WatchMessage::Failed(why);
    let (from, end) = keys.watched();
    let options = WatchOptions::new()
        .with_range(end)
        .with_start_revision(revision);
    let mut stream = match timed(OP_TIMEOUT, client.watch(from, Some(options))).await {
        Ok(stream) => stream,
        Err(e) => {
            let _ = tx.send(failed(e.to_string())).await;
            return;
        }
    };
    loop {
        let message = match stream.message().await {
            Ok(Some(message)) => message,
            Ok(None) => {
                let _ = tx.send(failed("the watch stream ended".to_owned())).await;
                return;
            }
            Err(e) => {
                let _ = tx.send(failed(e.to_string())).await;
                return;
            }
        };
        if message.canceled() || message.compact_revision() > 0 {
            let why = if message.compact_revision() > 0 {
                format!(
                    "revision {revision} is compacted (oldest kept: {})",
                    message.compact_revision()
                )
            } else {
                format!("the watch was canceled: {}", message.cancel_reason())
            };
            let _ = tx.send(failed(why)).await;
            return;
        }
        let changes: Vec<Change> = message
            .events()
            .iter()
            .filter_map(|e| change(&keys, e))
            .collect();
        if !changes.is_empty() && tx.send(WatchMessage::Changes(changes)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout() {
        let keys = Keys::new("/herald", "prod", "237.37.37.1:37371".parse().unwrap());
        assert_eq!(keys.services(), "/herald/prod/services/");
        assert_eq!(keys.service("billing"), "/herald/prod/services/billing");
        assert_eq!(keys.publisher(), "/herald/prod/publisher/237.37.37.1:37371");
        assert_eq!(keys.name(b"/herald/prod/services/billing"), Some("billing"));
        assert_eq!(keys.name(b"/herald/prod/services/"), None);
        assert_eq!(keys.name(b"/herald/dev/services/billing"), None);
        assert_eq!(keys.name(b"/herald/prod/services/\xff"), None);
        assert_eq!(
            keys.subscriber(0xab),
            "/herald/prod/subscribers/00000000000000ab"
        );
        let key = keys.subscriber(u64::MAX);
        assert_eq!(keys.subscriber_id(key.as_bytes()), Some(u64::MAX));
        assert_eq!(keys.subscriber_id(b"/herald/prod/subscribers/ab"), None);
        assert_eq!(
            keys.subscriber_id(b"/herald/prod/subscribers/zzzzzzzzzzzzzzzz"),
            None
        );
        assert_eq!(keys.name(key.as_bytes()), None);
        let (from, end) = keys.watched();
        assert!(from.as_bytes() < key.as_bytes() && key.as_bytes() < end.as_slice());
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), [0]);
    }
}
