//! Which directory of a group publishes: an election on an etcd key.
//!
//! Each directory holds an etcd lease of `--publisher-lease-ms` (kept alive every third
//! of its TTL) and campaigns for `{prefix}/{environment}/publisher/{group}`: a
//! transaction puts its advertised address there, attached to its lease, if the key does
//! not exist. The winner publishes until its lease is gone (it died, or could not renew
//! in time): then etcd deletes the key, the others see the deletion on their watch of
//! the key and campaign again. A losing directory also campaigns once per TTL, in case
//! its watch broke. Revoking the lease ([`Election::resign`]) hands over at once.
//!
//! While etcd cannot be reached, nothing changes here: a publisher keeps publishing (it
//! cannot tell whether its lease is still alive, and two publishers only duplicate
//! announcements, which listeners ignore, whereas none would leave changes unannounced).
//! Once etcd answers again, a publisher whose lease is gone, or whose key another
//! directory holds, steps down.

use super::endpoints::Endpoints;
use super::store::{create_with_lease, timed, EtcdError, OP_TIMEOUT};
use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper, WatchOptions, WatchStream};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Shortest wait before trying again after etcd failed.
const RETRY_MIN: Duration = Duration::from_millis(200);

/// What the election tells the serve loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElectionEvent {
    /// This directory holds the publisher key: publish.
    Elected,
    /// This directory no longer holds it: stop publishing (the reason, for the log).
    Deposed(String),
    /// Another directory holds the key (its value: the advertised address).
    Publisher(String),
}

/// A running election: a task that campaigns and keeps the lease alive.
pub struct Election {
    events: mpsc::Receiver<ElectionEvent>,
    checks: mpsc::Sender<()>,
    task: JoinHandle<()>,
    lease: Arc<AtomicI64>,
    client: Client,
}

impl Election {
    /// Starts campaigning for `key` with `value` (the advertised address), on a lease
    /// of `ttl_secs`; a failed request has `endpoints` check the members.
    pub fn start(
        client: Client,
        endpoints: Endpoints,
        key: String,
        value: String,
        ttl_secs: u64,
    ) -> Election {
        let (events_tx, events) = mpsc::channel(16);
        let (checks, checks_rx) = mpsc::channel(1);
        let lease = Arc::new(AtomicI64::new(0));
        let campaign = Campaign {
            client: client.clone(),
            endpoints,
            key,
            value,
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX).max(1),
            ttl: Duration::from_secs(ttl_secs.max(1)),
            lease: None,
            shared_lease: lease.clone(),
            elected: false,
            holder: None,
            events: events_tx,
            key_watch: None,
            read_at: None,
            failures: 0,
        };
        let task = tokio::spawn(campaign.run(checks_rx));
        Election {
            events,
            checks,
            task,
            lease,
            client,
        }
    }

    /// The next event (cancel-safe).
    pub async fn recv(&mut self) -> ElectionEvent {
        match self.events.recv().await {
            Some(event) => event,
            None => std::future::pending().await,
        }
    }

    /// Asks the election to check the publisher key now (etcd answers again after an
    /// outage): a publisher that no longer holds it steps down, a replica campaigns.
    pub fn check(&self) {
        let _ = self.checks.try_send(());
    }

    /// Stops campaigning and revokes the lease, so that another directory takes over
    /// at once. Returns whether the lease was revoked.
    pub async fn resign(mut self) -> bool {
        self.task.abort();
        let _ = (&mut self.task).await;
        let id = self.lease.load(Ordering::SeqCst);
        if id == 0 {
            return false;
        }
        let mut leases = self.client.lease_client();
        match timed(OP_TIMEOUT, leases.revoke(id)).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "etcd: could not revoke the publisher lease; another directory takes over when it expires");
                false
            }
        }
    }
}

impl std::fmt::Debug for Election {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Election")
            .field("lease", &self.lease.load(Ordering::SeqCst))
            .finish()
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A lease and its keep-alive stream.
struct Lease {
    id: i64,
    keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
}

/// The election task's state.
struct Campaign {
    client: Client,
    endpoints: Endpoints,
    key: String,
    value: String,
    ttl_secs: i64,
    ttl: Duration,
    lease: Option<Lease>,
    shared_lease: Arc<AtomicI64>,
    elected: bool,
    /// The other directory last seen holding the key.
    holder: Option<String>,
    events: mpsc::Sender<ElectionEvent>,
    key_watch: Option<WatchStream>,
    /// The revision the key was last read at: a new watch starts after it, so that no
    /// change in between is missed.
    read_at: Option<i64>,
    /// Consecutive failures, for the back-off.
    failures: u32,
}

/// What a look at the publisher key found.
enum Holder {
    Us,
    Nobody,
    Other(String),
}

impl Campaign {
    fn backoff(&self) -> Duration {
        let factor = 1u32 << self.failures.min(5);
        (RETRY_MIN * factor).min(self.ttl)
    }

    async fn emit(&mut self, event: ElectionEvent) {
        let _ = self.events.send(event).await;
    }

