//! Harness code shared by Herald's fuzz targets (`fuzz_targets/`) and the seed corpus
//! generator (`tests/seeds.rs`).
//!
//! - [`codec`]: the `decode` and `roundtrip` targets' checks.
//! - [`message`]: an owned mirror of [`herald_core::wire::Message`] that can be
//!   generated, compared, encoded with the real encoder and rebuilt from a decoded frame.
//! - [`input`]: the byte layout of a state-machine input (a configuration, then steps
//!   of time, sender and datagram) and a writer for it, so seeds are real frames.
//! - [`world`]: a small world of names, locations and versions, so that generated
//!   requests collide and reach deep states.
//! - [`directory`] and [`client`]: drive one state machine with an input and check its
//!   invariants; they panic on a violation.
//! - [`history`]: the simulator's history checker (shared with the core's tests) on a
//!   fault schedule the input chooses.

pub mod client;
pub mod codec;
pub mod directory;
pub mod history;
pub mod input;
pub mod message;
pub mod world;

/// True when `HERALD_FUZZ_TRACE` is set: the harnesses then print every step, datagram
/// and event (to replay a crash: `HERALD_FUZZ_TRACE=1 cargo +nightly fuzz run T CRASH`).
pub fn tracing() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("HERALD_FUZZ_TRACE").is_some())
}

/// Prints when [`tracing`] is on.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => {
        if $crate::tracing() {
            eprintln!($($arg)*);
        }
    };
}

/// Bytes as space-separated hex, as the regression tests and PROTOCOL.md write them.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
