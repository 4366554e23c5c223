//! HTTP worker threads: each runs a single-threaded tokio runtime and
//! serves the connections the accept loop hands it.
//!
//! Why not tokio's multi-threaded runtime: at the end of a round the
//! aggregator wakes every waiting request at once (4,096 at the default
//! interval and load). The multi-threaded scheduler runs the last woken
//! task first, spills all but the newest 256 to a shared queue it polls
//! only now and then, and lets the other worker steal, so the replies go
//! out in a different order every round. A client answered early in one
//! round and late in the next waits the interval plus the whole burst;
//! that made p99 at the 1 s interval 1.04–1.06 s. A single-threaded
//! runtime runs woken tasks first in, first out, so each client keeps its
//! place from round to round (p99 1.009–1.012 s), and it spends less CPU per
//! request (no work stealing, no shared run queue).
//!
//! The aggregator hands each worker its round's replies in one task (see
//! [`Workers::spawn`]), so the wake-ups happen on the worker's own thread,
//! in arrival order, without a cross-thread signal per reply.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Distinguishes the worker sets of several servers in one process
/// (tests run many).
static NEXT_SET: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// On a worker thread: its set and index.
    static HOME: Cell<Option<(u64, usize)>> = const { Cell::new(None) };
}

/// The worker set and index of the current thread, if it is a worker.
pub fn current() -> Option<(u64, usize)> {
    HOME.with(Cell::get)
}

struct Worker {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A set of worker threads.
pub struct Workers {
    id: u64,
    workers: Vec<Worker>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("id", &self.id)
            .field("threads", &self.workers.len())
            .finish()
    }
}

impl Workers {
    /// Starts `n` worker threads (at least one).
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let id = NEXT_SET.fetch_add(1, Ordering::Relaxed);
        let mut workers = Vec::with_capacity(n.max(1));
        for index in 0..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("otsd-http-{index}"))
                .spawn(move || {
                    HOME.with(|h| h.set(Some((id, index))));
                    // Spawned tasks run while this waits; when it returns,
                    // dropping the runtime drops whatever is left.
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                })?;
            workers.push(Worker {
                handle,
                stop: Some(stop),
                thread: Some(thread),
            });
        }
        Ok(Workers {
            id,
            workers,
            next: AtomicUsize::new(0),
        })
    }

    /// The number of threads.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Never true: a set has at least one thread.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// The index of `home` (from [`current`]) in this set, if it is one of
    /// this set's threads.
    pub fn index_of(&self, home: Option<(u64, usize)>) -> Option<usize> {
        match home {
            Some((id, i)) if id == self.id && i < self.workers.len() => Some(i),
            _ => None,
        }
    }

    /// Runs `fut` on worker `index`.
    pub fn spawn<F>(&self, index: usize, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // A handle outlives its runtime; spawning on a stopped one drops
        // the future, which only happens during shutdown.
        drop(self.workers[index % self.workers.len()].handle.spawn(fut));
    }

    /// Runs `fut` on the next worker in turn.
    pub fn spawn_next<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.spawn(i, fut);
    }

    /// Stops every thread (tasks still running on them are dropped) and
    /// waits for them to exit.
    pub fn stop(mut self) {
        for w in &mut self.workers {
            if let Some(stop) = w.stop.take() {
                let _ = stop.send(());
            }
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                if t.join().is_err() {
                    tracing::error!("an HTTP worker thread panicked");
                }
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Stopped but not joined: the threads exit on their own.
        for w in &mut self.workers {
            if let Some(stop) = w.stop.take() {
                let _ = stop.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_on_the_workers_in_turn_and_know_their_home() {
        let workers = Workers::start(3).unwrap();
        assert_eq!(workers.len(), 3);
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..6 {
            let tx = tx.clone();
            workers.spawn_next(async move {
                tx.send(current()).unwrap();
            });
        }
        let mut homes: Vec<usize> = (0..6)
            .map(|_| {
                let home = rx.recv().unwrap();
                workers
                    .index_of(home)
                    .expect("ran on one of the set's threads")
            })
            .collect();
        homes.sort_unstable();
        assert_eq!(homes, vec![0, 0, 1, 1, 2, 2]);
        // Not a worker thread, and not another set's.
        assert_eq!(workers.index_of(current()), None);
        let other = Workers::start(1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        other.spawn(0, async move { tx.send(current()).unwrap() });
        assert_eq!(workers.index_of(rx.recv().unwrap()), None);
        workers.stop();
        other.stop();
    }

    #[test]
    fn stop_drops_pending_tasks_and_joins() {
        let workers = Workers::start(2).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        workers.spawn(1, async move {
            std::future::pending::<()>().await;
            drop(tx);
        });
        workers.stop();
        // The task was dropped with its runtime, and with it the sender.
        assert!(rx.blocking_recv().is_err());
    }
}
