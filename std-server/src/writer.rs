//! The thread that writes the redb store, so that the serve loop keeps receiving and
//! handling requests while a durable write (an fsync) runs.
//!
//! One write at a time: the loop hands a [`Batch`] to the [`Writer`] and is told when it
//! is on disk ([`Writer::finished`]); what the directory changes meanwhile waits in the
//! next batch, which the loop hands over once this one is done. Each write thus takes
//! everything that accumulated during the one before (group commit), and durable writes
//! are bounded by the disk's fsync rate times the batch size, not by one fsync per
//! request.

use crate::storage::{Batch, StorageError, Store};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tokio::sync::mpsc as async_mpsc;

/// A write for the thread.
#[derive(Debug)]
struct Job {
    batch: Batch,
    /// Reopen the store first (after a failed write, redb refuses every transaction
    /// until it is reopened).
    reopen: bool,
}

/// A finished write: the batch written, and whether it is on disk.
#[derive(Debug)]
pub struct Written {
    /// The batch that was written.
    pub batch: Batch,
    /// `Ok` when the batch is stored (synced to disk when it was durable).
    pub result: Result<(), StorageError>,
}

/// The writer thread's handle: at most one write in flight.
#[derive(Debug)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    done: async_mpsc::UnboundedReceiver<Written>,
    busy: bool,
    path: PathBuf,
    /// The thread, joined on drop.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread, which owns `store` from now on. The thread ends when the
    /// writer is dropped: the drop waits for the write in flight, if any, and returns
    /// once the store is closed.
    pub fn spawn(store: Store) -> std::io::Result<Writer> {
        let path = store.path().to_owned();
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (results, done) = async_mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("herald-writer".to_owned())
            .spawn(move || {
                let mut store = store;
                for job in inbox {
                    // The engine may panic on an I/O failure: a failed write, never a
                    // dead thread (the next attempt reopens the store).
                    let write = || match job.reopen {
                        true => store.reopen().and_then(|()| store.save(&job.batch)),
                        false => store.save(&job.batch),
                    };
                    let result = catch_unwind(AssertUnwindSafe(write)).unwrap_or_else(|_| {
                        Err(StorageError::Io {
                            path: store.path().to_owned(),
                            detail: "the database engine failed while writing".to_owned(),
                        })
                    });
                    let written = Written {
                        batch: job.batch,
                        result,
                    };
                    if results.send(written).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Writer {
            jobs,
            done,
            busy: false,
            path,
            thread: Some(thread),
        })
    }

    /// True while a write is in flight.
    pub fn is_busy(&self) -> bool {
        self.busy
    }

    /// Hands `batch` to the thread (reopening the store first when `reopen`). Only when
    /// no write is in flight.
    pub fn start(&mut self, batch: Batch, reopen: bool) {
        debug_assert!(!self.busy, "one write at a time");
        // Should the thread be gone, `finished` reports the write failed.
        let _ = self.jobs.send(Job { batch, reopen });
        self.busy = true;
    }

    /// The write in flight, once it is done (cancel-safe; never, when none is in flight).
    pub async fn finished(&mut self) -> Written {
        if !self.busy {
            return std::future::pending().await;
        }
        match self.done.recv().await {
            Some(written) => {
                self.busy = false;
                written
            }
            // The thread died (a panic in the engine): report it as a failed write.
            None => {
                self.busy = false;
                Written {
                    batch: Batch::default(),
                    result: Err(StorageError::Io {
                        path: self.path.clone(),
                        detail: "the storage writer thread stopped".to_owned(),
                    }),
                }
            }
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the job channel ends the thread's loop after the write in flight (whose
        // answer stays unread in the channel, dropped with `self`).
        drop(std::mem::replace(&mut self.jobs, mpsc::channel().0));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::registry::WallClock;
    use herald_core::Version;

    /// Dropping the writer while a write is in flight waits for it and closes the store:
    /// the next open (a restart in the same process, a test) finds it free. Before, the
    /// thread still held the store when the drop returned, and the open got `InUse`.
    #[test]
    fn a_dropped_writer_has_closed_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let clock = WallClock {
            now: herald_core::Instant::ZERO,
            unix_ms: 1_000_000,
        };
        for round in 0..20 {
            let (store, _) = Store::open(dir.path(), clock).unwrap();
            let mut writer = Writer::spawn(store).unwrap();
            let mut batch = Batch::default();
            batch.as_of(Version(round + 1));
            batch.make_durable_if(true);
            writer.start(batch, false);
            drop(writer);
            let (_store, loaded) =
                Store::open(dir.path(), clock).unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(
                loaded.as_of,
                Version(round + 1),
                "the write in flight is kept"
            );
        }
    }
}
