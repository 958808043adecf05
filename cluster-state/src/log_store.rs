//! openraft's log storage (`RaftLogStorage`) over [`Store`]: entries, vote, committed and purged
//! log ids. An append is acknowledged to Raft only after the store has flushed it to disk, but
//! the flush runs in the background ([`Flusher`]): Raft goes on meanwhile (sending the same
//! entries to the followers, gathering the next batch of writes), and one flush answers every
//! append queued while the previous one ran (group commit).

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError};
use tokio::sync::{mpsc, oneshot};

use crate::store::Store;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// The Raft log; clones share the same store and serve as log readers.
#[derive(Clone)]
pub struct LogStore {
    store: Store,
    flusher: Flusher,
    /// The last committed log index Raft told us about, for status and metrics (openraft 0.9
    /// does not publish it in its metrics).
    committed: Arc<AtomicU64>,
}

impl LogStore {
    /// Must be called within a tokio runtime: it starts the background flusher.
    pub fn new(store: Store) -> LogStore {
        LogStore {
            flusher: Flusher::spawn(store.clone()),
            store,
            committed: Arc::default(),
        }
    }

    /// A handle that follows the committed index.
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }
}

/// What the flusher answers once the store is flushed past it.
enum Pending {
    /// An append: Raft learns it is durable.
    Append(LogFlushed<TypeConfig>),
    /// Everything submitted before is durable and answered (see [`Flusher::barrier`]).
    Barrier(oneshot::Sender<()>),
}

/// Flushes the store in the background and answers in submission order. Writes reach the store
/// in order before they are queued here, and a flush makes every earlier write durable, so one
/// flush answers the whole queue.
#[derive(Clone)]
struct Flusher {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Flusher {
    fn spawn(store: Store) -> Flusher {
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while rx.recv_many(&mut batch, 1024).await > 0 {
                let res = store.flush().await;
                if let Err(e) = &res {
                    tracing::error!(error = %e, "raft log flush failed");
                }
                for p in batch.drain(..) {
                    match p {
                        Pending::Append(cb) => cb.log_io_completed(
                            res.as_ref()
                                .map(|_| ())
                                .map_err(|e| io::Error::other(e.to_string())),
                        ),
                        Pending::Barrier(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            }
        });
        Flusher { tx }
    }

    /// Answers `callback` once the entries written before this call are durable.
    async fn submit(&self, store: &Store, callback: LogFlushed<TypeConfig>) {
        if let Err(mpsc::error::SendError(Pending::Append(callback))) =
            self.tx.send(Pending::Append(callback))
        {
            // The flusher is gone (shutting down): flush here.
            let res = store.flush().await;
            callback.log_io_completed(res.map_err(|e| io::Error::other(e.to_string())));
        }
    }

    /// Waits until every append submitted before is durable and answered, so that a truncation
    /// or a vote is never reordered before them.
    async fn barrier(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Pending::Barrier(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

fn read_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::read_logs(e).into()
}

fn write_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::write_logs(e).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let from = range.start_bound().cloned();
        let to = range.end_bound().cloned();
        self.store.log_range(from, to).map_err(|e| read_err(&e))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> =
            self.store.get_json(LAST_PURGED).map_err(|e| read_err(&e))?;
        let last: Option<Entry> = self.store.log_last().map_err(|e| read_err(&e))?;
        let last_log_id = last.map(|e| e.log_id).or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.flusher.barrier().await;
        let res = match self.store.put_json(VOTE, vote) {
            Ok(()) => self.store.flush().await,
            Err(e) => Err(e),
        };
        res.map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.store
            .get_json(VOTE)
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed on purpose: losing it only means re-applying from the state machine's
        // last applied id, which openraft handles.
        if let Some(c) = committed {
            self.committed.fetch_max(c.index, Ordering::Relaxed);
        }
        let res = match committed {
            Some(c) => self.store.put_json(COMMITTED, &c),
            None => self.store.remove(COMMITTED),
        };
        res.map_err(|e| write_err(&e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed: Option<LogId> = self.store.get_json(COMMITTED).map_err(|e| read_err(&e))?;
        if let Some(c) = committed {
            self.committed.fetch_max(c.index, Ordering::Relaxed);
        }
        Ok(committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let records: Vec<(u64, Entry)> = entries.into_iter().map(|e| (e.log_id.index, e)).collect();
        match self.store.log_append(&records) {
            Ok(()) => {
                // Durable (and answered) in the background; readable at once.
                self.flusher.submit(&self.store, callback).await;
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "raft log append failed");
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(write_err(&e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.flusher.barrier().await;
        let res = match self
            .store
            .log_remove(Bound::Included(log_id.index), Bound::Unbounded)
        {
            Ok(()) => self.store.flush().await,
            Err(e) => Err(e),
        };
        res.map_err(|e| write_err(&e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first: a crash in between leaves extra entries, never a gap.
        let res = self.store.put_json(LAST_PURGED, &log_id).and_then(|()| {
            self.store
                .log_remove(Bound::Unbounded, Bound::Included(log_id.index))
        });
        res.map_err(|e| write_err(&e))
    }
}

#[cfg(test)]
#[path = "log_store_tests.rs"]
mod tests;
