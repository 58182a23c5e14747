//! Who listens to what: `GET /v1/subscribers[?name=NAME]` and
//! `GET /v1/subscribers/watch`.
//!
//! Without `name`, the answer is every unicast subscriber, as `herald list
//! --subscribers --json` prints them. With `name` (a service name), it is
//! `{"name":…,"count":N,"subscribers":[…]}`: the subscriptions whose interest covers
//! the name (an exact name or a prefix; no interest means every service), as
//! [`Directory::subscribers_of`](herald_core::Directory::subscribers_of) counts them.
//!
//! The watch is a stream of Server-Sent Events: `event: table` with
//! `{"subscribers":[…]}` (the whole table), then one `event: change` per change, with
//! the subscriber's row and `"event":"came"|"changed"|"went"` (and for `went`,
//! `"ended":"unsubscribed"|"expired"` when known; see
//! [`SubscriberChange`]). Every event's `id:` is
//! the sequence number of the newest change it includes. The table is the one of the
//! last metrics refresh (every 250 ms at most), so changes come up to that late. A
//! watcher that falls more than [`LOG_CAPACITY`](crate::view::subscribers::LOG_CAPACITY) changes behind gets a new `table`.

use super::{error, Api};
use crate::client::api::{Interested, SubscriberChange, Table};
use crate::view::View;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_core::ServiceName;
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Events queued for one slow client before its producer waits.
const QUEUE: usize = 64;
/// Comment lines sent on an idle stream, so proxies and clients see it alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `?name=NAME`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    name: Option<String>,
}

/// `GET /v1/subscribers[?name=NAME]`.
pub async fn list(
    State(api): State<Api>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "the only query parameter is `name`",
        );
    };
    let Some(name) = query.name else {
        return Json(api.view.read().subscribers.rows()).into_response();
    };
    if let Err(e) = ServiceName::new(&name) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("invalid service name {name:?}: {e}"),
        );
    }
    let subscribers = api.view.read().subscribers.interested_in(&name);
    Json(Interested {
        name,
        count: subscribers.len(),
        subscribers,
    })
    .into_response()
}

/// `GET /v1/subscribers/watch`.
pub async fn watch(State(api): State<Api>) -> Response {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(produce(api.view.clone(), tx));
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// Feeds one client until it goes away.
async fn produce(view: View, tx: mpsc::Sender<Result<Event, Infallible>>) {
    let mut sequences = view.subscribe_subscribers();
    let mut at: Option<u64> = None;
    loop {
        sequences.mark_unchanged();
        let events = {
            let who = &view.read().subscribers;
            match at.and_then(|a| who.changes_since(a)) {
                Some(changes) => changes.iter().map(change_event).collect(),
                None => vec![table_event(who.rows(), who.sequence())],
            }
        };
        for (sequence, event) in events {
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
            at = Some(sequence);
        }
        tokio::select! {
            changed = sequences.changed() => if changed.is_err() { return },
            () = tx.closed() => return,
        }
    }
}

fn table_event(
    subscribers: Vec<crate::subscribers::SubscriberInfo>,
    sequence: u64,
) -> (u64, Event) {
    let data = serde_json::to_string(&Table { subscribers }).unwrap_or_default();
    let event = Event::default()
        .event("table")
        .id(sequence.to_string())
        .data(data);
    (sequence, event)
}

fn change_event(change: &SubscriberChange) -> (u64, Event) {
    let data = serde_json::to_string(change).unwrap_or_default();
    let event = Event::default()
        .event("change")
        .id(change.sequence.to_string())
        .data(data);
    (change.sequence, event)
}
