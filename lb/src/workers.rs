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
        Ok(Workers { workers })
    }

    /// No worker threads: everything runs on the ambient runtime.
    pub fn none() -> Workers {
        Workers {
            workers: Vec::new(),
        }
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
