//! Retention: closed runs are deleted once their namespace's retention period has passed
//! since they closed.
//!
//! A scan runs every `every`: for each namespace it asks the store for runs closed before
//! `now - retention` and deletes each through the same path as DeleteWorkflowExecution
//! (history, state and visibility in one commit). A failed deletion is retried at the next
//! scan; nothing about retention is stored besides the close times already in visibility.

use crate::history::History;
use crate::namespaces::{DEFAULT_RETENTION_MS, Namespaces};
use std::sync::Arc;
use std::time::Duration;
use sundial_engine::time;

/// Runs deleted per namespace per scan at most (the next scan continues).
const BATCH: usize = 500;

/// The retention period of a namespace description, Temporal's default when unset.
fn retention_ms(ns: &sundial_engine::api::workflowservice::v1::DescribeNamespaceResponse) -> i64 {
    let ms = ns.config.as_ref().map_or(0, |c| {
        time::duration_ms(c.workflow_execution_retention_ttl.as_ref())
    });
    if ms > 0 { ms } else { DEFAULT_RETENTION_MS }
}

/// Deletes what is due now; returns how many runs were deleted.
pub async fn sweep(history: &Arc<History>, namespaces: &Namespaces, now_ms: i64) -> usize {
    let mut deleted = 0;
    for ns in namespaces.list() {
        let Some(name) = ns.namespace_info.as_ref().map(|i| i.name.clone()) else {
            continue;
        };
        let cutoff = now_ms.saturating_sub(retention_ms(&ns));
        let due = match history
            .store()
            .closed_runs_before(&name, cutoff, BATCH)
            .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(namespace = %name, error = %e, "retention scan failed");
                continue;
            }
        };
        for (workflow_id, run_id) in due {
            let result = match history.handle(&name, &workflow_id, Some(&run_id)).await {
                Ok(handle) => history.delete_run(&handle).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => deleted += 1,
                Err(e) => {
                    tracing::warn!(namespace = %name, workflow_id, run_id, error = %e, "retention delete failed")
                }
            }
        }
    }
    deleted
}

/// Sweeps every `every` until the process ends.
pub fn start(history: Arc<History>, namespaces: Arc<Namespaces>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let deleted = sweep(&history, &namespaces, history.clock().now_ms()).await;
            if deleted > 0 {
                tracing::info!(deleted, "closed runs past retention deleted");
            }
        }
    });
}
