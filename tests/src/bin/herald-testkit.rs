//! `herald-testkit`: helpers the suites run as processes, so that they can run inside
//! a network namespace: a fault-injecting proxy, a load generator, a readiness
//! probe and an HTTP GET (metrics, etcd's health).

use clap::{Parser, Subcommand};
use herald_tests::harness::faults::{Faults, Proxy, ProxyConfig};
use herald_tests::harness::http;
use herald_tests::harness::load::{Load, LoadConfig};
use herald_tests::harness::probe::probe;
use herald_tests::harness::rng::Rng;
use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

/// Test helpers for the Herald suites.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Exit 0 once the directory answers a snapshot request.
    Probe {
        /// The directory's request address.
        directory: SocketAddr,
        /// The environment to ask in.
        environment: String,
        /// Seconds to wait.
        timeout_secs: u64,
    },
    /// Print the body of `GET http://ADDRESS/PATH`; fail unless the status is 2xx.
    HttpGet {
        /// The server.
        address: SocketAddr,
        /// The path, e.g. /metrics.
        path: String,
    },
    /// Relay a directory's traffic with loss, duplication, reordering and delay.
    Proxy {
        /// Address clients use (the directory advertises it).
        #[arg(long)]
        listen: SocketAddrV4,
        /// The directory's real address.
        #[arg(long)]
        upstream: SocketAddrV4,
        /// The group the directory announces on.
        #[arg(long)]
        group_in: SocketAddrV4,
        /// A group a listener joins (repeat: one per listener).
        #[arg(long, required = true)]
        group_out: Vec<SocketAddrV4>,
        /// The interface's IPv4 address.
        #[arg(long)]
        interface: Ipv4Addr,
        /// Loss probability.
        #[arg(long, default_value_t = Faults::LOSSY.loss)]
        loss: f64,
        /// Duplication probability.
        #[arg(long, default_value_t = Faults::LOSSY.duplicate)]
        duplicate: f64,
        /// Reordering probability.
        #[arg(long, default_value_t = Faults::LOSSY.reorder)]
        reorder: f64,
        /// Delay in milliseconds.
        #[arg(long, default_value_t = 10)]
        delay_ms: u64,
        /// Seed (default: fresh, printed).
        #[arg(long)]
        seed: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 600)]
        lifetime_secs: u64,
    },
    /// Register COUNT services; then `unregister` on stdin unregisters them all, end of
    /// stdin exits (the leases then run out).
    Load {
        /// A directory (repeat for failover).
        #[arg(long, required = true)]
        directory: Vec<SocketAddr>,
        /// Environment.
        #[arg(long, default_value = "default")]
        environment: String,
        /// Name prefix.
        #[arg(long)]
        prefix: String,
        /// How many services.
        #[arg(long)]
        count: usize,
        /// Address the services claim, and the sockets bind.
        #[arg(long, default_value = "127.0.0.1")]
        ip: IpAddr,
        /// Lease in seconds.
        #[arg(long, default_value_t = 15)]
        lease_secs: u64,
        /// Clients registering at once.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// Give up registering after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 600)]
        lifetime_secs: u64,
    },
}

fn stdin_lines() -> mpsc::Receiver<Option<String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(Some(line)).is_err() {
                return;
            }
        }
        let _ = tx.send(None);
    });
    rx
}

fn load(config: LoadConfig, timeout: Duration, lifetime: Duration) -> Result<(), String> {
    let count = config.count;
    let mut load = Load::new(config)?;
    let took = load.register_all(timeout)?;
    println!("registered {count} in {} ms", took.as_millis());
    let commands = stdin_lines();
    let start = std::time::Instant::now();
    let max_passes = lifetime.as_millis() as u64 * 4;
    for _ in 0..max_passes {
        if start.elapsed() >= lifetime {
            break;
        }
        match commands.try_recv() {
            Ok(Some(c)) if c.trim() == "unregister" => {
                let started = std::time::Instant::now();
                let confirmed = load.unregister_all(timeout)?;
                println!(
                    "released {count} confirmed {confirmed} in {} ms",
                    started.elapsed().as_millis()
                );
            }
            Ok(Some(c)) => eprintln!("unknown command {c:?}"),
            Ok(None) | Err(mpsc::TryRecvError::Disconnected) => break,
            Err(mpsc::TryRecvError::Empty) => {}
        }
        if !load.pump()? {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    for p in load.problems().iter().take(20) {
        eprintln!("problem: {p}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Probe {
            directory,
            environment,
            timeout_secs,
        } => probe(directory, &environment, Duration::from_secs(timeout_secs)).map(|answer| {
            println!("ready: {answer}");
        }),
        Command::HttpGet { address, path } => http::get(address, &path).map(|body| {
            print!("{body}");
        }),
        Command::Proxy {
            listen,
            upstream,
            group_in,
            group_out,
            interface,
            loss,
            duplicate,
            reorder,
            delay_ms,
            seed,
            lifetime_secs,
        } => {
            let seed = seed.unwrap_or_else(Rng::fresh_seed);
            let faults = Faults {
                loss,
                duplicate,
                reorder,
                delay: Duration::from_millis(delay_ms),
            };
            let config = ProxyConfig {
                listen,
                upstream,
                group_in,
                groups_out: group_out,
                interface,
                faults,
                seed,
                lifetime: Duration::from_secs(lifetime_secs),
            };
            match Proxy::bind(config) {
                Ok(mut proxy) => {
                    println!("proxy ready on {listen} seed {seed} faults {faults:?}");
                    proxy.run().map_err(|e| format!("proxy: {e}"))
                }
                Err(e) => Err(format!("proxy: {e}")),
            }
        }
        Command::Load {
            directory,
            environment,
            prefix,
            count,
            ip,
            lease_secs,
            parallel,
            timeout_secs,
            lifetime_secs,
        } => load(
            LoadConfig {
                directories: directory,
                environment,
                prefix,
                count,
                service_ip: ip,
                bind: ip,
                lease: Duration::from_secs(lease_secs),
                parallel,
            },
            Duration::from_secs(timeout_secs),
            Duration::from_secs(lifetime_secs),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald-testkit: {e}");
            ExitCode::FAILURE
        }
    }
}
