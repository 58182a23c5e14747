//! Registers many services against a running directory and reports how long it takes.
//!
//! ```sh
//! herald serve --data-dir /tmp/herald-load &
//! cargo run --release -p herald-server --example load -- 1000
//! ```
//!
//! Loopback only: it talks to `127.0.0.1:37399` (or the address given second) and
//! registers at most 10,000 services, then unregisters them and exits.

use herald_server::client::{registration, ClientOptions, Herald};
use std::time::Instant;

/// Registrations per client (a client registers at most 32 services itself).
const PER_CLIENT: usize = 25;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let services: usize = args.next().map_or(Ok(1000), |a| a.parse())?.min(10_000);
    let directory: std::net::SocketAddr = args
        .next()
        .map_or(Ok(herald_server::config::DEFAULT_BIND), |a| a.parse())?;
    if !directory.ip().is_loopback() {
        return Err("the load example only talks to a loopback directory".into());
    }
    let options = ClientOptions {
        directories: vec![directory],
        timeout: std::time::Duration::from_secs(20),
        ..ClientOptions::default()
    };
    let start = Instant::now();
    let mut tasks = Vec::new();
    for first in (0..services).step_by(PER_CLIENT) {
        let options = options.clone();
        tasks.push(tokio::spawn(async move {
            let herald = Herald::connect(options).await?;
            let mut handles = Vec::new();
            for i in first..(first + PER_CLIENT).min(services) {
                let port = 10_000 + (i % 50_000) as u16;
                let location = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                let reg = registration(&format!("load-{i:05}"), &[location], &[])?;
                handles.push(herald.register(reg).await?);
            }
            Ok::<_, herald_server::client::Error>((herald, handles))
        }));
    }
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await??);
    }
    let registered = start.elapsed();
    let lister = Herald::connect(options.clone()).await?;
    let listed_at = Instant::now();
    let list = lister.list().await?;
    let listed = listed_at.elapsed();
    println!(
        "registered {services} services in {registered:?} ({:.0}/s, {PER_CLIENT} per client, \
         one at a time); listed {} in {listed:?}",
        services as f64 / registered.as_secs_f64(),
        list.len()
    );
    let start = Instant::now();
    for (_, handles) in clients {
        for handle in handles {
            handle.unregister().await?;
        }
    }
    println!("unregistered them in {:?}", start.elapsed());
    Ok(())
}
