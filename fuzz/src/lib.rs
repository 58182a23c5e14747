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

pub mod client;
pub mod codec;
pub mod directory;
pub mod input;
pub mod message;
pub mod world;
