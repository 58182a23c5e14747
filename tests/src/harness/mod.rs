//! The harness: real processes, unique ports and groups, namespaces, fault injection,
//! a load generator and resource readings. See the crate docs for the rules it keeps.

pub mod binary;
pub mod etcd;
pub mod family;
pub mod faults;
pub mod filter;
pub mod herald;
pub mod host;
pub mod hostile;
pub mod http;
pub mod load;
pub mod metrics;
pub mod netem;
pub mod netns;
pub mod ports;
pub mod probe;
pub mod process;
pub mod procstat;
pub mod rng;
pub mod tap;
pub mod veth6;
pub mod wait;
