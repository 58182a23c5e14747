//! Who listens to what, from a directory's HTTP API (`herald serve --http`): its
//! unicast subscribers, the ones interested in a name (a registrant's "who listens to
//! me"), and a live feed of its subscriber table.
//!
//! ```no_run
//! # async fn demo() -> Result<(), herald_server::client::api::ApiError> {
//! use herald_server::client::api::DirectoryApi;
//!
//! let api = DirectoryApi::new("127.0.0.1:37380".parse().unwrap());
//! let interested = api.interested_in("billing").await?;
//! println!("{} subscribers listen to billing", interested.count);
//! let mut feed = api.watch_subscribers().await?;
//! loop {
//!     let update = feed.next().await?; // it outlives a directory restart
//!     println!("{update:?}");
//! #   break;
//! }
//! # Ok(()) }
//! ```

use super::http::{self, Answer};
use crate::subscribers::SubscriberInfo;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Why a call to a directory's HTTP API failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Nothing answered at the address (no directory, or one without `--http` there).
    #[error(
        "cannot reach a directory's HTTP API at {addr}: {source} (is `herald serve --http \
         {addr}` running?)"
    )]
    Unreachable {
        /// The address tried.
        addr: SocketAddr,
        /// What the connection attempt said.
        source: io::Error,
    },
    /// No answer in time.
    #[error("no answer from the HTTP API at {addr} within {timeout:?}")]
    TimedOut {
        /// The address asked.
        addr: SocketAddr,
        /// How long it was given.
        timeout: Duration,
    },
    /// The API refused the request (e.g. 401 without the token, 400 for a bad name).
    #[error("the HTTP API at {addr} answered {status}: {message}")]
    Refused {
        /// The address asked.
        addr: SocketAddr,
        /// The HTTP status.
        status: u16,
        /// The reason it gave.
        message: String,
    },
    /// The answer could not be read or was not what the API sends.
    #[error("bad answer from the HTTP API at {addr}: {source}")]
    Invalid {
        /// The address asked.
        addr: SocketAddr,
        /// What was wrong.
        source: io::Error,
    },
}

/// The subscribers interested in a name: `GET /v1/subscribers?name=NAME`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interested {
    /// The name asked about.
    pub name: String,
    /// How many live subscriptions match it (the directory's `subscribers_of`).
    pub count: usize,
    /// Those subscriptions, in id order.
    pub subscribers: Vec<SubscriberInfo>,
}

/// What happened to a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriberChangeKind {
    /// A new subscriber.
    Came,
    /// Its interests or its address changed.
    Changed,
    /// It ended.
    Went,
}

impl SubscriberChangeKind {
    /// `came`, `changed` or `went`.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberChangeKind::Came => "came",
            SubscriberChangeKind::Changed => "changed",
            SubscriberChangeKind::Went => "went",
        }
    }
}

/// Why a subscription ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ended {
    /// The subscriber unsubscribed.
    Unsubscribed,
    /// Its lease ran out.
    Expired,
}

/// One change of the subscriber table. As JSON: `{"event":"came"|"changed"|"went",
/// "id":…,"address":…,"interests":[…],…}` with the subscriber's row (its last one for
/// `went`), and for `went` `"ended":"unsubscribed"|"expired"` when that is known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberChange {
    /// Its number in the directory's feed (the SSE event id).
    #[serde(skip)]
    pub sequence: u64,
    /// What happened.
    #[serde(rename = "event")]
    pub kind: SubscriberChangeKind,
    /// The subscriber.
    #[serde(flatten)]
    pub subscriber: SubscriberInfo,
    /// Why it went, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Ended>,
}

/// What a [`SubscriberWatch`] hands out: the table it opened with, as `came` changes,
/// then [`Ready`](SubscriberUpdate::Ready), then every change (after a reconnection
/// that could not resume, what the table then differs in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscriberUpdate {
    /// The table is all in: `subscribers` of them. As JSON:
    /// `{"event":"ready","subscribers":N}`.
    Ready {
        /// Subscribers in the table.
        subscribers: usize,
    },
    /// A subscriber came, changed or went.
    Change(SubscriberChange),
}

impl Serialize for SubscriberUpdate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            SubscriberUpdate::Ready { subscribers } => {
                use serde::ser::SerializeStruct;
                let mut ready = serializer.serialize_struct("Ready", 2)?;
                ready.serialize_field("event", "ready")?;
                ready.serialize_field("subscribers", subscribers)?;
                ready.end()
            }
            SubscriberUpdate::Change(change) => change.serialize(serializer),
        }
    }
}

