//! Replicated directories with any configuration (keys, retention), for the tests of
//! the directory's guarantees.

use super::Sim;
use herald_core::{DirectoryConfig, Duration};

impl Sim {
    /// Like [`Sim::replicated`], with every directory configured from `config` (each at
    /// its own address).
    pub fn replicated_with_config(
        seed: u64,
        faults: super::Faults,
        capacity: usize,
        count: usize,
        delay: Duration,
        config: DirectoryConfig,
    ) -> Self {
        let mut sim = Sim::with_config(seed, faults, capacity, config);
        for _ in 1..count {
            sim.add_directory(capacity);
        }
        sim.share_store(delay);
        sim
    }
}
