//! # herald-embedded
//!
//! The Herald client for microcontrollers and small edge devices: the same
//! [`herald_core::Client`] state machine as the server's, driven over a UDP socket of
//! **embassy-net** ([`embassy`], async) or of a bare **smoltcp** interface ([`bare`],
//! an executor-free poll loop). `no_std`, no allocation: every buffer and capacity is
//! chosen at compile time ([`Buffers`], [`embassy::Resources`]).
//!
//! A driver binds one UDP socket to the group's port, joins the group, and follows the
//! core's poll order; the protocol itself (leases, retries, failover, de-duplication)
//! lives in the core. Both drivers share everything but the socket glue.
//!
//! Features: `embassy` (default) for the async driver; `ipv6` for IPv6 directories
//! (costs about 17 KB of flash in embassy-net); `defmt` or `log` to log (off by
//! default).
#![no_std]

// The logging macros must come before the modules that use them.
#[macro_use]
mod fmt;

pub mod bare;
pub mod config;
#[cfg(feature = "embassy")]
pub mod embassy;
pub mod endpoint;
mod session;
pub mod storage;
pub mod time;

pub use config::{Config, Error, DEFAULT_GROUP};
pub use herald_core::{
    ClientConfig, ClientError, ClientEvent, Environment, Interest, Location, Registration, Service,
    ServiceName, Subscribe,
};
pub use storage::Buffers;
