//! Who listens by unicast, as the shell shows it: the directory's subscriber table
//! turned into [`SubscriberInfo`] rows (for `GET /v1/subscribers` and `herald list
//! --subscribers`) and into the figures of the metrics ([`Figures`]).
//!
//! The serve loop refreshes both from the [`Directory`] at most every metrics refresh
//! (a pass over the table). `since` is when this directory process first saw the
//! subscription (the core does not keep it): a restart starts it again.

use herald_core::{Directory, Version};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;

/// One subscription, as `herald list --subscribers --json` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberInfo {
    /// The subscriber id, in hex (the listener's registrant id).
    pub id: String,
    /// Where deliveries go.
    pub address: SocketAddr,
    /// Exact names and prefixes (`name*`); empty: every service.
    pub interests: Vec<String>,
    /// Unix milliseconds when this directory process first saw the subscription.
    pub since_unix_ms: u64,
    /// The last registry version it acknowledged (`None`: none yet, a snapshot is due).
    pub acked: Option<u64>,
    /// How far behind the registry it is: the directory's version minus `acked`, in
    /// versions (microseconds of the version clock); `None` before its first
    /// acknowledgement.
    pub lag: Option<u64>,
}

/// The subscriber figures of the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// Live subscriptions.
    pub subscribers: u64,
    /// The table's capacity (`--subscribers`).
    pub capacity: u64,
    /// The largest lag of a subscriber that acknowledged something, in versions.
    pub max_lag: u64,
    /// Subscribers that have acknowledged nothing yet.
    pub unacknowledged: u64,
}

/// Keeps when each subscription was first seen, across refreshes.
#[derive(Debug, Default)]
pub struct Table {
    since: HashMap<u64, u64>,
}

impl Table {
    /// The rows and figures of `directory`'s subscribers now (`unix_ms`: the wall
    /// clock), forgetting the first-seen times of subscriptions that ended.
    pub fn refresh(
        &mut self,
        directory: &Directory<'_>,
        unix_ms: u64,
    ) -> (Vec<SubscriberInfo>, Figures) {
        let as_of = directory.as_of();
        let mut rows = Vec::with_capacity(directory.subscriber_count());
        let mut figures = Figures {
            capacity: directory.subscriber_capacity() as u64,
            ..Figures::default()
        };
        let mut seen = HashMap::with_capacity(self.since.len());
        for s in directory.subscribers() {
            let since = *self.since.get(&s.id).unwrap_or(&unix_ms);
            seen.insert(s.id, since);
            let lag = s.acked.map(|Version(v)| as_of.0.saturating_sub(v));
            match lag {
                Some(lag) => figures.max_lag = figures.max_lag.max(lag),
                None => figures.unacknowledged += 1,
            }
            figures.subscribers += 1;
            rows.push(SubscriberInfo {
                id: format!("{:016x}", s.id),
                address: s.address,
                interests: s
                    .interest
                    .patterns()
                    .iter()
                    .map(|p| {
                        if p.is_prefix() {
                            format!("{}*", p.text())
                        } else {
                            p.text().to_owned()
                        }
                    })
                    .collect(),
                since_unix_ms: since,
                acked: s.acked.map(|v| v.0),
                lag,
            });
        }
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        self.since = seen;
        (rows, figures)
    }
}

/// One line of `herald list --subscribers`.
pub fn text_line(s: &SubscriberInfo) -> String {
    let interests = if s.interests.is_empty() {
        "*".to_owned()
    } else {
        s.interests.join(",")
    };
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    format!(
        "{} {} {} since={} acked={} lag={}",
        s.id,
        s.address,
        interests,
        s.since_unix_ms,
        opt(s.acked),
        opt(s.lag)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_every_field() {
        let s = SubscriberInfo {
            id: "00000000000000ab".into(),
            address: "127.0.0.1:5000".parse().unwrap(),
            interests: vec!["billing".into(), "pay*".into()],
            since_unix_ms: 7,
            acked: None,
            lag: None,
        };
        assert_eq!(
            text_line(&s),
            "00000000000000ab 127.0.0.1:5000 billing,pay* since=7 acked=- lag=-"
        );
    }
}
