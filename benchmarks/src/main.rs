//! `herald-bench`: Herald's macro-benchmarks, one command each, bounded in count and
//! time, with traffic only on loopback or inside a network namespace the run creates.
//!
//! ```sh
//! cargo run --release -p herald-bench -- all    # everything, ~8 minutes; writes docs/
//! cargo run --release -p herald-bench -- throughput|latency|late-joiner|traffic|memory|web|subscribers
//! cargo run --release -p herald-bench -- subscribers [--sizes 10,100,1000] [--mode unicast|multicast|both]
//! cargo run --release -p herald-bench -- mdns [--quick] [--plot docs/idle-cost.svg] [--herald-only] [--concurrent]
//! cargo run --release -p herald-bench --features etcd -- cluster   # ~3 minutes, needs etcd
//! ```
//!
//! Every figure is printed as a markdown table; `all` also writes
//! `docs/benchmark-results.{md,json}` and, when python3 has matplotlib,
//! `docs/benchmarks.png` (`benchmarks/plot.py`). `cluster` is not part of `all` (it
//! needs the `etcd` feature and an etcd binary) and writes `docs/cluster-results.{md,json}`.
//! Directories are this binary re-executed as `herald-bench herald serve …`: the same
//! code as the `herald` binary.

mod capture;
mod cluster;
mod events;
mod joiner;
mod latency;
mod mdns;
mod memory;
mod netns;
mod pin;
mod process;
mod raw;
mod report;
mod stats;
mod subscribers;
mod svg;
mod throughput;
mod traffic;
mod web;

use report::Report;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A tokio runtime for the client library.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))
}

