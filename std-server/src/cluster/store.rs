//! The registry in etcd: the key layout, the snapshot read at start-up and after an
//! outage, guarded writes and deletes, and the watch that brings every change.
//!
//! Every record lives at `{prefix}/{environment}/services/{name}`, its value the
//! [`Record::to_bytes`](herald_core::Record::to_bytes) encoding (the lease as wall-clock
//! time, so that any directory continues it). Writes are guarded by the key's
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
    publisher: String,
}

impl Keys {
    /// The keys of `environment` under `prefix` (no trailing `/`), with the publisher key
    /// of `group`.
    pub fn new(prefix: &str, environment: &str, group: SocketAddr) -> Keys {
        Keys {
            services: format!("{prefix}/{environment}/services/"),
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

/// Every record key at one revision.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The store's revision the snapshot was read at.
    pub revision: i64,
    /// The records, in key order.
    pub entries: Vec<Entry>,
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

/// Reads every record key, page by page, all at the revision of the first page.
pub async fn load(kv: &mut KvClient, keys: &Keys) -> Result<Snapshot, EtcdError> {
    let end = prefix_end(keys.services().as_bytes());
    let mut from = keys.services().as_bytes().to_vec();
    let mut snapshot = Snapshot::default();
    loop {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
        if snapshot.revision > 0 {
            options = options.with_revision(snapshot.revision);
        }
        let page = timed(PAGE_TIMEOUT, kv.get(from.clone(), Some(options))).await?;
        if snapshot.revision == 0 {
            snapshot.revision = page
                .header()
                .map(|h| h.revision())
                .ok_or(EtcdError::Protocol("a range answer without a header"))?;
        }
        let kvs = page.kvs();
        snapshot
            .entries
            .extend(kvs.iter().filter_map(|kv| entry(keys, kv)));
        match kvs.last() {
            Some(last) if page.more() => {
                let next = [last.key(), &[0]].concat();
                if next <= from {
                    return Err(EtcdError::Protocol("a range answer that does not advance"));
                }
                from = next;
            }
            _ => return Ok(snapshot),
        }
    }
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
    let compares: Vec<Compare> = puts
        .iter()
        .map(|p| Compare::mod_revision(keys.service(&p.name), CompareOp::Equal, p.expect))
        .collect();
    let ops: Vec<TxnOp> = puts
        .iter()
        .map(|p| TxnOp::put(keys.service(&p.name), p.value.clone(), None))
        .collect();
    let txn = Txn::new().when(compares).and_then(ops);
    let answer = timed(OP_TIMEOUT, kv.txn(txn)).await?;
    if !answer.succeeded() {
        return Ok(None);
    }
    answer
        .header()
        .map(|h| Some(h.revision()))
        .ok_or(EtcdError::Protocol("a transaction answer without a header"))
}

/// Deletes `name`'s record if the key is still at `mod_revision`; true if deleted.
pub async fn delete_if(
    kv: &mut KvClient,
    keys: &Keys,
    name: &str,
    mod_revision: i64,
) -> Result<bool, EtcdError> {
    let key = keys.service(name);
    let txn = Txn::new()
        .when([Compare::mod_revision(
            key.clone(),
            CompareOp::Equal,
            mod_revision,
        )])
        .and_then([TxnOp::delete(key, None::<DeleteOptions>)]);
    Ok(timed(OP_TIMEOUT, kv.txn(txn)).await?.succeeded())
}

/// Deletes every `(name, mod_revision)` in one transaction, if every key is still at
/// that revision; true if they were deleted (false: none was).
pub async fn delete_all_if(
    kv: &mut KvClient,
    keys: &Keys,
    names: &[(String, i64)],
) -> Result<bool, EtcdError> {
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
    Ok(timed(OP_TIMEOUT, kv.txn(txn)).await?.succeeded())
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
    let name = keys.name(kv.key())?;
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

/// A watch of every record key, from a revision on, in a task of its own that hands
/// what it sees to the serve loop.
#[derive(Debug)]
pub struct Watcher {
    messages: mpsc::Receiver<WatchMessage>,
    task: JoinHandle<()>,
}

impl Watcher {
    /// Starts watching the records from `revision` on.
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
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision);
    let mut stream = match timed(OP_TIMEOUT, client.watch(keys.services(), Some(options))).await {
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
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), [0]);
    }
}
