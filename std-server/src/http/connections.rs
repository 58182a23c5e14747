//! Taking HTTP connections: at most [`MAX_CONNECTIONS`] at once (see
//! [`accept`](crate::accept)), and a connection that has not sent a whole request head
//! within [`HEADER_TIMEOUT`] of being taken, or of its previous answer, is closed. Without both, idle clients could hold connections
//! for ever and use up the process's file descriptors. A Server-Sent Events answer is
//! not a request head being read: watches stay open as long as they like.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::time::Duration;
use tokio::net::TcpListener;

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 512;
/// Longest a connection may take to send a request head (from its start, or from the
/// end of the previous answer on a kept-alive connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Serves `router` on `listener` until the process stops.
pub async fn serve(listener: TcpListener, router: Router) {
    crate::accept::serve_bounded(listener, MAX_CONNECTIONS, "http", move |stream, _| {
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
    })
    .await
}
