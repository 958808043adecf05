//! The data plane's worker threads: one single-threaded tokio runtime per core, each accepting on
//! its own copy of every listener socket. A connection, its requests and its upstream
//! connections stay on the thread that accepted it, so the hot path never hands work across
//! cores (measured: a second work-stealing worker cost about 14 % more CPU per request than one;
//! see perf/RESULTS.md).
//!
//! With no workers (tests that want everything on their own runtime), the ambient runtime runs
//! everything and there is one worker slot, index 0.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// This thread's worker slot: 0 outside the workers.
pub fn index() -> usize {
    INDEX.with(Cell::get)
}

struct Worker {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

pub struct Workers {
    workers: Vec<Worker>,
    balance: Balance,
}

/// Places accepted connections on the least loaded worker.
///
/// Every worker waits on the same listening socket, and whichever is running takes the next
/// connection: on a busy machine the worker that happens to hold a CPU takes a whole burst (all
/// 50 of wrk's connections) while the other, woken too, waits for a CPU; it then works alone for
/// the connections' whole life, and a CPU-bound route (gzip, TLS) runs on one core of two.
/// nginx without `reuseport` has the same trouble. So a worker that accepts a connection while
/// more than one connection ahead of the least loaded worker hands it to that one (HAProxy
/// balances its threads the same way): two `epoll_ctl` calls and a wake-up, once per moved
/// connection, never per request.
#[derive(Clone)]
pub struct Balance {
    open: Arc<[AtomicUsize]>,
    handles: Arc<[Handle]>,
}

impl Balance {
    fn new(handles: Vec<Handle>) -> Balance {
        Balance {
            open: (0..handles.len().max(1))
                .map(|_| AtomicUsize::new(0))
                .collect(),
            handles: handles.into(),
        }
    }

    /// Where a connection accepted on worker `slot` should run: `None` for here, or the least
    /// loaded worker's slot and runtime when `slot` is more than one connection ahead of it.
    pub fn place(&self, slot: usize) -> Option<(usize, &Handle)> {
        let mine = self.open.get(slot)?.load(Ordering::Relaxed);
        let (least, count) = self
            .open
            .iter()
            .enumerate()
            .map(|(i, n)| (i, n.load(Ordering::Relaxed)))
            .min_by_key(|&(_, n)| n)?;
        if mine <= count + 1 {
            return None;
        }
        Some((least, self.handles.get(least)?))
    }

    /// Counts a connection on `slot` until the guard drops.
    pub fn open(&self, slot: usize) -> OpenGuard {
        if let Some(n) = self.open.get(slot) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        OpenGuard {
            balance: self.clone(),
            slot,
        }
    }

    /// Open connections per worker.
    #[cfg(test)]
    fn counts(&self) -> Vec<usize> {
        self.open
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }
}

pub struct OpenGuard {
    balance: Balance,
    slot: usize,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if let Some(n) = self.balance.open.get(self.slot) {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Workers {
    /// Starts `n` worker threads (none when `n` is 0).
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = rt.handle().clone();
            let (tx, rx) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("meridian-lb-{i}"))
                .spawn(move || {
                    INDEX.with(|c| c.set(i));
                    rt.block_on(async {
                        let _ = rx.await;
                    });
                    // Connections still open are dropped with the runtime.
                    rt.shutdown_background();
                })?;
            workers.push(Worker {
                handle,
                stop: Some(tx),
                thread: Some(thread),
            });
        }
        Ok(Workers {
            balance: Balance::new(workers.iter().map(|w| w.handle.clone()).collect()),
            workers,
        })
    }

    /// No worker threads: everything runs on the ambient runtime.
    pub fn none() -> Workers {
        Workers {
            workers: Vec::new(),
            balance: Balance::new(Vec::new()),
        }
    }

    /// The workers' connection counts, shared by every listener.
    pub fn balance(&self) -> &Balance {
        &self.balance
    }

    /// How many slots per-worker state needs.
    pub fn slots(&self) -> usize {
        self.workers.len().max(1)
    }

    /// Spawns a task made by `make` on every worker, or one on the ambient runtime without
    /// workers.
    pub fn spawn_each<F, Fut>(&self, make: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if self.workers.is_empty() {
            tokio::spawn(make());
        } else {
            for w in &self.workers {
                w.handle.spawn(make());
            }
        }
    }

    /// Stops the worker threads and waits for them (on the blocking pool).
    pub async fn stop(&mut self) {
        let mut threads = Vec::new();
        for w in &mut self.workers {
            if let Some(stop) = w.stop.take() {
                let _ = stop.send(());
            }
            threads.extend(w.thread.take());
        }
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
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
    fn a_connection_accepted_by_a_worker_ahead_goes_to_the_least_loaded_one() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let b = Balance::new(vec![
            rt.handle().clone(),
            rt.handle().clone(),
            rt.handle().clone(),
        ]);
        let mut zero = vec![b.open(0)];
        assert!(b.place(0).is_none(), "one ahead stays");
        zero.push(b.open(0));
        assert_eq!(
            b.place(0).map(|p| p.0),
            Some(1),
            "two ahead: the first least loaded"
        );
        let one = b.open(1);
        assert_eq!(b.place(0).map(|p| p.0), Some(2));
        assert!(b.place(2).is_none(), "the least loaded keeps its own");
        let two = b.open(2);
        assert!(b.place(0).is_none());
        assert_eq!(b.counts(), vec![2, 1, 1]);
        drop((zero, one, two));
        assert_eq!(b.counts(), vec![0, 0, 0]);
        // Without worker threads (one slot, no runtime of its own) nothing moves.
        let none = Balance::new(Vec::new());
        let _g = (none.open(0), none.open(0), none.open(0));
        assert!(none.place(0).is_none());
        assert!(none.place(5).is_none());
    }
}
