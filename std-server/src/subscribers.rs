//! Who listens by unicast, as the shell shows it: the directory's subscriber table
//! turned into [`SubscriberInfo`] rows (for `GET /v1/subscribers` and `herald list
//! --subscribers`) and into the figures of the metrics ([`Figures`]).
//!
//! The serve loop refreshes both from the [`Directory`] at most every metrics refresh
//! (a pass over the table). `since` is when this directory process first saw the
//! subscription (the core does not keep it): a restart starts it again.

use herald_core::{Directory, Version};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;

/// One subscription, as `herald list --subscribers --json` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberInfo {
    /// A fingerprint of the subscriber id, in hex. The id itself is the listener's
    /// registrant id, a secret (whoever knows it can take over its registrations and
    /// subscriptions), so it is never shown.
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

/// 16 hex digits that tell subscribers apart without revealing their id: the first 8
/// bytes of SHA-256 over a label and the id.
pub fn fingerprint(id: u64) -> String {
    let digest = Sha256::new()
        .chain_update(b"herald subscriber fingerprint")
        .chain_update(id.to_be_bytes())
        .finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl Table {
    /// The figures of `directory`'s subscribers now, noting when each subscription was
    /// first seen (`unix_ms`: the wall clock) and forgetting those that ended.
    pub fn refresh(&mut self, directory: &Directory<'_>, unix_ms: u64) -> Figures {
        let as_of = directory.as_of();
        let mut figures = Figures {
            capacity: directory.subscriber_capacity() as u64,
            ..Figures::default()
        };
        let mut seen = HashMap::with_capacity(self.since.len());
        for s in directory.subscribers() {
            seen.insert(s.id, *self.since.get(&s.id).unwrap_or(&unix_ms));
            match lag(s, as_of) {
                Some(lag) => figures.max_lag = figures.max_lag.max(lag),
                None => figures.unacknowledged += 1,
            }
            figures.subscribers += 1;
        }
        self.since = seen;
        figures
    }

    /// The rows of `directory`'s subscribers (for the listing), in fingerprint order,
    /// with the first-seen times of the last [`refresh`](Self::refresh).
    pub fn rows(&self, directory: &Directory<'_>) -> Vec<SubscriberInfo> {
        let as_of = directory.as_of();
        let mut rows: Vec<SubscriberInfo> = directory
            .subscribers()
            .map(|s| SubscriberInfo {
                id: fingerprint(s.id),
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
                since_unix_ms: self.since.get(&s.id).copied().unwrap_or_default(),
                acked: s.acked.map(|v| v.0),
                lag: lag(s, as_of),
            })
            .collect();
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        rows
    }
}

/// How far `s` is behind `as_of` (`None`: it acknowledged nothing yet).
fn lag(s: &herald_core::directory::Subscriber, as_of: Version) -> Option<u64> {
    s.acked.map(|Version(v)| as_of.0.saturating_sub(v))
}

/// One line of `herald list --subscribers`.
pub fn text_line(s: &SubscriberInfo) -> String {
    let interests = if s.interests.is_empty() {
        "*".to_owned()
    } else {
        crate::display::visible(&s.interests.join(",")).into_owned()
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
    use herald_core::wire::{self, Message, SnapshotRequest, SubscribeRequest};
    use herald_core::{DirectoryConfig, Environment, Interest, Location};
    use std::net::{IpAddr, Ipv4Addr};

    /// A directory holding one subscription from `id`.
    fn subscribed(id: u64, slots: &mut [herald_core::directory::SubscriberSlot]) -> Directory<'_> {
        let at = Location::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 37399).unwrap();
        let group = "237.37.37.1:37371".parse().unwrap();
        let config = DirectoryConfig::new(at, group);
        let registry = Box::leak(vec![None; 4].into_boxed_slice());
        let index = Box::leak(vec![0u32; 4].into_boxed_slice());
        let mut d = Directory::new(config, registry, index)
            .unwrap()
            .with_subscribers(slots);
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let now = herald_core::Instant::from_millis(1);
        let env = Environment::default();
        let mut buf = [0u8; 1400];
        let ask = SnapshotRequest {
            request: 1,
            max_pages: 1,
            after: None,
            interest: Interest::all(),
            cookie: None,
            since: None,
        };
        let n = wire::encode(&env, &ask, &mut buf).unwrap();
        d.handle_datagram(now, from, &buf[..n]);
        let t = d.poll_transmit(now, &mut buf).unwrap();
        let Message::Cookie(c) = wire::decode(&buf[..t.len]).unwrap().message else {
            panic!("no cookie");
        };
        let subscribe = SubscribeRequest {
            request: 2,
            subscriber: id,
            delivery: 1,
            lease: herald_core::Duration::from_secs(30),
            interest: Interest::all(),
            since: None,
            cookie: Some(c.cookie),
        };
        let n = wire::encode(&env, &subscribe, &mut buf).unwrap();
        d.handle_datagram(now, from, &buf[..n]);
        d
    }

    #[test]
    fn the_listing_never_shows_a_subscriber_id() {
        let id = 0x1234_5678_9abc_def0;
        let mut slots = vec![None; 2];
        let d = subscribed(id, &mut slots);
        let mut table = Table::default();
        let figures = table.refresh(&d, 7);
        assert_eq!(figures.subscribers, 1);
        let rows = table.rows(&d);
        let shown = serde_json::to_string(&rows).unwrap();
        for secret in [format!("{id:016x}"), format!("{id:x}"), id.to_string()] {
            assert!(!shown.contains(&secret), "{shown}");
        }
        assert_eq!(rows[0].id, fingerprint(id));
        assert_ne!(fingerprint(id), fingerprint(id + 1));
    }

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
