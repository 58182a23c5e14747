//! `GET /v1/watch`: the registry's changes as Server-Sent Events.
//!
//! The stream opens with `event: snapshot` (`{"services":[…]}`, every live service as
//! `herald list --json` prints it), then one `event: change` per change
//! (`{"event":"discovered"|"changed"|"unregistered","name":…,"locations":[…],"meta":{…}}`).
//! Every event's `id:` is the registry version it brings the client to. A client that
//! reconnects with `Last-Event-ID: V` (browsers' `EventSource` do it by themselves) gets
//! exactly the changes after `V`, without loss or repetition; when they are no longer
//! kept ([`LOG_CAPACITY`](crate::view::LOG_CAPACITY) changes), or `V` is not a version
//! this directory knows, it gets a new `snapshot` instead, which replaces everything the
//! client held (the resume is the [`feed`]'s, shared with the subscriber
//! feed). `?interest=P[,P…]` (as for `/v1/services`) keeps the services and
//! changes of those names only.

use super::feed::{self, Next};
use super::{params, Api};
use crate::view::{Change, State};
use axum::extract::{RawQuery, State as Shared};
use axum::http::HeaderMap;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Events queued for one slow client before its producer waits.
const QUEUE: usize = 256;

/// Opens the event stream.
pub async fn watch(Shared(api): Shared<Api>, headers: HeaderMap, query: RawQuery) -> Response {
    let interest = match params::interest(query) {
        Ok(interest) => interest,
        Err(bad) => return bad.into_response(),
    };
    let resume = feed::last_event_id(&headers);
    let ticks = api.view.subscribe();
    feed::open(&api, ticks, resume, QUEUE, move |state, at| {
        let wanted = |name: &str| interest.as_ref().is_none_or(|i| i.matches(name));
        // A version above the newest is not one this directory handed out.
        match at
            .filter(|&v| v <= state.version)
            .and_then(|v| state.changes_since(v))
        {
            Some(changes) => changed(changes, &wanted),
            None => snapshot(state, &wanted),
        }
    })
}

/// The `change` events of the `wanted` names among `changes`; the client is at the
/// last change after them, wanted or not.
fn changed(changes: Vec<Change>, wanted: &impl Fn(&str) -> bool) -> Next {
    let at = changes.last().map(|c| c.version);
    let events = changes
        .into_iter()
        .filter(|c| wanted(&c.service.name))
        .map(|change| {
            let data = serde_json::to_string(&change).unwrap_or_default();
            Event::default()
                .event("change")
                .id(change.version.to_string())
                .data(data)
        })
        .collect();
    Next { events, at }
}

/// The `snapshot` event: every live service whose name is `wanted`.
fn snapshot(state: &State, wanted: &impl Fn(&str) -> bool) -> Next {
    let services = state.list(wanted);
    let data = json!({ "version": state.version, "services": services }).to_string();
    let event = Event::default()
        .event("snapshot")
        .id(state.version.to_string())
        .data(data);
    Next {
        events: vec![event],
        at: Some(state.version),
    }
}
