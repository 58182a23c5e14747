//! `herald serve --http ADDR`: the registry over HTTP/JSON, a Server-Sent Events watch,
//! registration with `PUT`/`DELETE`, the health check and Prometheus metrics, and a
//! live web page at `/`.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | the live page (`page.html`, embedded; no external assets) |
//! | `GET /v1/services[?interest=P]` | live services, as `herald list --json` prints them |
//! | `GET /v1/services/{name}` | one service, or 404 |
//! | `GET /v1/leases` | milliseconds of lease left per service |
//! | `GET /v1/subscribers[?name=NAME]` | unicast subscribers, as `herald list --subscribers --json` prints them; with `name`, the count and rows of those interested in it ([`subscribers`](mod@subscribers)) |
//! | `GET /v1/subscribers/watch` | Server-Sent Events: the subscriber table, then each subscriber that came, changed or went; resumable with `Last-Event-ID` |
//! | `GET /v1/watch[?interest=P]` | Server-Sent Events, resumable with `Last-Event-ID` ([`watch`]) |
//! | `PUT`/`DELETE /v1/services/{name}` | register or renew / unregister ([`write`](mod@write)) |
//! | `GET /healthz`, `GET /metrics` | as on the `--metrics` endpoint |
//!
//! Reads answer from the [`View`]; writes go through the directory's own request path
//! (see [`write`](mod@write)). With a token file, writes (and, with `--http-token-reads`, reads)
//! need `Authorization: Bearer TOKEN`.

pub mod connections;
pub mod feed;
mod page;
pub mod params;
pub mod subscribers;
pub mod watch;
pub mod write;

use crate::metrics::{self, Shared};
use crate::view::View;
use axum::extract::{RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use params::{NoQuery, ServicePath};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Largest request body accepted (a registration is far smaller).
pub const MAX_BODY: usize = 16 * 1024;

/// The HTTP listener's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The bearer token writes need (read from `--http-token-file`).
    pub token: Option<String>,
    /// Reads need the token too.
    pub token_reads: bool,
}

/// What the handlers share.
#[derive(Clone)]
pub struct Api {
    view: View,
    shared: Shared,
    recorder: Arc<PrometheusRecorder>,
    writer: write::Writer,
    token: Option<Arc<str>>,
    token_reads: bool,
    /// Room for event streams ([`feed::MAX_FEEDS`]).
    feeds: Arc<Semaphore>,
}

impl Api {
    /// The handlers' state: the registry `view`, the metrics snapshot and the `writer`
    /// that registers through the directory.
    pub fn new(settings: &HttpSettings, view: View, shared: Shared, writer: write::Writer) -> Api {
        Api {
            view,
            shared,
            recorder: Arc::new(PrometheusBuilder::new().build_recorder()),
            writer,
            token: settings.token.as_deref().map(Arc::from),
            token_reads: settings.token_reads,
            feeds: Arc::new(Semaphore::new(feed::MAX_FEEDS)),
        }
    }
}

/// Binds the listener (so that a bad address is reported at start-up).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the API on `listener` until the process stops (connections bounded and timed
/// as [`connections`] says).
pub async fn serve(listener: TcpListener, api: Api) {
    connections::serve(listener, router(api)).await
}

/// Every route, with the token check, the body limit and the body's deadline.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/", get(page::page))
        .route("/v1/services", get(list))
        .route(
            "/v1/services/{*name}",
            get(one).put(write::put).delete(write::delete),
        )
        .route("/v1/leases", get(leases))
        .route("/v1/subscribers", get(subscribers::list))
        .route("/v1/subscribers/watch", get(subscribers::watch))
        .route("/v1/watch", get(watch::watch))
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus))
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(middleware::from_fn(connections::body_in_time))
        .layer(middleware::from_fn_with_state(api.clone(), authorize))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// An unknown path: a JSON `404`.
async fn no_route(request: Request) -> Response {
    let path = request.uri().path();
    error(StatusCode::NOT_FOUND, format!("no route {path}"))
}

/// A known path asked with a method it does not take: a JSON `405`.
async fn no_method(request: Request) -> Response {
    let (method, path) = (request.method(), request.uri().path());
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{path} does not take {method}"),
    )
}

/// A JSON error: `{"error": reason}` with its status.
pub fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": reason.into() });
    (status, Json(body)).into_response()
}

/// The same, and the connection closed after it.
pub fn closing_error(status: StatusCode, reason: impl Into<String>) -> Response {
    let mut response = error(status, reason);
    let close = header::HeaderValue::from_static("close");
    response.headers_mut().insert(header::CONNECTION, close);
    response
}

/// Refuses a request without the bearer token when one is needed.
async fn authorize(State(api): State<Api>, request: Request, next: Next) -> Response {
    let write = !matches!(request.method().as_str(), "GET" | "HEAD");
    let Some(token) = &api.token else {
        return next.run(request).await;
    };
    let public = request.uri().path() == "/healthz";
    if !write && (!api.token_reads || public) {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        return next.run(request).await;
    }
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "this request needs `Authorization: Bearer TOKEN` with the token of --http-token-file",
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
    response
}

/// Compares without leaking where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /v1/services[?interest=P[,P…]]`.
async fn list(State(api): State<Api>, query: RawQuery) -> Response {
    let interest = match params::interest(query) {
        Ok(interest) => interest,
        Err(bad) => return bad.into_response(),
    };
    let services = api
        .view
        .read()
        .list(|name| interest.as_ref().is_none_or(|i| i.matches(name)));
    Json(services).into_response()
}

/// `GET /v1/services/{name}`.
async fn one(State(api): State<Api>, ServicePath(name): ServicePath, _: NoQuery) -> Response {
    match api.view.read().services.get(&name) {
        Some(l) => Json(l.info.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no live service {name:?}")),
    }
}

/// `GET /v1/leases`.
async fn leases(State(api): State<Api>, _: NoQuery) -> Response {
    let now = Instant::now();
    let leases: BTreeMap<String, u64> = api
        .view
        .read()
        .services
        .iter()
        .map(|(name, l)| {
            let left = l.expires.saturating_duration_since(now).as_millis();
            (name.clone(), u64::try_from(left).unwrap_or(u64::MAX))
        })
        .collect();
    Json(leases).into_response()
}

fn snapshot(api: &Api) -> metrics::Snapshot {
    *api.shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// `GET /healthz`.
async fn healthz(State(api): State<Api>, _: NoQuery) -> Response {
    let s = snapshot(&api);
    let status = if s.healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, s.health_text()).into_response()
}

/// `GET /metrics`.
async fn prometheus(State(api): State<Api>, _: NoQuery) -> Response {
    let text = metrics::render(&api.recorder, &snapshot(&api));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
