//! # herald-server
//!
//! The tokio shell of Herald: the `herald` binary (directory daemon and command line),
//! the async [`client`] library, and the pieces they are made of. The protocol lives in
//! [`herald_core`]; this crate only moves bytes, converts time, persists, configures and
//! prints.
//!
//! - [`serve`]: the directory's socket loop; [`storage`]: its registry on disk;
//!   [`metrics`]: its Prometheus endpoint.
//! - [`client`]: register, unregister, watch and list from async Rust.
//! - [`config`], [`cli`], [`commands`], [`logging`]: the command line.
//! - [`keys`]: key files of authenticated environments; [`dropped`]: logging the frames
//!   that fail authentication.
//! - [`net`]: socket set-up; [`clock`]: time conversion.

pub mod cli;
pub mod client;
pub mod clock;
pub mod commands;
pub mod config;
pub mod dropped;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod serve;
pub mod storage;
