//! Taking HTTP connections: at most [`MAX_CONNECTIONS`] at once (further ones wait in
//! the kernel's backlog and hold no descriptor of the directory's), and a connection
//! that has not sent a whole request head within [`HEADER_TIMEOUT`] of being taken, or
//! of its previous answer, is closed. Without both, idle clients could hold connections
//! for ever and use up the process's file descriptors. A Server-Sent Events answer is
//! not a request head being read: watches stay open as long as they like.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 512;
/// Longest a connection may take to send a request head (from its start, or from the
/// end of the previous answer on a kept-alive connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of descriptors, say) before the next.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until the process stops.
pub async fn serve(listener: TcpListener, router: Router) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // Never closed: a permit always comes.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "http: cannot accept a connection");
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let connection = http
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = connection.await {
                tracing::trace!(error = %e, "http: connection ended");
            }
            drop(slot);
        });
    }
}
