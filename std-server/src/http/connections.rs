//! Taking HTTP connections: at most [`MAX_CONNECTIONS`] at once, an eighth of them
//! from one source (past that, `429` and the connection closed; see
//! [`accept`]), and a connection that has not sent a whole request head
//! within [`HEADER_TIMEOUT`] of being taken, or of its previous answer, is closed; a
//! request's body must then arrive whole within [`BODY_TIMEOUT`] ([`body_in_time`]).
//! Without these, idle or trickling clients could hold connections for ever and use
//! up the process's file descriptors. A Server-Sent Events answer is not a request
//! being read: watches stay open as long as they like.

use super::MAX_BODY;
use crate::accept;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::LazyLock;
use std::time::Duration;
use tokio::net::TcpListener;

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 512;
/// Longest a connection may take to send a request head (from its start, or from the
/// end of the previous answer on a kept-alive connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a request's body may take to arrive whole, from the end of its head.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Middleware: reads the request's body whole (at most [`MAX_BODY`] bytes) within
/// [`BODY_TIMEOUT`] before the handler runs; past it the answer is `408` and the
/// connection is closed, so a body that never ends holds no connection for ever.
pub async fn body_in_time(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let whole = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY));
    let bytes = match whole.await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            let reason = format!("the body is larger than {MAX_BODY} bytes, or was cut short");
            return super::error(StatusCode::PAYLOAD_TOO_LARGE, reason);
        }
        Err(_) => {
            let reason = format!("the body did not arrive within {BODY_TIMEOUT:?}");
            return super::closing_error(StatusCode::REQUEST_TIMEOUT, reason);
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The answer to a connection past its source's share (see [`accept`]).
static REFUSAL: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let body = serde_json::json!({ "error": accept::refusal_reason(MAX_CONNECTIONS) });
    accept::http_refusal("application/json", &body.to_string())
});

/// Serves `router` on `listener` until the process stops.
pub async fn serve(listener: TcpListener, router: Router) {
    let refusal = REFUSAL.as_slice();
    accept::serve_bounded(
        listener,
        MAX_CONNECTIONS,
        refusal,
        "http",
        move |stream, _| {
            let service = TowerToHyperService::new(router.clone());
            async move {
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT);
                let connection = http
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                if let Err(e) = connection.await {
                    tracing::trace!(error = %e, "http: connection ended");
                }
            }
        },
    )
    .await
}
