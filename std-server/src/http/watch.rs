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
//! client held. `?interest=P[,P…]` (as for `/v1/services`) keeps the services and
//! changes of those names only.

use super::{error, Api};
use crate::view::{Change, View};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use herald_core::Interest;
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Events queued for one slow client before its producer waits.
const QUEUE: usize = 256;
/// Comment lines sent on an idle stream, so proxies and clients see it alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `?interest=…`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchQuery {
    interest: Option<String>,
}

/// Opens the event stream.
pub async fn watch(
    State(api): State<Api>,
    headers: HeaderMap,
    query: Result<Query<WatchQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "the only query parameter is `interest`",
        );
    };
    let interest = match query
        .interest
        .as_deref()
        .map(|t| Interest::parse_all(t.split(',')))
    {
        None => None,
        Some(Ok(i)) => Some(i),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(produce(api.view.clone(), interest, resume, tx));
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// What the client is sent next.
enum Next {
    Snapshot(u64, String),
    Changes(Vec<Change>),
}

/// Feeds one client until it goes away.
async fn produce(
    view: View,
    interest: Option<Interest>,
    resume: Option<u64>,
    tx: mpsc::Sender<Result<Event, Infallible>>,
) {
    let mut versions = view.subscribe();
    let mut at = resume;
    let wanted = |name: &str| interest.as_ref().is_none_or(|i| i.matches(name));
    loop {
        versions.mark_unchanged();
        let next = {
            let state = view.read();
            match at {
                Some(v) if v <= state.version => match state.changes_since(v) {
                    Some(changes) => Next::Changes(changes),
                    None => snapshot(&state, &wanted),
                },
                _ => snapshot(&state, &wanted),
            }
        };
        match next {
            Next::Snapshot(version, data) => {
                let event = Event::default()
                    .event("snapshot")
                    .id(version.to_string())
                    .data(data);
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
                at = Some(version);
            }
            Next::Changes(changes) => {
                for change in changes {
                    if !wanted(&change.service.name) {
                        at = Some(change.version);
                        continue;
                    }
                    let data = serde_json::to_string(&change).unwrap_or_default();
                    let event = Event::default()
                        .event("change")
                        .id(change.version.to_string())
                        .data(data);
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                    at = Some(change.version);
                }
            }
        }
        tokio::select! {
            changed = versions.changed() => if changed.is_err() { return },
            () = tx.closed() => return,
        }
    }
}

fn snapshot(state: &crate::view::State, wanted: &impl Fn(&str) -> bool) -> Next {
    let services = state.list(wanted);
    let data = json!({ "version": state.version, "services": services }).to_string();
    Next::Snapshot(state.version, data)
}
