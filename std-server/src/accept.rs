//! Taking TCP connections under a cap, for every TCP interface of the directory (HTTP,
//! the metrics endpoint, DNS over TCP): at most a fixed number are served at once, and
//! further ones wait in the kernel's backlog, holding no descriptor of the directory's.
//! Each interface also closes its idle connections after a timeout; with both, clients
//! cannot use up the process's file descriptors (which its storage needs too).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Pause after a failed accept (out of descriptors, say) before the next.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Accepts connections on `listener` for ever, serving each with `serve` in a task of
/// its own, at most `max` at once. `what` names the interface in the logs.
pub async fn serve_bounded<F, S>(listener: TcpListener, max: usize, what: &'static str, serve: S)
where
    S: Fn(TcpStream, SocketAddr) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max));
    loop {
        // Never closed: a permit always comes.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(interface = what, error = %e, "cannot accept a connection");
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        let connection = serve(stream, peer);
        tokio::spawn(async move {
            connection.await;
            drop(slot);
        });
    }
}
