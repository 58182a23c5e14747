//! Prometheus metrics for `herald serve --metrics IP:PORT`.
//!
//! The socket loop publishes a [`Snapshot`] of the directory's counters after every
//! wake-up (a copy under a mutex, nothing more on the hot path); a scrape of
//! `GET /metrics` turns the latest snapshot into Prometheus text with the `metrics`
//! crate's Prometheus recorder. `GET /healthz` answers `200` while the directory is
//! healthy ([`Snapshot::healthy`]: its storage takes writes and its store answers) and
//! `503` otherwise, with one `key: value` line per check. The HTTP side is a
//! deliberately tiny responder: one request per connection, bounded in size and time,
//! at most [`MAX_CONNECTIONS`] at once (an eighth of them from one source).

use crate::backend::StoreStatus;
use herald_core::{DirectoryStats, RejectReason};
use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest request read, in bytes.
const MAX_REQUEST: usize = 8 * 1024;
/// Time a client has to send its request and read the answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections served at once (scrapers are few; further ones wait their turn).
pub const MAX_CONNECTIONS: usize = 64;

/// What the socket loop knows, copied after every wake-up.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    /// The core's counters.
    pub directory: DirectoryStats,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Live services.
    pub live: u64,
    /// Entries held, live and departed (departed ones still owe notifications).
    pub entries: u64,
    /// The store: writes, errors, reachability, queue, outages.
    pub store: StoreStatus,
    /// This directory publishes (always, alone; the elected one, in a cluster).
    pub publishing: bool,
    /// The unicast subscribers.
    pub subscribers: crate::subscribers::Figures,
    /// DNS answers over UDP sent truncated for want of byte budget.
    pub dns_truncated: u64,
}

impl Snapshot {
    /// The directory can do its job: its storage takes writes (changes are
    /// acknowledged) and its store answers. Publishing is reported, not required (a
    /// replica of a cluster does not publish).
    pub fn healthy(&self) -> bool {
        self.store.writable && self.store.reachable
    }

    /// The `/healthz` body: the verdict, then each check.
    pub fn health_text(&self) -> String {
        let yes = |b: bool| if b { "yes" } else { "no" };
        format!(
            "{}\nstorage_writable: {}\nstore_reachable: {}\npublishing: {}\n",
            if self.healthy() { "ok" } else { "unhealthy" },
            yes(self.store.writable),
            yes(self.store.reachable),
            yes(self.publishing)
        )
    }
}

/// The snapshot shared between the socket loop and the metrics endpoint.
pub type Shared = Arc<Mutex<Snapshot>>;