/// The data of the `table` event that opens `GET /v1/subscribers/watch`.
#[derive(Serialize, Deserialize)]
pub struct Table {
    /// Every live subscription, in id order.
    pub subscribers: Vec<SubscriberInfo>,
}

/// A directory's HTTP API.
#[derive(Clone, Debug)]
pub struct DirectoryApi {
    addr: SocketAddr,
    token: Option<String>,
    timeout: Duration,
}

impl DirectoryApi {
    /// The API at `addr` (`herald serve --http ADDR`), without a token, answering
    /// within 3 seconds.
    pub fn new(addr: SocketAddr) -> DirectoryApi {
        DirectoryApi {
            addr,
            token: None,
            timeout: Duration::from_secs(3),
        }
    }

    /// With the bearer token its reads need (`--http-token-reads`).
    pub fn with_token(self, token: Option<String>) -> DirectoryApi {
        DirectoryApi { token, ..self }
    }

    /// Waiting at most `timeout` for an answer (for a feed: for its table).
    pub fn with_timeout(self, timeout: Duration) -> DirectoryApi {
        DirectoryApi { timeout, ..self }
    }

    /// `GET path`, its head read: refused unless 200.
    async fn open(&self, path: &str) -> Result<Answer, ApiError> {
        self.open_from(path, None).await
    }

    /// `GET path` resuming a feed after `last_event_id`, its head read: refused unless
    /// 200.
    async fn open_from(&self, path: &str, last_event_id: Option<&str>) -> Result<Answer, ApiError> {
        let addr = self.addr;
        let answer = http::get(addr, path, self.token.as_deref(), last_event_id)
            .await
            .map_err(|source| match source.kind() {
                io::ErrorKind::InvalidData => ApiError::Invalid { addr, source },
                _ => ApiError::Unreachable { addr, source },
            })?;
        if answer.status == 200 {
            return Ok(answer);
        }
        let status = answer.status;
        let body = answer.body().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| body.trim().to_owned());
        Err(ApiError::Refused {
            addr,
            status,
            message,
        })
    }

    /// `GET path`, its JSON body decoded, within the timeout.
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let addr = self.addr;
        let read = async {
            let body = self
                .open(path)
                .await?
                .body()
                .await
                .map_err(|source| ApiError::Invalid { addr, source })?;
            serde_json::from_str(&body).map_err(|e| ApiError::Invalid {
                addr,
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            })
        };
        tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| ApiError::TimedOut {
                addr,
                timeout: self.timeout,
            })?
    }

    /// Every unicast subscriber (`GET /v1/subscribers`).
    pub async fn subscribers(&self) -> Result<Vec<SubscriberInfo>, ApiError> {
        self.get("/v1/subscribers").await
    }

    /// How many subscribers, and which, are interested in `name` — an exact name or a
    /// prefix they listen to covers it (`GET /v1/subscribers?name=NAME`).
    pub async fn interested_in(&self, name: &str) -> Result<Interested, ApiError> {
        self.get(&format!("/v1/subscribers?name={}", percent_encode(name)))
            .await
    }

    /// A live feed of the subscriber table (`GET /v1/subscribers/watch`): the table
    /// first, then each change.
    pub async fn watch_subscribers(&self) -> Result<SubscriberWatch, ApiError> {
        let answer = self.open_feed(None).await?;
        Ok(SubscriberWatch {
            api: self.clone(),
            answer: Some(answer),
            queued: VecDeque::new(),
            last_id: None,
            known: BTreeMap::new(),
            ready: false,
        })
    }

    /// Opens the subscriber feed (after `last_event_id` when resuming) within the
    /// timeout.
    async fn open_feed(&self, last_event_id: Option<&str>) -> Result<Answer, ApiError> {
        let (addr, timeout) = (self.addr, self.timeout);
        tokio::time::timeout(timeout, self.open_from(FEED, last_event_id))
            .await
            .map_err(|_| ApiError::TimedOut { addr, timeout })?
    }
}

