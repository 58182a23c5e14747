//! Log output: `tracing` to standard error, human-readable or JSON lines.
//!
//! The level comes from `RUST_LOG` (e.g. `RUST_LOG=herald_server=debug`), else `info`
//! for `herald serve` and `warn` for the client commands, whose standard output is for
//! results only.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Starts logging to standard error at `default_level` unless `RUST_LOG` says
/// otherwise. The DNS library logs only its errors: it logs every query at `info` and
/// every datagram from a source no answer can go to (a forged one) at `warn`, which
/// would let whoever forges packets fill the log.
pub fn init(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{default_level},hickory_server=error,hickory_proto=error"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