fn describe() {
    let counters = [
        ("herald_datagrams_in_total", "Datagrams received."),
        ("herald_datagrams_out_total", "Datagrams sent."),
        ("herald_bytes_in_total", "Bytes received."),
        ("herald_bytes_out_total", "Bytes sent."),
        (
            "herald_malformed_total",
            "Datagrams that were not valid requests.",
        ),
        (
            "herald_wrong_environment_total",
            "Requests from another environment.",
        ),
        (
            "herald_ignored_total",
            "Valid frames a directory does not take.",
        ),
        ("herald_registrations_total", "New registrations."),
        (
            "herald_changes_total",
            "Registrations whose locations or metadata changed.",
        ),
        ("herald_renewals_total", "Lease renewals."),
        ("herald_unregisters_total", "Explicit unregistrations."),
        ("herald_expiries_total", "Leases that ran out."),
        ("herald_rejections_total", "Rejections sent, by reason."),
        (
            "herald_snapshots_total",
            "Snapshot requests answered with pages (valid cookie).",
        ),
        (
            "herald_replies_dropped_total",
            "Replies dropped: reply queue full.",
        ),
        (
            "herald_snapshot_cookies_total",
            "Snapshot requests without a valid cookie, answered with a cookie only.",
        ),
        (
            "herald_snapshots_dropped_total",
            "Snapshot requests dropped: snapshot queue full.",
        ),
        (
            "herald_snapshots_throttled_total",
            "Snapshot answers cut short by the byte budgets.",
        ),
        (
            "herald_storage_writes_total",
            "Storage transactions committed.",
        ),
        (
            "herald_unauthenticated_total",
            "Frames dropped without a valid authentication tag (with a key).",
        ),
        (
            "herald_replayed_total",
            "Authenticated frames dropped as replays.",
        ),
        (
            "herald_stale_total",
            "Authenticated requests refused: counter outside the time window.",
        ),
        (
            "herald_out_of_order_total",
            "Requests refused as stale: a newer request of the registrant (or a removal) was applied; late, repeated or replayed.",
        ),
        (
            "herald_storage_errors_total",
            "Storage transactions that failed.",
        ),
        (
            "herald_deliveries_total",
            "Unicast delivery datagrams sent to subscribers.",
        ),
        (
            "herald_delivery_snapshots_total",
            "Unicast delivery datagrams that were snapshot pages.",
        ),
        (
            "herald_delivery_resends_total",
            "Unicast deliveries sent again for want of an acknowledgement.",
        ),
        (
            "herald_deliveries_throttled_total",
            "Times a bulk delivery page (a snapshot, or changes beyond one page) waited for the snapshot byte budgets.",
        ),
        (
            "herald_subscribers_expired_total",
            "Subscriptions whose lease ran out.",
        ),
        (
            "herald_subscriptions_total",
            "New unicast subscriptions taken.",
        ),
        (
            "herald_unsubscribes_total",
            "Subscriptions ended by their subscriber (unsubscribed).",
        ),
        (
            "herald_dns_truncated_total",
            "DNS answers over UDP sent truncated (no records, TC) because the byte budget of their destination, or of all, was spent.",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(name, help);
    }
    describe_counter!(
        "herald_store_outages_total",
        "Times the shared store (etcd) became unreachable."
    );
    describe_counter!(
        "herald_publisher_changes_total",
        "Times this directory started or stopped publishing for its group."
    );
    describe_gauge!(
        "herald_store_reachable",
        "1 while the store answers (always, for the embedded store)."
    );
    describe_gauge!(
        "herald_publishing",
        "1 while this directory publishes for its group (always, alone)."
    );
    describe_gauge!(
        "herald_store_queued_writes",
        "Changes waiting for the shared store."
    );
    describe_gauge!(
        "herald_storage_writable",
        "1 while the storage takes writes; 0 while writes fail (disk full, I/O errors): \
         changes are then refused with storage_unavailable."
    );
    describe_gauge!(
        "herald_health",
        "1 while the directory is healthy (storage writable, store reachable), as /healthz."
    );
    describe_gauge!("herald_services", "Live services in the registry.");
    describe_gauge!("herald_subscribers", "Live unicast subscriptions.");
    describe_gauge!(
        "herald_subscriber_capacity",
        "Subscriptions the table can hold (--subscribers)."
    );
    describe_gauge!(
        "herald_subscriber_lag_max",
        "Largest lag of a subscriber behind the registry, in versions (microseconds)."
    );
    describe_gauge!(
        "herald_subscribers_unacknowledged",
        "Subscribers that have acknowledged no delivery yet."
    );
    describe_gauge!("herald_entries", "Registry entries, live and departed.");
}

fn record(s: &Snapshot) {
    let d = &s.directory;
    let counters = [
        ("herald_datagrams_in_total", d.datagrams_in),
        ("herald_datagrams_out_total", d.datagrams_out),
        ("herald_bytes_in_total", s.bytes_in),
        ("herald_bytes_out_total", s.bytes_out),
        ("herald_malformed_total", d.malformed),
        ("herald_wrong_environment_total", d.wrong_environment),
        ("herald_ignored_total", d.ignored),
        ("herald_registrations_total", d.registrations),
        ("herald_changes_total", d.changes),
        ("herald_renewals_total", d.renewals),
        ("herald_unregisters_total", d.unregisters),
        ("herald_expiries_total", d.expiries),
        ("herald_snapshots_total", d.snapshots),
        ("herald_replies_dropped_total", d.replies_dropped),
        ("herald_snapshot_cookies_total", d.snapshot_cookies),
        ("herald_snapshots_dropped_total", d.snapshots_dropped),
        ("herald_snapshots_throttled_total", d.snapshots_throttled),
        ("herald_storage_writes_total", s.store.writes),
        ("herald_storage_errors_total", s.store.errors),
        ("herald_store_outages_total", s.store.outages),
        ("herald_publisher_changes_total", s.store.publisher_changes),
        ("herald_unauthenticated_total", d.unauthenticated),
        ("herald_replayed_total", d.replayed),
        ("herald_stale_total", d.stale),
        ("herald_out_of_order_total", d.out_of_order),
        ("herald_deliveries_total", d.deliveries),
        ("herald_delivery_snapshots_total", d.delivery_snapshots),
        ("herald_delivery_resends_total", d.delivery_resends),
        ("herald_deliveries_throttled_total", d.deliveries_throttled),
        ("herald_subscribers_expired_total", d.subscribers_expired),
        ("herald_subscriptions_total", d.subscriptions),
        ("herald_unsubscribes_total", d.unsubscribes),
        ("herald_dns_truncated_total", s.dns_truncated),
    ];
    for (name, value) in counters {
        counter!(name).absolute(value);
    }
    for reason in RejectReason::ALL {
        counter!("herald_rejections_total", "reason" => reason.label())
            .absolute(d.rejected(reason));
    }
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    gauge!("herald_store_reachable").set(flag(s.store.reachable));
    gauge!("herald_storage_writable").set(flag(s.store.writable));
    gauge!("herald_health").set(flag(s.healthy()));
    gauge!("herald_publishing").set(flag(s.publishing));
    gauge!("herald_store_queued_writes").set(s.store.queued as f64);
    gauge!("herald_services").set(s.live as f64);
    gauge!("herald_entries").set(s.entries as f64);
    let f = &s.subscribers;
    gauge!("herald_subscribers").set(f.subscribers as f64);
    gauge!("herald_subscriber_capacity").set(f.capacity as f64);
    gauge!("herald_subscriber_lag_max").set(f.max_lag as f64);
    gauge!("herald_subscribers_unacknowledged").set(f.unacknowledged as f64);
}

/// Renders `snapshot` as Prometheus text through `recorder`.
pub fn render(recorder: &PrometheusRecorder, snapshot: &Snapshot) -> String {
    metrics::with_local_recorder(recorder, || {
        describe();
        record(snapshot);
    });
    let handle = recorder.handle();
    handle.run_upkeep();
    handle.render()
}

/// The answer to a connection past its source's share (see [`accept`](crate::accept)).
static REFUSAL: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let reason = crate::accept::refusal_reason(MAX_CONNECTIONS);
    crate::accept::http_refusal("text/plain", &format!("{reason}\n"))
});

