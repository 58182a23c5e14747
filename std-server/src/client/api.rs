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
//!     let update = feed.next().await?; // until the directory stops
//!     println!("{update:?}");
//! #   break;
//! }
//! # Ok(()) }
//! ```

use super::http::{self, Answer};
use crate::subscribers::SubscriberInfo;
use serde::{Deserialize, Serialize};
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
    /// The feed ended: the directory stopped (or closed the connection).
    #[error("the HTTP API at {addr} ended the subscriber feed (the directory stopped?)")]
    Closed {
        /// The address of the feed.
        addr: SocketAddr,
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
/// then [`Ready`](SubscriberUpdate::Ready), then every change.
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
        let addr = self.addr;
        let answer = http::get(addr, path, self.token.as_deref())
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
        let addr = self.addr;
        let answer = tokio::time::timeout(self.timeout, self.open("/v1/subscribers/watch"))
            .await
            .map_err(|_| ApiError::TimedOut {
                addr,
                timeout: self.timeout,
            })??;
        Ok(SubscriberWatch {
            addr,
            answer,
            queued: std::collections::VecDeque::new(),
        })
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

/// The feed of [`DirectoryApi::watch_subscribers`].
pub struct SubscriberWatch {
    addr: SocketAddr,
    answer: Answer,
    queued: std::collections::VecDeque<SubscriberUpdate>,
}

impl SubscriberWatch {
    /// The next update. The feed runs until the directory stops
    /// ([`ApiError::Closed`]).
    pub async fn next(&mut self) -> Result<SubscriberUpdate, ApiError> {
        loop {
            if let Some(update) = self.queued.pop_front() {
                return Ok(update);
            }
            let (event, data) = self.event().await?;
            self.take(&event, &data)?;
        }
    }

    /// Queues the updates of one event.
    fn take(&mut self, event: &str, data: &str) -> Result<(), ApiError> {
        let addr = self.addr;
        let bad = |e: serde_json::Error| ApiError::Invalid {
            addr,
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        };
        match event {
            "table" => {
                let table: Table = serde_json::from_str(data).map_err(bad)?;
                let subscribers = table.subscribers.len();
                for subscriber in table.subscribers {
                    self.queued
                        .push_back(SubscriberUpdate::Change(SubscriberChange {
                            sequence: 0,
                            kind: SubscriberChangeKind::Came,
                            subscriber,
                            ended: None,
                        }));
                }
                self.queued
                    .push_back(SubscriberUpdate::Ready { subscribers });
            }
            "change" => {
                let change = serde_json::from_str(data).map_err(bad)?;
                self.queued.push_back(SubscriberUpdate::Change(change));
            }
            // Events of later versions are skipped.
            _ => {}
        }
        Ok(())
    }

    /// Reads the next Server-Sent Event: its type and its data.
    async fn event(&mut self) -> Result<(String, String), ApiError> {
        let addr = self.addr;
        let (mut event, mut data) = (String::new(), String::new());
        loop {
            let line = self
                .answer
                .line()
                .await
                .map_err(|source| ApiError::Invalid { addr, source })?
                .ok_or(ApiError::Closed { addr })?;
            if line.is_empty() {
                if !data.is_empty() {
                    return Ok((event, data));
                }
                event.clear();
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event = value.to_owned(),
                "data" => {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(value);
                }
                // Comments (keep-alives), ids, retry.
                _ => {}
            }
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