    async fn run(mut self, mut checks: mpsc::Receiver<()>) {
        let now = Instant::now();
        let mut next_campaign = now;
        let mut next_keep_alive = now;
        let mut next_watch = now;
        loop {
            if self.lease.is_none() {
                match self.grant().await {
                    Ok(()) => {
                        self.failures = 0;
                        next_keep_alive = Instant::now() + self.ttl / 3;
                    }
                    Err(e) => {
                        self.failures += 1;
                        self.endpoints.suspect();
                        tracing::debug!(error = %e, "etcd: cannot grant the publisher lease");
                        tokio::time::sleep(self.backoff()).await;
                        continue;
                    }
                }
            }
            if !self.elected && Instant::now() >= next_campaign {
                next_campaign = match self.campaign().await {
                    // The key was deleted between the transaction and the read: soon.
                    Ok(true) => Instant::now() + RETRY_MIN,
                    Ok(false) => Instant::now() + self.ttl,
                    Err(e) => {
                        self.failures += 1;
                        self.endpoints.suspect();
                        tracing::debug!(error = %e, "etcd: campaign failed");
                        Instant::now() + self.backoff()
                    }
                };
            }
            if self.key_watch.is_none() && Instant::now() >= next_watch {
                self.watch_key().await;
                next_watch = Instant::now() + self.backoff();
            }
            let mut wake = next_keep_alive;
            if !self.elected {
                wake = wake.min(next_campaign);
            }
            if self.key_watch.is_none() {
                wake = wake.min(next_watch);
            }
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                check = checks.recv() => {
                    if check.is_none() {
                        return;
                    }
                    if self.elected {
                        self.verify().await;
                    } else {
                        next_campaign = Instant::now();
                    }
                }
                event = next_key_event(&mut self.key_watch) => {
                    match event {
                        Some(_) if self.elected => self.verify().await,
                        Some(true) => next_campaign = Instant::now(),
                        Some(false) => {}
                        None => {
                            self.key_watch = None;
                            self.endpoints.suspect();
                        }
                    }
                }
            }
            if Instant::now() >= next_keep_alive {
                // A renewal that found no answer is tried again soon, not a third of
                // the lease later: another member may answer (they are being checked).
                let wait = if self.keep_alive().await {
                    self.ttl / 3
                } else {
                    RETRY_MIN.min(self.ttl / 3)
                };
                next_keep_alive = Instant::now() + wait;
                if self.lease.is_none() {
                    next_campaign = Instant::now();
                }
            }
        }
    }

    async fn grant(&mut self) -> Result<(), EtcdError> {
        let mut leases = self.client.lease_client();
        let granted = timed(OP_TIMEOUT, leases.grant(self.ttl_secs, None)).await?;
        if granted.id() == 0 || granted.ttl() <= 0 {
            return Err(EtcdError::Protocol("a lease grant without a lease"));
        }
        // etcd may grant a longer TTL than asked (its minimum): renew by what it granted.
        self.ttl = Duration::from_secs(granted.ttl().unsigned_abs()).max(Duration::from_secs(1));
        self.shared_lease.store(granted.id(), Ordering::SeqCst);
        tracing::debug!(
            lease = granted.id(),
            ttl = granted.ttl(),
            "etcd: publisher lease granted"
        );
        self.lease = Some(Lease {
            id: granted.id(),
            keeper: None,
        });
        Ok(())
    }

    /// The lease is gone: a publisher steps down; a new lease is granted next.
    async fn lease_gone(&mut self) {
        self.lease = None;
        self.shared_lease.store(0, Ordering::SeqCst);
        if self.elected {
            self.elected = false;
            self.emit(ElectionEvent::Deposed(
                "the publisher lease expired".to_owned(),
            ))
            .await;
        }
    }

