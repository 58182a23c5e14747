//! # herald-tests
//!
//! End-to-end, multi-host and fault-injection suites for Herald, over real sockets and
//! real processes. The scenarios are in `tests/` (one file each); this library is the
//! harness they share:
//!
//! - [`harness::binary`] builds `herald` and `herald-testkit` once per test process;
//! - [`harness::process`] runs children, captures their output, waits on it with
//!   deadlines, shows it when a test fails and kills the children on drop;
//! - [`harness::herald`] drives `herald serve`, `watch --json`, `register`, `list`;
//! - [`harness::netns`] builds private multi-host networks in network namespaces (root
//!   only; the scenarios skip with a printed reason otherwise), and [`harness::veth6`]
//!   two IPv6 hosts on a veth pair;
//! - [`harness::netem`] and [`harness::faults`] inject loss, duplication, reordering
//!   and delay: `tc netem` where the kernel has it, else a seeded UDP proxy of our own;
//! - [`harness::load`] registers thousands of services through herald-core's client;
//! - [`harness::procstat`] and [`harness::metrics`] read resource use and counters
//!   ([`harness::http`] reaches servers inside namespaces);
//! - [`harness::etcd`] runs an etcd for the directories that keep their registry there.
//!
//! Rules every suite keeps: traffic goes only to 127.0.0.0/8 or inside namespaces the
//! test made (10.237.0.0/24 and fd00:37::/64 exist only there); multicast leaves only through loopback
//! or a namespace's interface; every loop and wait is bounded in count and time; each
//! test cleans up (processes, namespaces, temporary directories) also when it fails.

pub mod harness;

pub use harness::herald::{Connect, Directory, DirectoryOptions, Watcher};
pub use harness::host::Host;
pub use harness::netns::{lab_or_skip, Lab};
pub use harness::process::Proc;
