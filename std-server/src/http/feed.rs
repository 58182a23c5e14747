//! What the two Server-Sent Events feeds share (`GET /v1/watch` and
//! `GET /v1/subscribers/watch`): the resume point a reconnecting client names with
//! `Last-Event-ID`, and the loop that feeds one client.
//!
//! Every event's `id:` is a number that grows with each change. A client that
//! reconnects with `Last-Event-ID: N` (browsers' `EventSource` send it by themselves)
//! is at `N`; a feed hands it what comes after: exactly the changes after `N` while
//! they are kept, else (too old, or a number this directory never handed out) its
//! whole state again in one event that replaces everything the client held.

use super::Api;
use crate::view::{State, View};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// Most event streams open at once (both feeds together): of the
/// [`MAX_CONNECTIONS`](super::connections::MAX_CONNECTIONS) connections served at once,
/// the rest stay free for requests. One more is refused with `503` (and its
/// connection closed).
pub const MAX_FEEDS: usize = 384;

/// Comment lines sent on an idle stream, so proxies and clients see it alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What a feed sends next: its events, and the id the client is at after them (`None`:
/// where it was).
pub struct Next {
    /// The events, in order.
    pub events: Vec<Event>,
    /// The id the client is at once it has them.
    pub at: Option<u64>,
}

/// The id a reconnecting client is at (its `Last-Event-ID`), if it sent a number.
pub fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Opens an event stream for one client of `api`'s view, at `resume` (`None`: from the
/// start), or refuses it (`503`) when [`MAX_FEEDS`] are open. At the start and at every
/// tick of `ticks`, `next` says what to send for the id the client is at; at most
/// `queue` events wait for a slow client.
pub fn open<F>(
    api: &Api,
    ticks: watch::Receiver<u64>,
    resume: Option<u64>,
    queue: usize,
    next: F,
) -> Response
where
    F: FnMut(&State, Option<u64>) -> Next + Send + 'static,
{
    let Ok(permit) = api.feeds.clone().try_acquire_owned() else {
        let reason = format!("{MAX_FEEDS} event streams are open already; try again later");
        return super::closing_error(StatusCode::SERVICE_UNAVAILABLE, reason);
    };
    let (tx, rx) = mpsc::channel(queue);
    let view = api.view.clone();
    tokio::spawn(async move {
        produce(view, ticks, resume, tx, next).await;
        drop(permit);
    });
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// Feeds one client until it goes away.
async fn produce<F>(
    view: View,
    mut ticks: watch::Receiver<u64>,
    mut at: Option<u64>,
    tx: mpsc::Sender<Result<Event, Infallible>>,
    mut next: F,
) where
    F: FnMut(&State, Option<u64>) -> Next,
{
    loop {
        ticks.mark_unchanged();
        let Next { events, at: upto } = next(&view.read(), at);
        for event in events {
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        at = upto.or(at);
        tokio::select! {
            changed = ticks.changed() => if changed.is_err() { return },
            () = tx.closed() => return,
        }
    }
}