/// Serves `GET /metrics` on `listener` until the task is dropped, at most
/// [`MAX_CONNECTIONS`] connections at once (an eighth of them from one source).
pub async fn serve(listener: TcpListener, shared: Shared) {
    let recorder = Arc::new(PrometheusBuilder::new().build_recorder());
    let refusal = REFUSAL.as_slice();
    crate::accept::serve_bounded(
        listener,
        MAX_CONNECTIONS,
        refusal,
        "metrics",
        move |stream, peer| {
            let recorder = recorder.clone();
            let shared = shared.clone();
            async move {
                let answer =
                    tokio::time::timeout(CONNECTION_TIMEOUT, answer(stream, &recorder, &shared));
                if let Ok(Err(e)) | Err(e) = answer.await.map_err(std::io::Error::other) {
                    tracing::debug!(%peer, error = %e, "metrics: request failed");
                }
            }
        },
    )
    .await
}

async fn answer(
    mut stream: TcpStream,
    recorder: &PrometheusRecorder,
    shared: &Shared,
) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let snapshot = || *shared.lock().unwrap_or_else(|p| p.into_inner());
    let (status, body) = if request.starts_with(b"GET /metrics ") {
        ("200 OK", render(recorder, &snapshot()))
    } else if request.starts_with(b"GET /healthz ") {
        let snapshot = snapshot();
        let status = if snapshot.healthy() {
            "200 OK"
        } else {
            "503 Service Unavailable"
        };
        (status, snapshot.health_text())
    } else {
        (
            "404 Not Found",
            "not found: try /metrics or /healthz\n".to_owned(),
        )
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Binds the metrics endpoint.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_reasons() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let mut s = Snapshot::default();
        s.directory.registrations = 3;
        s.directory.rejections[RejectReason::WrongEnvironment.index()] = 2;
        s.live = 5;
        s.directory.unauthenticated = 7;
        s.directory.replayed = 8;
        s.directory.stale = 9;
        s.directory.out_of_order = 6;
        s.store.reachable = true;
        s.store.writable = true;
        s.store.queued = 4;
        s.store.outages = 2;
        s.store.publisher_changes = 3;
        s.publishing = true;
        s.subscribers.subscribers = 2;
        s.subscribers.max_lag = 11;
        s.directory.delivery_resends = 12;
        s.directory.deliveries_throttled = 13;
        s.directory.unsubscribes = 14;
        s.dns_truncated = 15;
        let text = render(&recorder, &s);
        assert!(text.contains("herald_registrations_total 3"), "{text}");
        assert!(
            text.contains("herald_rejections_total{reason=\"wrong_environment\"} 2"),
            "{text}"
        );
        assert!(text.contains("herald_services 5"), "{text}");
        for line in [
            "herald_dns_truncated_total 15",
            "herald_unauthenticated_total 7",
            "herald_replayed_total 8",
            "herald_stale_total 9",
            "herald_out_of_order_total 6",
            "herald_store_reachable 1",
            "herald_publishing 1",
            "herald_store_queued_writes 4",
            "herald_store_outages_total 2",
            "herald_publisher_changes_total 3",
            "herald_storage_writable 1",
            "herald_health 1",
            "herald_subscribers 2",
            "herald_subscriber_lag_max 11",
            "herald_delivery_resends_total 12",
            "herald_deliveries_throttled_total 13",
            "herald_unsubscribes_total 14",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        s.directory.registrations = 4;
        assert!(render(&recorder, &s).contains("herald_registrations_total 4"));
        s.store.writable = false;
        let text = render(&recorder, &s);
        assert!(text.contains("herald_storage_writable 0"), "{text}");
        assert!(text.contains("herald_health 0"), "{text}");
        assert!(s
            .health_text()
            .starts_with("unhealthy\nstorage_writable: no\n"));
    }
}
