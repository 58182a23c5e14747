//! CPU affinity for a benchmark that runs a directory and its listeners on one machine:
//! the directory on a core of its own (as on a host of its own), the benchmark's
//! threads on the others, so that the listeners' wake-ups never preempt the directory.

use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// The CPUs this process may run on.
fn online() -> Result<Vec<usize>, String> {
    let set = nix::sched::sched_getaffinity(Pid::from_raw(0)).map_err(|e| e.to_string())?;
    Ok((0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect())
}

/// Pins every thread of process `pid` to `cpus` (threads it starts later inherit it).
fn pin(pid: u32, cpus: &[usize]) -> Result<(), String> {
    let mut set = CpuSet::new();
    for &c in cpus {
        set.set(c).map_err(|e| e.to_string())?;
    }
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| e.to_string())?;
    for task in tasks.flatten() {
        if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
            sched_setaffinity(Pid::from_raw(tid), &set)
                .map_err(|e| format!("pinning thread {tid} of {pid}: {e}"))?;
        }
    }
    Ok(())
}

/// The directory on a CPU of its own; this process gets every CPU back on drop.
pub struct Apart {
    /// The CPUs this process had.
    cpus: Vec<usize>,
    /// The CPU the directory runs on.
    pub directory_cpu: usize,
}

/// Puts the directory `pid` on the last CPU and this process on the others.
pub fn directory_apart(pid: u32) -> Result<Apart, String> {
    let cpus = online()?;
    let Some((&last, rest)) = cpus.split_last().filter(|(_, rest)| !rest.is_empty()) else {
        return Err(format!(
            "--pin needs two CPUs or more, this process has {cpus:?}"
        ));
    };
    pin(pid, &[last])?;
    pin(std::process::id(), rest)?;
    Ok(Apart {
        cpus,
        directory_cpu: last,
    })
}

impl Drop for Apart {
    fn drop(&mut self) {
        if let Err(e) = pin(std::process::id(), &self.cpus) {
            eprintln!("herald-bench: {e}");
        }
    }
}
