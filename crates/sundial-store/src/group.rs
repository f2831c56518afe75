//! What every backend's writer does around a group commit, written once: the queue of batches
//! with their callers, gathering the batches waiting at that moment, answering each caller
//! with its batch's result, keeping health, and telling the observer afterwards.

use crate::{CommitObserver, CommitReceipt, Durability, StoreError, WriteBatch};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Most batches one transaction takes before it commits.
pub(crate) const MAX_GROUP: usize = 1024;

/// One queued batch and the caller waiting for its result.
pub(crate) type Job = (WriteBatch, oneshot::Sender<Result<(), StoreError>>);

/// The outcome of a group: one result per batch, or one error for the whole transaction.
pub(crate) type GroupResult = Result<Vec<Result<(), StoreError>>, StoreError>;

/// Queues `batch` for the writer; a writer that is gone answers [`StoreError::Closed`].
pub(crate) fn enqueue(jobs: &mpsc::UnboundedSender<Job>, batch: WriteBatch) -> CommitReceipt {
    let (tx, rx) = oneshot::channel();
    if let Err(mpsc::error::SendError((_, reply))) = jobs.send((batch, tx)) {
        let _ = reply.send(Err(StoreError::Closed));
    }
    rx
}

/// Moves the batches already queued into `group`, up to [`MAX_GROUP`].
pub(crate) fn take_waiting(rx: &mut mpsc::UnboundedReceiver<Job>, group: &mut Vec<Job>) {
    while group.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(job) => group.push(job),
            Err(_) => break,
        }
    }
}

/// Whether the group's commit must wait for the disk (some batch asks for it).
pub(crate) fn needs_sync(group: &[Job]) -> bool {
    group
        .iter()
        .any(|(batch, _)| batch.durability == Durability::Synced)
}

/// Whether commits succeed, as the writer last saw it.
#[derive(Default)]
pub(crate) struct Health {
    /// The last group failed (or the backend is unreachable).
    pub failing: AtomicBool,
    /// A failure after which no write is accepted any more.
    pub failed: Mutex<Option<String>>,
}

impl Health {
    pub fn healthy(&self) -> bool {
        !self.failing.load(Ordering::Acquire) && self.failed.lock().is_none()
    }

    /// The reason the store stopped for good, if it did.
    pub fn failed_reason(&self) -> Option<String> {
        self.failed.lock().clone()
    }
}

/// Records the group's outcome in `health`, answers every caller (a whole-group error goes to
/// each), then tells `observer`, so an observer never delays a reply.
pub(crate) fn finish(
    group: Vec<Job>,
    results: GroupResult,
    elapsed: std::time::Duration,
    health: &Health,
    observer: Option<&Arc<dyn CommitObserver>>,
) {
    tracing::trace!(
        batches = group.len(),
        elapsed_us = elapsed.as_micros() as u64,
        "group commit"
    );
    let ok = results.is_ok();
    if let Err(e) = &results {
        tracing::error!(error = %e, "group commit failed");
        if let StoreError::Failed(reason) = e {
            health.failed.lock().get_or_insert_with(|| reason.clone());
        }
    }
    health.failing.store(!ok, Ordering::Release);
    let (batches, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
    match results {
        Ok(each) => {
            for (reply, result) in replies.into_iter().zip(each) {
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
    if let Some(observer) = observer {
        observer.group_committed(&mut batches.iter(), elapsed, ok);
    }
}
