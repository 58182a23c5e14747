//! # herald-server
//!
//! The tokio shell of Herald: the `herald` binary (directory daemon and command line),
//! the async [`client`] library, and the pieces they are made of. The protocol lives in
//! [`herald_core`]; this crate only moves bytes, converts time, persists, configures and
//! prints.
//!
//! - [`serve`]: the directory's socket loop; [`backend`]: where it keeps the
//!   registry, [`storage`] (redb, on disk, written by the [`writer`] thread) or
//!   `cluster` (etcd, shared by several directories that elect a publisher; with the
//!   `etcd` feature); [`metrics`]: its Prometheus endpoint.
//! - [`http`] and [`dns`]: the registry over HTTP/JSON (with a live page) and DNS,
//!   answered from a [`view`] the serve loop keeps.
//! - [`client`]: register, unregister, watch and list from async Rust.
//! - [`config`], [`cli`], [`commands`], [`logging`]: the command line; [`delivery`]:
//!   multicast, unicast to subscribers, or both; [`subscribers`]: who listens by unicast.
//! - [`keys`]: key files of authenticated environments; [`dropped`]: logging the frames
//!   that fail authentication.
//! - [`display`]: names and metadata as printed for people (hidden characters escaped);
//!   [`net`]: socket set-up; [`accept`]: taking TCP connections under a cap; [`interfaces`]: interface names and indexes, and the
//!   scope ids of link-local IPv6 addresses; [`clock`]: time conversion.

pub mod accept;
pub mod backend;
pub mod cli;
pub mod client;
pub mod clock;
#[cfg(feature = "etcd")]
pub mod cluster;
pub mod commands;
pub mod config;
pub mod delivery;
pub mod display;
pub mod dns;
pub mod dropped;
pub mod http;
pub mod inbox;
pub mod interfaces;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod outbox;
pub mod registrant;
pub mod serve;
pub mod storage;
pub mod subscribers;
pub mod systemd;
pub mod view;
pub mod writer;