/// Escapes what a query value cannot hold as is.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The subscriber feed's path.
const FEED: &str = "/v1/subscribers/watch";
/// First wait before the feed is opened again after its connection ended; it doubles up
/// to [`RECONNECT_MAX`].
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between two attempts to open the feed again.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// The feed of [`DirectoryApi::watch_subscribers`]. When its connection ends (the
/// directory restarted, the network failed) it opens the feed again by itself, with
/// back-off, resuming after the last event it read (`Last-Event-ID`); when the
/// directory no longer holds the changes since, it takes the table again and hands out
/// only what differs from what it handed out before (a `went` without `ended` for one
/// that is gone).
pub struct SubscriberWatch {
    api: DirectoryApi,
    /// The open connection (`None` while the feed is being opened again).
    answer: Option<Answer>,
    queued: VecDeque<SubscriberUpdate>,
    /// The `id` of the last event read.
    last_id: Option<String>,
    /// Every subscriber handed out and not gone, by id.
    known: BTreeMap<String, SubscriberInfo>,
    /// `Ready` was handed out.
    ready: bool,
}

/// An event of the feed: its type, its data and its id.
struct Event {
    kind: String,
    data: String,
    id: Option<String>,
}

impl SubscriberWatch {
    /// The next update. The feed runs until an error that opening it again would not
    /// mend (refused, e.g. without the token; or an answer that is not the feed's).
    pub async fn next(&mut self) -> Result<SubscriberUpdate, ApiError> {
        let mut wait = RECONNECT_FIRST;
        loop {
            if let Some(update) = self.queued.pop_front() {
                return Ok(update);
            }
            let Some(answer) = self.answer.as_mut() else {
                match self.api.open_feed(self.last_id.as_deref()).await {
                    Ok(answer) => {
                        tracing::info!(addr = %self.api.addr, "subscriber feed open again");
                        self.answer = Some(answer);
                        wait = RECONNECT_FIRST;
                    }
                    Err(e @ (ApiError::Unreachable { .. } | ApiError::TimedOut { .. })) => {
                        tracing::debug!(error = %e, "subscriber feed not open yet");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(RECONNECT_MAX);
                    }
                    Err(e) => return Err(e),
                }
                continue;
            };
            match read_event(answer).await {
                Ok(Some(event)) => {
                    if let Some(id) = event.id {
                        self.last_id = Some(id);
                    }
                    self.take(&event.kind, &event.data)?;
                }
                Ok(None) => {
                    tracing::warn!(addr = %self.api.addr, "subscriber feed ended; opening it again");
                    self.answer = None;
                }
                Err(e) => {
                    tracing::warn!(addr = %self.api.addr, error = %e, "subscriber feed broke; opening it again");
                    self.answer = None;
                }
            }
        }
    }

    /// Queues the updates of one event.
    fn take(&mut self, event: &str, data: &str) -> Result<(), ApiError> {
        let addr = self.api.addr;
        let bad = |e: serde_json::Error| ApiError::Invalid {
            addr,
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        };
        match event {
            "table" => {
                let table: Table = serde_json::from_str(data).map_err(bad)?;
                self.take_table(table);
            }
            "change" => {
                let change: SubscriberChange = serde_json::from_str(data).map_err(bad)?;
                let id = change.subscriber.id.clone();
                match change.kind {
                    SubscriberChangeKind::Went => self.known.remove(&id),
                    _ => self.known.insert(id, change.subscriber.clone()),
                };
                self.queued.push_back(SubscriberUpdate::Change(change));
            }
            // Events of later versions are skipped.
            _ => {}
        }
        Ok(())
    }

    /// Queues what `table` changes in what was handed out (the first table whole, then
    /// `Ready`).
    fn take_table(&mut self, table: Table) {
        let change = |kind, subscriber| {
            SubscriberUpdate::Change(SubscriberChange {
                sequence: 0,
                kind,
                subscriber,
                ended: None,
            })
        };
        let subscribers = table.subscribers.len();
        let mut gone = std::mem::take(&mut self.known);
        for subscriber in table.subscribers {
            let kind = match gone.remove(&subscriber.id) {
                None => Some(SubscriberChangeKind::Came),
                Some(old)
                    if old.address != subscriber.address
                        || old.interests != subscriber.interests =>
                {
                    Some(SubscriberChangeKind::Changed)
                }
                Some(_) => None,
            };
            if let Some(kind) = kind {
                self.queued.push_back(change(kind, subscriber.clone()));
            }
            self.known.insert(subscriber.id.clone(), subscriber);
        }
        for (_, subscriber) in gone {
            self.queued
                .push_back(change(SubscriberChangeKind::Went, subscriber));
        }
        if !std::mem::replace(&mut self.ready, true) {
            self.queued
                .push_back(SubscriberUpdate::Ready { subscribers });
        }
    }
}