    /// Renews the lease once. A failure to reach etcd changes nothing (returns false);
    /// a lease that etcd no longer knows is gone.
    async fn keep_alive(&mut self) -> bool {
        let Some(lease) = self.lease.as_mut() else {
            return true;
        };
        let id = lease.id;
        let alive = match lease.keeper.as_mut() {
            None => {
                let mut leases = self.client.lease_client();
                match timed(OP_TIMEOUT, leases.keep_alive(id)).await {
                    // Opening the stream renewed the lease once already.
                    Ok(keeper) => {
                        lease.keeper = Some(keeper);
                        Some(true)
                    }
                    // Either etcd cannot be reached, or the lease is gone: ask.
                    Err(e) => match timed(OP_TIMEOUT, leases.time_to_live(id, None)).await {
                        Ok(answer) if answer.ttl() <= 0 => Some(false),
                        Ok(_) | Err(_) => {
                            tracing::debug!(error = %e, "etcd: lease keep-alive failed");
                            None
                        }
                    },
                }
            }
            Some((keeper, stream)) => {
                let answer = match keeper.keep_alive().await {
                    Ok(()) => timed(OP_TIMEOUT, stream.message()).await,
                    Err(e) => Err(e.into()),
                };
                match answer {
                    Ok(Some(answer)) => Some(answer.ttl() > 0),
                    Ok(None) => {
                        lease.keeper = None;
                        None
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "etcd: lease keep-alive failed");
                        lease.keeper = None;
                        None
                    }
                }
            }
        };
        match alive {
            Some(true) => self.failures = 0,
            Some(false) => self.lease_gone().await,
            None => {
                self.endpoints.suspect();
                return false;
            }
        }
        true
    }

    /// Who holds the publisher key.
    async fn holder(&mut self) -> Result<Holder, EtcdError> {
        let mut kv = self.client.kv_client();
        let answer = timed(OP_TIMEOUT, kv.get(self.key.as_str(), None)).await?;
        if let Some(header) = answer.header() {
            self.read_at = Some(header.revision());
        }
        let ours = self.lease.as_ref().map(|l| l.id);
        Ok(
            match answer
                .kvs()
                .iter()
                .find(|kv| kv.key() == self.key.as_bytes())
            {
                None => Holder::Nobody,
                Some(kv) if Some(kv.lease()) == ours && kv.value() == self.value.as_bytes() => {
                    Holder::Us
                }
                Some(kv) => Holder::Other(String::from_utf8_lossy(kv.value()).into_owned()),
            },
        )
    }

    /// Tries to take the publisher key; true when nobody held it but it was not taken
    /// either (worth trying again soon).
    async fn campaign(&mut self) -> Result<bool, EtcdError> {
        let Some(id) = self.lease.as_ref().map(|l| l.id) else {
            return Ok(false);
        };
        let mut vacant = false;
        let mut kv = self.client.kv_client();
        let won = create_with_lease(&mut kv, &self.key, &self.value, id).await?
            || match self.holder().await? {
                Holder::Us => true,
                Holder::Nobody => {
                    vacant = true;
                    false
                }
                Holder::Other(value) => {
                    if self.holder.as_ref() != Some(&value) {
                        self.holder = Some(value.clone());
                        self.emit(ElectionEvent::Publisher(value)).await;
                    }
                    false
                }
            };
        self.failures = 0;
        if won {
            self.elected = true;
            self.holder = None;
            self.emit(ElectionEvent::Elected).await;
        }
        Ok(vacant)
    }

    /// A publisher checks that it still holds the key; if nobody does, it takes it
    /// again; if another directory does, it steps down.
    async fn verify(&mut self) {
        match self.holder().await {
            Ok(Holder::Us) => {}
            Ok(Holder::Nobody) => {
                if let Err(e) = self.campaign_again().await {
                    self.endpoints.suspect();
                    tracing::debug!(error = %e, "etcd: campaign failed");
                }
            }
            Ok(Holder::Other(value)) => {
                self.elected = false;
                self.holder = Some(value.clone());
                self.emit(ElectionEvent::Deposed(format!(
                    "{value} holds the publisher key"
                )))
                .await;
            }
            Err(e) => {
                self.endpoints.suspect();
                tracing::debug!(error = %e, "etcd: cannot check the publisher key");
            }
        }
    }

    /// The key is gone while this directory published: take it again, or step down.
    async fn campaign_again(&mut self) -> Result<(), EtcdError> {
        let Some(id) = self.lease.as_ref().map(|l| l.id) else {
            return Ok(());
        };
        let mut kv = self.client.kv_client();
        if create_with_lease(&mut kv, &self.key, &self.value, id).await? {
            return Ok(());
        }
        self.elected = false;
        self.emit(ElectionEvent::Deposed(
            "the publisher key was taken".to_owned(),
        ))
        .await;
        Ok(())
    }

    /// Watches the publisher key from after its last read (or from now).
    async fn watch_key(&mut self) {
        let mut watches = self.client.watch_client();
        let options = self
            .read_at
            .take()
            .map(|r| WatchOptions::new().with_start_revision(r + 1));
        match timed(OP_TIMEOUT, watches.watch(self.key.as_str(), options)).await {
            Ok(stream) => self.key_watch = Some(stream),
            Err(e) => {
                self.endpoints.suspect();
                tracing::debug!(error = %e, "etcd: cannot watch the publisher key");
            }
        }
    }
}

/// The next change of the publisher key: `Some(true)` for a deletion, `Some(false)` for
/// a put, `None` when the watch failed (waits forever without a watch).
async fn next_key_event(watch: &mut Option<WatchStream>) -> Option<bool> {
    let Some(stream) = watch.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match stream.message().await {
            Ok(Some(message)) => {
                if message.canceled() {
                    return None;
                }
                // A deletion has create_revision 0 (see `store::change`).
                let mut deleted = None;
                for event in message.events() {
                    if let Some(kv) = event.kv() {
                        deleted = Some(deleted.unwrap_or(false) || kv.create_revision() == 0);
                    }
                }
                if let Some(deleted) = deleted {
                    return Some(deleted);
                }
            }
            Ok(None) | Err(_) => return None,
        }
    }
}