/// `herald-bench herald …`: the `herald` command line, as the `herald` binary runs it.
fn herald(args: Vec<String>) -> ExitCode {
    use clap::Parser;
    let cli =
        herald_server::cli::Cli::parse_from(std::iter::once("herald".to_string()).chain(args));
    herald_server::logging::init(cli.log_format, "warn");
    let Ok(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(herald_server::commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The machine, for the report.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}, Linux {}", kernel.trim())
}

/// Runs the benchmark named `what` (`all` for every one) into `report`.
fn bench(what: &str, report: &mut Report) -> Result<(), String> {
    let all = what == "all";
    let runtime = runtime()?;
    let mut known = all;
    let mut step = |name: &str, f: &mut dyn FnMut(&mut Report) -> Result<(), String>| {
        if all || what == name {
            known = true;
            let start = std::time::Instant::now();
            if let Err(e) = f(report) {
                report.line(&format!("\n**{name} failed: {e}**"));
            }
            eprintln!("[{name}: {:.1} s]", start.elapsed().as_secs_f64());
        }
    };
    step("throughput", &mut throughput::run);
    step("latency", &mut |r| latency::run(r, &runtime));
    step("late-joiner", &mut |r| joiner::run(r, &runtime));
    step("traffic", &mut traffic::run);
    step("memory", &mut memory::run);
    step("mdns", &mut |r| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let options = mdns::Options {
            plot: Some(root.join("docs/idle-cost.svg")),
            ..mdns::Options::default()
        };
        mdns::run(r, &options)
    });
    step("web", &mut |r| web::run(r, &runtime));
    step("subscribers", &mut |r| {
        subscribers::run(r, &runtime, &subscribers::Options::default())
    });
    if known {
        Ok(())
    } else {
        Err(format!("unknown benchmark {what:?}"))
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let command = if args.is_empty() {
        "all".to_string()
    } else {
        args.remove(0)
    };
    // `herald-bench mdns --help` and the like: the usage (the herald CLI inside
    // answers its own --help).
    let help = command != "herald" && args.iter().any(|a| a == "-h" || a == "--help");
    let command = if help { "--help".to_string() } else { command };
    let result = match command.as_str() {
        "herald" => return herald(args),
        "echo" => {
            let addr = args.first().and_then(|a| a.parse().ok());
            let secs = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(60);
            match addr {
                Some(addr) => process::echo_server(addr, std::time::Duration::from_secs(secs))
                    .map_err(|e| e.to_string()),
                None => Err("usage: herald-bench echo IP:PORT [SECS]".into()),
            }
        }
        "mdns" if !args.is_empty() => mdns::Options::parse(&args).and_then(|options| {
            let mut report = Report::default();
            report.line(&format!("Machine: {}", machine()));
            let start = std::time::Instant::now();
            let result = mdns::run(&mut report, &options);
            eprintln!("[mdns: {:.1} s]", start.elapsed().as_secs_f64());
            result
        }),
        "subscribers" if !args.is_empty() => {
            subscribers::Options::parse(&args).and_then(|options| {
                let mut report = Report::default();
                report.line(&format!("Machine: {}", machine()));
                let runtime = runtime()?;
                subscribers::run(&mut report, &runtime, &options)
            })
        }
        "mdns-publish" => match (args.first(), args.get(1)) {
            (Some(ty), Some(instance)) => mdns::publish(ty, instance),
            _ => Err("usage: herald-bench mdns-publish TYPE INSTANCE".into()),
        },
        "-h" | "--help" | "help" => {
            println!(
                "usage: herald-bench [all|throughput|latency|late-joiner|traffic|memory|mdns|web|subscribers]\n       \
                 herald-bench mdns [--quick] [--plot docs/idle-cost.svg] [--herald-only] [--concurrent]\n       \
                 herald-bench subscribers [--sizes 10,100,1000] [--mode unicast|multicast|both] [--pin]\n       \
                 herald-bench cluster [--discovery-only|--registrations-only]\n\
                 (cluster needs `--features etcd` and an etcd binary; it is not part of all)"
            );
            Ok(())
        }
        "cluster" => cluster(&args),
        what => {
            let mut report = Report::default();
            report.line(&format!("Machine: {}", machine()));
            report.record("machine", machine().into());
            let result = bench(what, &mut report);
            if what == "all" && result.is_ok() {
                finish(&report)
            } else {
                result
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `herald-bench cluster [--discovery-only|--registrations-only]`: the etcd cluster;
/// a complete run writes `docs/cluster-results.{md,json}`.
fn cluster(args: &[String]) -> Result<(), String> {
    let mode = cluster::Options::parse(args)?;
    cluster::preflight()?;
    let runtime = runtime()?;
    let mut report = Report::default();
    report.line(&format!("Machine: {}", machine()));
    report.record("machine", machine().into());
    let start = std::time::Instant::now();
    let succeeded = cluster::run(&mut report, &runtime, mode)?;
    eprintln!("[cluster: {:.1} s]", start.elapsed().as_secs_f64());
    if !succeeded {
        return Err("some cluster measurements failed (see above); results not written".into());
    }
    if mode.complete() {
        write(&report, "cluster-results")?;
    }
    Ok(())
}

/// Writes the results as `docs/STEM.{md,json}`; the repository root and the JSON file.
fn write(report: &Report, stem: &str) -> Result<(PathBuf, PathBuf), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (md, json) = report
        .write(&root.join("docs"), stem)
        .map_err(|e| e.to_string())?;
    println!("\nwrote {} and {}", md.display(), json.display());
    Ok((root, json))
}

/// Writes the results under `docs/` and draws the plot when matplotlib is there.
fn finish(report: &Report) -> Result<(), String> {
    let (root, json) = write(report, "benchmark-results")?;
    let docs = root.join("docs");
    let plot = std::process::Command::new("python3")
        .arg(root.join("benchmarks/plot.py"))
        .arg(&json)
        .arg(docs.join("benchmarks.png"))
        .status();
    match plot {
        Ok(s) if s.success() => println!("wrote {}", docs.join("benchmarks.png").display()),
        _ => println!("no plot: python3 with matplotlib is needed (pip install matplotlib)"),
    }
    Ok(())
}
