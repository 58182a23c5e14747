//! Waiting for a watcher's events, with a bound.

use herald_server::client::{EventKind, Watch};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;

/// Waits for a `kind` event about `name`; returns when it arrived, or `None` after
/// `limit`.
pub async fn one(
    watch: &mut Watch,
    kind: EventKind,
    name: &str,
    limit: Duration,
) -> Option<Instant> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let event = tokio::time::timeout_at(deadline, watch.next())
            .await
            .ok()??;
        if event.kind == kind && event.service.name == name {
            return Some(Instant::now());
        }
    }
}

/// Waits until `count` distinct names have had a `kind` event, or `limit`; returns
/// when each arrived, by name.
pub async fn many(
    watch: &mut Watch,
    kind: EventKind,
    count: usize,
    limit: Duration,
) -> Vec<(String, Instant)> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = HashSet::new();
    let mut arrivals = Vec::new();
    while seen.len() < count {
        match tokio::time::timeout_at(deadline, watch.next()).await {
            Ok(Some(event)) if event.kind == kind => {
                if seen.insert(event.service.name.clone()) {
                    arrivals.push((event.service.name, Instant::now()));
                }
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    arrivals
}