/// Reads the next Server-Sent Event; `None` when the connection ended.
async fn read_event(answer: &mut Answer) -> io::Result<Option<Event>> {
    let mut event = Event {
        kind: String::new(),
        data: String::new(),
        id: None,
    };
    loop {
        let Some(line) = answer.line().await? else {
            return Ok(None);
        };
        if line.is_empty() {
            if !event.data.is_empty() {
                return Ok(Some(event));
            }
            event.kind.clear();
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((&line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event.kind = value.to_owned(),
            "data" => {
                if !event.data.is_empty() {
                    event.data.push('\n');
                }
                event.data.push_str(value);
            }
            // The feed's ids are numbers: anything else is not sent back.
            "id" if !value.is_empty()
                && value.len() <= 20
                && value.bytes().all(|b| b.is_ascii_digit()) =>
            {
                event.id = Some(value.to_owned());
            }
            // Comments (keep-alives), retry.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_for_the_query() {
        assert_eq!(percent_encode("billing/a-1"), "billing/a-1");
        assert_eq!(percent_encode("a b&c=d"), "a%20b%26c%3Dd");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    fn info(id: &str, interest: &str) -> SubscriberInfo {
        SubscriberInfo {
            id: id.into(),
            address: "127.0.0.1:5000".parse().unwrap(),
            interests: vec![interest.into()],
            since_unix_ms: 7,
            acked: None,
            lag: None,
        }
    }

    /// A table taken again after a reconnection hands out only what differs from what
    /// was handed out, and no second `Ready`.
    #[test]
    fn a_table_after_a_reconnection_hands_out_what_differs() {
        let mut watch = SubscriberWatch {
            api: DirectoryApi::new("127.0.0.1:1".parse().unwrap()),
            answer: None,
            queued: VecDeque::new(),
            last_id: None,
            known: BTreeMap::new(),
            ready: false,
        };
        let table = |rows: Vec<SubscriberInfo>| {
            serde_json::to_string(&Table { subscribers: rows }).unwrap()
        };
        let kinds = |w: &mut SubscriberWatch| -> Vec<String> {
            w.queued
                .drain(..)
                .map(|u| match u {
                    SubscriberUpdate::Ready { subscribers } => format!("ready {subscribers}"),
                    SubscriberUpdate::Change(c) => {
                        format!(
                            "{} {} {}",
                            c.kind.as_str(),
                            c.subscriber.id,
                            c.subscriber.interests[0]
                        )
                    }
                })
                .collect()
        };
        watch
            .take(
                "table",
                &table(vec![info("a", "x"), info("b", "y"), info("c", "z")]),
            )
            .unwrap();
        assert_eq!(
            kinds(&mut watch),
            ["came a x", "came b y", "came c z", "ready 3"]
        );
        let went = SubscriberChange {
            sequence: 4,
            kind: SubscriberChangeKind::Went,
            subscriber: info("c", "z"),
            ended: Some(Ended::Unsubscribed),
        };
        watch
            .take("change", &serde_json::to_string(&went).unwrap())
            .unwrap();
        assert_eq!(kinds(&mut watch), ["went c z"]);
        // Meanwhile: b changed its interest, a went, d came.
        watch
            .take("table", &table(vec![info("b", "w"), info("d", "v")]))
            .unwrap();
        assert_eq!(kinds(&mut watch), ["changed b w", "came d v", "went a x"]);
    }

    #[test]
    fn a_change_reads_back_as_it_was_sent() {
        let change = SubscriberChange {
            sequence: 0,
            kind: SubscriberChangeKind::Went,
            subscriber: SubscriberInfo {
                id: "00000000000000ab".into(),
                address: "127.0.0.1:5000".parse().unwrap(),
                interests: vec!["pay*".into()],
                since_unix_ms: 7,
                acked: Some(3),
                lag: Some(1),
            },
            ended: Some(Ended::Expired),
        };
        let text = serde_json::to_string(&change).unwrap();
        assert!(
            text.starts_with(r#"{"event":"went","id":"00000000000000ab""#),
            "{text}"
        );
        assert!(text.ends_with(r#""ended":"expired"}"#), "{text}");
        assert_eq!(
            serde_json::from_str::<SubscriberChange>(&text).unwrap(),
            change
        );
    }
}
