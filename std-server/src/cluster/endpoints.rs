//! Which etcd members the requests go to.
//!
//! The client spreads its requests over every endpoint in `--store`, picking one at
//! random for each. A member that is down refuses connections, yet the client still
//! counts it as ready (it connects lazily and reports the failure on the request it was
//! given): while one member of three was down, a third of the requests failed, and each
//! failure put the directory in an outage (writes acknowledged before they were stored,
//! expiry held) until the next try picked a member that answers.
//!
//! With several endpoints, [`Endpoints`] checks every member with a request of its own,
//! a linearizable read that needs the member to have a leader, every [`PROBE_EVERY`]
//! and at once when a request failed. It takes the members that do not answer out of
//! the client's choice and puts them back once they answer. When no member answers,
//! every one stays in, so that requests fail at once and the directory serves from
//! memory (see [`Cluster`](super::Cluster)). A request that failed because a member is
//! unavailable is tried once more when a check made at once finds, within
//! [`RETRY_CHECK`], another that answers ([`Endpoints::retry_after`]).

use super::store::{timed, EtcdError, OP_TIMEOUT};
use etcd_client::{Client, ConnectOptions, GetOptions, KvClient};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{Mutex, Notify};

/// How often every member is checked.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for a member's answer to a check.
const PROBE_TIMEOUT: Duration = OP_TIMEOUT;
/// Longest wait for the check that decides whether a failed request is tried again: a
/// request waiting for its acknowledgement is delayed by that much at most (members
/// that answer do so in milliseconds, and one that is down refuses at once).
pub const RETRY_CHECK: Duration = Duration::from_millis(250);

/// The members of the client's choice, checked in the background; cheap to clone.
/// With a single endpoint it does nothing.
#[derive(Clone)]
pub struct Endpoints {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    /// The client whose choice of members this keeps.
    client: Client,
    members: Vec<Member>,
    /// What is checked: any key (only whether the member can answer matters).
    key: String,
    /// One check of every member at a time.
    state: Mutex<State>,
    /// Asks for a check now.
    wake: Arc<Notify>,
}

/// One member and the connection of its own that checks it.
struct Member {
    url: String,
    probe: KvClient,
}

/// Which members the client may choose.
struct State {
    in_use: Vec<bool>,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let members: Vec<&str> = self
            .inner
            .iter()
            .flat_map(|i| i.members.iter().map(|m| m.url.as_str()))
            .collect();
        f.debug_struct("Endpoints")
            .field("members", &members)
            .finish()
    }
}

impl Endpoints {
    /// Keeps the choice of `client`, which was connected to `urls` with `options`,
    /// checking each member by reading `key`. Connects lazily: nothing is sent here.
    pub async fn start(
        client: &Client,
        urls: &[String],
        options: &ConnectOptions,
        key: &str,
    ) -> Result<Endpoints, etcd_client::Error> {
        if urls.len() < 2 {
            return Ok(Endpoints { inner: None });
        }
        let mut members = Vec::with_capacity(urls.len());
        for url in urls {
            let probe = Client::connect([url.as_str()], Some(options.clone())).await?;
            members.push(Member {
                url: url.clone(),
                probe: probe.kv_client(),
            });
        }
        let wake = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            client: client.clone(),
            state: Mutex::new(State {
                in_use: vec![true; members.len()],
            }),
            members,
            key: key.to_owned(),
            wake: wake.clone(),
        });
        tokio::spawn(watch_members(Arc::downgrade(&inner), wake));
        Ok(Endpoints { inner: Some(inner) })
    }

    /// A request failed: have every member checked soon (returns at once).
    pub fn suspect(&self) {
        if let Some(inner) = &self.inner {
            inner.wake.notify_one();
        }
    }

    /// A request failed with `error`: true when it is worth trying again at once,
    /// because a member was unavailable and a check made now (after any check under
    /// way, which may have asked that member before it failed) found others that
    /// answer, among which alone the client now chooses. False, after at most
    /// [`RETRY_CHECK`], when the check takes longer: some member is slow to answer, as
    /// all are while etcd elects a leader, and the directory had better serve from
    /// memory than keep a request waiting.
    pub async fn retry_after(&self, error: &EtcdError) -> bool {
        let Some(inner) = &self.inner else {
            return false;
        };
        if error.is_unavailable() {
            let check = async {
                let state = inner.state.lock().await;
                inner.check(state).await
            };
            if let Ok(answering) = tokio::time::timeout(RETRY_CHECK, check).await {
                return answering > 0;
            }
        }
        inner.wake.notify_one();
        false
    }
}

/// Checks every member every [`PROBE_EVERY`], or when asked, until the
/// [`Endpoints`] are dropped.
async fn watch_members(inner: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let state = inner.state.lock().await;
            inner.check(state).await;
        }
        tokio::select! {
            () = tokio::time::sleep(PROBE_EVERY) => {}
            () = wake.notified() => {}
        }
    }
}

impl Inner {
    /// Checks every member at once, and lets the client choose those that answered
    /// (every member when none did). Returns how many answered.
    async fn check(&self, mut state: tokio::sync::MutexGuard<'_, State>) -> usize {
        let probes: Vec<_> = self
            .members
            .iter()
            .map(|member| {
                let mut kv = member.probe.clone();
                let key = self.key.clone();
                tokio::spawn(async move {
                    let options = GetOptions::new().with_count_only();
                    timed(PROBE_TIMEOUT, kv.get(key, Some(options)))
                        .await
                        .map(drop)
                })
            })
            .collect();
        let mut answers = Vec::with_capacity(probes.len());
        for probe in probes {
            answers.push(
                probe
                    .await
                    .unwrap_or(Err(EtcdError::Protocol("the check was abandoned"))),
            );
        }
        let answering = answers.iter().filter(|a| a.is_ok()).count();
        for (i, (member, answer)) in self.members.iter().zip(&answers).enumerate() {
            // With no member answering every one stays in: requests then fail at
            // once, and the directory serves from memory until etcd answers.
            let wanted = answer.is_ok() || answering == 0;
            if wanted == state.in_use[i] {
                continue;
            }
            let changed = if wanted {
                self.client.add_endpoint(&member.url).await
            } else {
                self.client.remove_endpoint(&member.url).await
            };
            if let Err(e) = changed {
                tracing::warn!(member = %member.url, error = %e, "etcd: cannot change the members requests go to");
                continue;
            }
            state.in_use[i] = wanted;
            match answer {
                Err(e) if !wanted => tracing::warn!(
                    member = %member.url,
                    error = %e,
                    "etcd member {} does not answer: requests go to the other members",
                    member.url
                ),
                Err(_) => tracing::debug!(
                    member = %member.url,
                    "etcd: no member answers; requests may go to every member again"
                ),
                Ok(()) => tracing::info!(
                    member = %member.url,
                    "etcd member {} answers again",
                    member.url
                ),
            }
        }
        answering
    }
}
