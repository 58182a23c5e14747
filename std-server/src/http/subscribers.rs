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
//! last metrics refresh (every 250 ms at most), so changes come up to that late.
//!
//! A watcher that reconnects with `Last-Event-ID: N` (browsers' `EventSource` do it by
//! themselves) gets exactly the changes after `N`, as the registry's watch does (the
//! [`feed`] is shared). When they are no longer kept (it fell more than
//! [`LOG_CAPACITY`](crate::view::subscribers::LOG_CAPACITY) changes behind) or `N` is not
//! a number this directory handed out (sequence numbers start at the process's start
//! time in microseconds, so the ids of an earlier run are too old), it gets a new
//! `table` instead, which replaces everything it held.

use super::feed::{self, Next};
use super::params::{self, NoQuery};
use super::{error, Api};
use crate::client::api::{Interested, SubscriberChange, Table};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_core::ServiceName;

/// Events queued for one slow client before its producer waits.
const QUEUE: usize = 64;

/// `GET /v1/subscribers[?name=NAME]`.
pub async fn list(State(api): State<Api>, query: RawQuery) -> Response {
    let name = match params::only(query.0.as_deref(), "name") {
        Ok(name) => name,
        Err(bad) => return bad.into_response(),
    };
    let Some(name) = name else {
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

/// `GET /v1/subscribers/watch`, resumed after its `Last-Event-ID`.
pub async fn watch(State(api): State<Api>, _: NoQuery, headers: HeaderMap) -> Response {
    let resume = feed::last_event_id(&headers);
    let ticks = api.view.subscribe_subscribers();
    feed::open(&api, ticks, resume, QUEUE, |state, at| {
        let who = &state.subscribers;
        match at.and_then(|a| who.changes_since(a)) {
            Some(changes) => Next {
                at: changes.last().map(|c| c.sequence),
                events: changes.iter().map(change_event).collect(),
            },
            None => Next {
                events: vec![table_event(who.rows(), who.sequence())],
                at: Some(who.sequence()),
            },
        }
    })
}

/// The `table` event: every subscriber, as of change `sequence`.
fn table_event(subscribers: Vec<crate::subscribers::SubscriberInfo>, sequence: u64) -> Event {
    let data = serde_json::to_string(&Table { subscribers }).unwrap_or_default();
    Event::default()
        .event("table")
        .id(sequence.to_string())
        .data(data)
}

/// The `change` event of one change.
fn change_event(change: &SubscriberChange) -> Event {
    let data = serde_json::to_string(change).unwrap_or_default();
    Event::default()
        .event("change")
        .id(change.sequence.to_string())
        .data(data)
}
