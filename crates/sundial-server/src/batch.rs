//! Batch operations (StartBatchOperation and friends): a job applies one operation
//! (terminate, cancel, signal, delete, reset) to a fixed set of workflow runs, in the
//! background, at a bounded rate.
//!
//! The reference server runs each job as a system workflow; Sundial runs it as a task of the
//! server with its state in the store (`batch_jobs`):
//!
//! - **Targets are fixed when the job starts.** The visibility query (or the list of
//!   executions) is resolved once, and the runs are written as pages (parts 1..) in the same
//!   commit as the job's record (part 0): the job is durable from the moment the RPC answers,
//!   and its total is known.
//! - **A durable cursor.** Targets are processed in order, a step of at most one second's worth
//!   (`max_operations_per_second`) at a time; after each step the record is written with the
//!   cursor past the step and the step's outcomes added to the counts, in one write. After a
//!   crash the job resumes at the cursor: the runs of an unfinished step are processed again,
//!   and counted once, since the counts written are those of whole steps. Every operation is
//!   harmless when repeated: terminating, cancelling or deleting a run that is already closed
//!   (or gone) has nothing left to do and counts as done; a signal carries a request id
//!   derived from the job and the target's position, which the run remembers, so it is
//!   delivered once.
//! - **Progress and failures** are the record's counts (DescribeBatchOperation); a target
//!   whose operation failed for another reason counts as a failure and is logged.
//! - **Stopping** (StopBatchOperation) marks the record FAILED with its close time, as the
//!   reference shows a stopped job; the runner sees it before its next step.
//!
//! Rate: the job's `max_operations_per_second`, capped by the server's `worker.batcherRPS`
//! (50 by default, as the reference): when the request names none, or more, the server's
//! limit applies.

use crate::detached::run_detached;
use crate::error::ServiceError;
use crate::history::{History, ResetRequest};
use futures::StreamExt;
use parking_lot::Mutex;
use prost::Message;
use std::collections::HashMap;
use std::sync::Arc;
use sundial_engine::api::{
    common::v1::WorkflowExecution,
    enums::v1::{BatchOperationState, BatchOperationType, EventType, ResetType},
    workflowservice::v1::{StartBatchOperationRequest, start_batch_operation_request::Operation},
};
use sundial_engine::{EngineError, Signal};
use sundial_store::{BATCH_JOB_RECORD, BatchJobRow, Store, WriteBatch};

/// The reference server's `worker.batcherRPS` default.
pub const DEFAULT_BATCHER_RPS: u32 = 50;
/// The reference server's `frontend.MaxConcurrentBatchOperationPerNamespace` default.
pub const DEFAULT_MAX_CONCURRENT_JOBS: usize = 1;
/// Targets per stored page.
const PAGE_SIZE: usize = 1000;
/// Operations of one step in flight at once.
const CONCURRENCY: usize = 32;

/// The batcher's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Most operations per second of any job (`worker.batcherRPS`).
    pub max_rps: u32,
    /// Most running jobs per namespace (`frontend.MaxConcurrentBatchOperationPerNamespace`).
    pub max_concurrent_jobs: usize,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            max_rps: DEFAULT_BATCHER_RPS,
            max_concurrent_jobs: DEFAULT_MAX_CONCURRENT_JOBS,
        }
    }
}

/// A job's stored record (part 0). Field tags are the storage format.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BatchJob {
    /// The request as made, without its list of executions (those are the target pages).
    #[prost(message, optional, tag = "1")]
    pub request: Option<StartBatchOperationRequest>,
    /// `BatchOperationState` as i32.
    #[prost(int32, tag = "2")]
    pub state: i32,
    /// `BatchOperationType` as i32.
    #[prost(int32, tag = "3")]
    pub operation_type: i32,
    #[prost(string, tag = "4")]
    pub identity: String,
    #[prost(int64, tag = "5")]
    pub start_time_ms: i64,
    /// 0 while running.
    #[prost(int64, tag = "6")]
    pub close_time_ms: i64,
    #[prost(int64, tag = "7")]
    pub total: i64,
    #[prost(int64, tag = "8")]
    pub complete: i64,
    #[prost(int64, tag = "9")]
    pub failure: i64,
    /// Position of the first target not yet processed (all before it are counted).
    #[prost(int64, tag = "10")]
    pub cursor: i64,
    /// Operations per second this job runs at.
    #[prost(double, tag = "11")]
    pub rps: f64,
}

impl BatchJob {
    pub fn namespace(&self) -> &str {
        self.request.as_ref().map_or("", |r| r.namespace.as_str())
    }

    pub fn job_id(&self) -> &str {
        self.request.as_ref().map_or("", |r| r.job_id.as_str())
    }

    pub fn is_running(&self) -> bool {
        self.state == BatchOperationState::Running as i32
    }
}

/// One stored page of targets.
#[derive(Clone, PartialEq, prost::Message)]
struct TargetPage {
    #[prost(message, repeated, tag = "1")]
    executions: Vec<WorkflowExecution>,
}

/// The operation type a request's operation is shown as.
pub fn operation_type(op: &Operation) -> Option<BatchOperationType> {
    Some(match op {
        Operation::TerminationOperation(_) => BatchOperationType::TerminateWorkflow,
        Operation::SignalOperation(_) => BatchOperationType::SignalWorkflow,
        Operation::CancellationOperation(_) => BatchOperationType::CancelWorkflow,
        Operation::DeletionOperation(_) => BatchOperationType::DeleteWorkflow,
        Operation::ResetOperation(_) => BatchOperationType::ResetWorkflow,
        Operation::UpdateWorkflowOptionsOperation(_) => {
            BatchOperationType::UpdateWorkflowExecutionOptions
        }
        _ => return None,
    })
}

/// The identity an operation names.
pub fn operation_identity(op: &Operation) -> String {
    match op {
        Operation::TerminationOperation(o) => o.identity.clone(),
        Operation::SignalOperation(o) => o.identity.clone(),
        Operation::CancellationOperation(o) => o.identity.clone(),
        Operation::DeletionOperation(o) => o.identity.clone(),
        Operation::ResetOperation(o) => o.identity.clone(),
        Operation::UpdateWorkflowOptionsOperation(o) => o.identity.clone(),
        _ => String::new(),
    }
}

type JobKey = (String, String);

/// The batch jobs of every namespace and their runners.
pub struct Batcher {
    history: Arc<History>,
    store: Arc<dyn Store>,
    settings: BatchSettings,
    /// Every job's latest committed record. A change is computed on a copy, committed, and
    /// only then installed here.
    jobs: Arc<Mutex<HashMap<JobKey, BatchJob>>>,
    /// Held from computing a change (a new job or a new record) until it is installed, so
    /// that changes are decided on the record last committed and installed in commit order.
    changes: Arc<tokio::sync::Mutex<()>>,
}

fn record_row(job: &BatchJob) -> BatchJobRow {
    BatchJobRow {
        namespace: job.namespace().to_string(),
        job_id: job.job_id().to_string(),
        part: BATCH_JOB_RECORD,
        data: Some(job.encode_to_vec()),
    }
}

impl Batcher {
    /// Loads every job and resumes the running ones.
    pub async fn start(
        history: Arc<History>,
        store: Arc<dyn Store>,
        settings: BatchSettings,
    ) -> Result<Arc<Batcher>, ServiceError> {
        let mut jobs = HashMap::new();
        for row in store.load_batch_jobs().await? {
            let job = BatchJob::decode(row.data.unwrap_or_default().as_slice()).map_err(|e| {
                ServiceError::Internal(format!("corrupt batch job {}: {e}", row.job_id))
            })?;
            jobs.insert((row.namespace, row.job_id), job);
        }
        let running: Vec<JobKey> = jobs
            .iter()
            .filter(|(_, j)| j.is_running())
            .map(|(k, _)| k.clone())
            .collect();
        let batcher = Arc::new(Batcher {
            history,
            store,
            settings,
            jobs: Arc::new(Mutex::new(jobs)),
            changes: Arc::new(tokio::sync::Mutex::new(())),
        });
        for key in running {
            tracing::info!(namespace = %key.0, job_id = %key.1, "resuming batch job");
            batcher.spawn(key);
        }
        Ok(batcher)
    }

    /// The operations per second a job asking for `requested` runs at.
    pub fn rps_for(&self, requested: f32) -> f64 {
        let requested = f64::from(requested);
        let max = f64::from(self.settings.max_rps.max(1));
        if requested > 0.0 && requested < max {
            requested
        } else {
            max
        }
    }

    /// Starts a job: writes its record and targets, then runs it in the background. Refused
    /// when the job id is taken or the namespace runs as many jobs as allowed.
    pub async fn submit(
        self: &Arc<Self>,
        job: BatchJob,
        targets: Vec<WorkflowExecution>,
    ) -> Result<(), ServiceError> {
        let key = (job.namespace().to_string(), job.job_id().to_string());
        let mut batch = WriteBatch {
            fence: Some(self.history.fence(&key.0, &key.1)?),
            ..WriteBatch::default()
        };
        batch.batch_jobs.push(record_row(&job));
        for (i, page) in targets.chunks(PAGE_SIZE).enumerate() {
            let data = TargetPage {
                executions: page.to_vec(),
            }
            .encode_to_vec();
            batch.batch_jobs.push(BatchJobRow {
                namespace: key.0.clone(),
                job_id: key.1.clone(),
                part: i as i64 + 1,
                data: Some(data),
            });
        }
        let serial = self.changes.clone().lock_owned().await;
        let receipt = {
            let jobs = self.jobs.lock();
            if jobs.contains_key(&key) {
                return Err(ServiceError::AlreadyExistsPlain(format!(
                    "a batch operation with job ID {} already exists",
                    key.1
                )));
            }
            let running = jobs
                .iter()
                .filter(|((ns, _), j)| *ns == key.0 && j.is_running())
                .count();
            if running >= self.settings.max_concurrent_jobs {
                return Err(ServiceError::ResourceExhausted(
                    "Max concurrent batch operations is reached".into(),
                ));
            }
            self.store.commit(batch)
        };
        // Once queued, the commit is carried out and installed whether or not the caller
        // still waits.
        let me = self.clone();
        run_detached(async move {
            let _serial = serial;
            receipt
                .await
                .unwrap_or(Err(sundial_store::StoreError::Closed))?;
            me.jobs.lock().insert(key.clone(), job);
            me.spawn(key);
            Ok(())
        })
        .await
    }

    /// A job's record.
    pub fn get(&self, namespace: &str, job_id: &str) -> Option<BatchJob> {
        self.jobs
            .lock()
            .get(&(namespace.to_string(), job_id.to_string()))
            .cloned()
    }

    /// The namespace's jobs, newest first.
    pub fn list(&self, namespace: &str) -> Vec<BatchJob> {
        let mut jobs: Vec<BatchJob> = self
            .jobs
            .lock()
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|(_, j)| j.clone())
            .collect();
        jobs.sort_by(|a, b| (b.start_time_ms, b.job_id()).cmp(&(a.start_time_ms, a.job_id())));
        jobs
    }

    /// StopBatchOperation: a running job is marked FAILED (closed now) and stops before its
    /// next step.
    pub async fn stop(&self, namespace: &str, job_id: &str) -> Result<(), ServiceError> {
        let key = (namespace.to_string(), job_id.to_string());
        self.change_job(&key, |job| {
            let Some(job) = job else {
                return Err(ServiceError::NotFound(format!(
                    "workflow not found for ID: {job_id}"
                )));
            };
            if !job.is_running() {
                return Err(ServiceError::NotFound(
                    "workflow execution already completed".into(),
                ));
            }
            job.state = BatchOperationState::Failed as i32;
            job.close_time_ms = self.history.clock().now_ms();
            Ok(true)
        })
        .await?;
        Ok(())
    }

    /// Changes job `key`: `change` is given a copy of its record (None: it is gone) and
    /// answers whether there is a change to store; the new record is committed, fenced by the
    /// job's ownership, and installed once committed (also when the caller gives up
    /// meanwhile). `Ok(false)`, or a job that is gone, commits nothing; a failed commit
    /// installs nothing. The answer is whether a record was committed.
    async fn change_job(
        &self,
        key: &JobKey,
        change: impl FnOnce(Option<&mut BatchJob>) -> Result<bool, ServiceError>,
    ) -> Result<bool, ServiceError> {
        let fence = self.history.fence(&key.0, &key.1)?;
        let serial = self.changes.clone().lock_owned().await;
        let mut job = self.jobs.lock().get(key).cloned();
        if !change(job.as_mut())? {
            return Ok(false);
        }
        let Some(job) = job else {
            return Ok(false);
        };
        let receipt = self.store.commit(WriteBatch {
            batch_jobs: vec![record_row(&job)],
            fence: Some(fence),
            ..Default::default()
        });
        let (jobs, key) = (self.jobs.clone(), key.clone());
        run_detached(async move {
            let _serial = serial;
            receipt
                .await
                .unwrap_or(Err(sundial_store::StoreError::Closed))?;
            jobs.lock().insert(key, job);
            Ok(true)
        })
        .await
    }

    fn spawn(self: &Arc<Self>, key: JobKey) {
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.run(&key).await {
                tracing::error!(namespace = %key.0, job_id = %key.1, error = %e, "batch job stopped on an error; it resumes at the next start");
            }
        });
    }

    async fn run(&self, key: &JobKey) -> Result<(), ServiceError> {
        let (ns, id) = key;
        let pages = self.store.load_batch_job_pages(ns, id).await?;
        let mut targets = Vec::new();
        for page in pages {
            let page = TargetPage::decode(page.data.unwrap_or_default().as_slice())
                .map_err(|e| ServiceError::Internal(format!("corrupt batch targets: {e}")))?;
            targets.extend(page.executions);
        }
        loop {
            let Some(job) = self.jobs.lock().get(key).cloned() else {
                return Ok(());
            };
            if !job.is_running() {
                return Ok(());
            }
            let cursor = usize::try_from(job.cursor).unwrap_or(usize::MAX);
            if cursor >= targets.len() {
                self.finish(key).await?;
                return Ok(());
            }
            let step_len = (job.rps.ceil() as usize).max(1);
            let end = cursor.saturating_add(step_len).min(targets.len());
            let began = tokio::time::Instant::now();
            let request = job.request.clone().unwrap_or_default();
            let outcomes: Vec<bool> = futures::stream::iter(cursor..end)
                .map(|i| {
                    let request = &request;
                    let identity = &job.identity;
                    let target = &targets[i];
                    async move {
                        match self.apply(request, identity, target, i).await {
                            Ok(()) => true,
                            Err(e) => {
                                tracing::warn!(job_id = %request.job_id, workflow_id = %target.workflow_id, run_id = %target.run_id, error = %e, "batch operation failed on a workflow");
                                false
                            }
                        }
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            let done = outcomes.iter().filter(|ok| **ok).count() as i64;
            let failed = outcomes.len() as i64 - done;
            let stored = self
                .change_job(key, |job| {
                    let Some(job) = job else {
                        return Ok(false);
                    };
                    job.cursor = end as i64;
                    job.complete += done;
                    job.failure += failed;
                    Ok(true)
                })
                .await?;
            if !stored {
                return Ok(());
            }
            let step = std::time::Duration::from_secs_f64((end - cursor) as f64 / job.rps);
            tokio::time::sleep_until(began + step).await;
        }
    }

    async fn finish(&self, key: &JobKey) -> Result<(), ServiceError> {
        self.change_job(key, |job| match job {
            Some(job) if job.is_running() => {
                job.state = BatchOperationState::Completed as i32;
                job.close_time_ms = self.history.clock().now_ms();
                Ok(true)
            }
            _ => Ok(false),
        })
        .await?;
        Ok(())
    }

    /// Applies the job's operation to one target (position `index` among the job's targets).
    async fn apply(
        &self,
        req: &StartBatchOperationRequest,
        identity: &str,
        target: &WorkflowExecution,
        index: usize,
    ) -> Result<(), ServiceError> {
        let ns = req.namespace.as_str();
        let run_id = Some(target.run_id.as_str()).filter(|r| !r.is_empty());
        let handle = self.history.handle(ns, &target.workflow_id, run_id).await;
        // Nothing left to do for a run that is gone (or already closed, below).
        let nothing_left = |e: ServiceError| match e {
            ServiceError::NotFound(_) => Ok(()),
            other => Err(other),
        };
        let reason = req.reason.clone();
        match &req.operation {
            Some(Operation::TerminationOperation(op)) => {
                let handle = match handle {
                    Ok(h) => h,
                    Err(e) => return nothing_left(e),
                };
                let details = op.details.clone();
                let identity = identity.to_string();
                self.history
                    .transition(
                        &handle,
                        move |t| t.terminate(&reason, details, &identity),
                        |_, ()| (),
                    )
                    .await
                    .or_else(nothing_left)
            }
            Some(Operation::CancellationOperation(_)) => {
                let handle = match handle {
                    Ok(h) => h,
                    Err(e) => return nothing_left(e),
                };
                let identity = identity.to_string();
                let request_id = format!("{}/{index}", req.job_id);
                self.history
                    .transition(
                        &handle,
                        move |t| t.client_request_cancel(&reason, &identity, &request_id),
                        |_, ()| (),
                    )
                    .await
                    .or_else(nothing_left)
            }
            Some(Operation::SignalOperation(op)) => {
                let handle = handle?;
                let signal = Signal {
                    name: op.signal.clone(),
                    input: op.input.clone(),
                    header: op.header.clone(),
                    identity: identity.to_string(),
                    request_id: format!("{}/{index}", req.job_id),
                    external: None,
                };
                self.history
                    .transition(&handle, move |t| t.signal(signal), |_, ()| ())
                    .await
            }
            Some(Operation::DeletionOperation(_)) => {
                let handle = match handle {
                    Ok(h) => h,
                    Err(e) => return nothing_left(e),
                };
                self.history.delete_run(&handle).await.or_else(nothing_left)
            }
            Some(Operation::ResetOperation(op)) => {
                let handle = handle?;
                let finish_event_id = self.reset_point(&handle, op).await?;
                let options = op.options.clone().unwrap_or_default();
                #[allow(deprecated)]
                let reapply_type = if options.reset_reapply_type != 0 {
                    options.reset_reapply_type
                } else {
                    op.reset_reapply_type
                };
                let reapply = sundial_engine::reset::reapply_kinds(
                    reapply_type,
                    &options.reset_reapply_exclude_types,
                )?;
                self.history
                    .reset_workflow(&ResetRequest {
                        namespace: ns.to_string(),
                        workflow_id: target.workflow_id.clone(),
                        base_run_id: handle.run_id.clone(),
                        finish_event_id,
                        request_id: format!("{}/{index}", req.job_id),
                        reason,
                        reapply,
                    })
                    .await
                    .map(|_| ())
            }
            Some(Operation::UpdateWorkflowOptionsOperation(op)) => {
                // Checked when the job started (`check_request`); a closed run is refused
                // as UpdateWorkflowExecutionOptions refuses it, which counts as a failure.
                let handle = handle?;
                let request = sundial_engine::workflow_options::OptionsUpdate {
                    options: op.workflow_execution_options.clone().unwrap_or_default(),
                    paths: op
                        .update_mask
                        .as_ref()
                        .map(|m| m.paths.clone())
                        .unwrap_or_default(),
                    identity: identity.to_string(),
                };
                let matching = self.history.matching();
                let since = self.history.now_ms() - crate::matching::POLLER_MEMORY_MS;
                let namespace = ns.to_string();
                self.history
                    .transition(
                        &handle,
                        move |t| {
                            let key = crate::matching::QueueKey {
                                namespace,
                                name: t.state.task_queue.clone(),
                                kind: crate::matching::TaskKind::Workflow,
                            };
                            let present = |v: &sundial_engine::api::deployment::v1::WorkerDeploymentVersion| {
                                matching.has_version(&key, &v.deployment_name, &v.build_id, since)
                            };
                            t.update_workflow_options(&request, &present).map(|_| ())
                        },
                        |_, ()| (),
                    )
                    .await
            }
            _ => Err(ServiceError::Unimplemented(
                "this batch operation is not supported".into(),
            )),
        }
    }

    /// The WorkflowTaskCompleted event a batch reset cuts at: the run's first or last one
    /// (ResetOptions, or the older reset type), or the one named.
    async fn reset_point(
        &self,
        handle: &Arc<crate::run::RunHandle>,
        op: &sundial_engine::api::batch::v1::BatchOperationReset,
    ) -> Result<i64, ServiceError> {
        use sundial_engine::api::common::v1::reset_options::Target;
        #[allow(deprecated)]
        let target = match op.options.as_ref().and_then(|o| o.target.clone()) {
            Some(target) => target,
            None if op.reset_type == ResetType::FirstWorkflowTask as i32 => {
                Target::FirstWorkflowTask(())
            }
            None if op.reset_type == ResetType::LastWorkflowTask as i32 => {
                Target::LastWorkflowTask(())
            }
            None => {
                return Err(ServiceError::InvalidArgument(
                    "a batch reset needs a reset target (first or last workflow task, or an event id)"
                        .into(),
                ));
            }
        };
        let completed_ids = self
            .history
            .read(handle, |e| {
                let last = e.committed_next_event_id() - 1;
                e.events.decode_range(1, last).map(|events| {
                    events
                        .into_iter()
                        .filter(|ev| ev.event_type == EventType::WorkflowTaskCompleted as i32)
                        .map(|ev| ev.event_id)
                        .collect::<Vec<_>>()
                })
            })
            .await??;
        let none = || {
            ServiceError::from(EngineError::InvalidArgument(
                "the workflow has no completed workflow task to reset to".into(),
            ))
        };
        match target {
            Target::FirstWorkflowTask(()) => completed_ids.first().copied().ok_or_else(none),
            Target::LastWorkflowTask(()) => completed_ids.last().copied().ok_or_else(none),
            Target::WorkflowTaskId(id) => Ok(id),
            Target::BuildId(_) => Err(ServiceError::Unimplemented(
                "batch reset to a build id is not supported".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sundial_store::testing::Fault;
    use sundial_store::{FaultyStore, SqliteStore, StoreError};

    /// A job with no targets.
    fn job(job_id: &str) -> BatchJob {
        BatchJob {
            request: Some(StartBatchOperationRequest {
                namespace: "default".into(),
                job_id: job_id.into(),
                ..Default::default()
            }),
            state: BatchOperationState::Running as i32,
            rps: 1.0,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_change_whose_commit_fails_leaves_the_job_as_stored() {
        let faulty = FaultyStore::new(Arc::new(SqliteStore::open(None).unwrap()));
        let history = crate::history::history_over(faulty.clone()).await;
        let batcher = Batcher::start(history, faulty.clone(), BatchSettings::default())
            .await
            .unwrap();
        // A failed start leaves no job behind.
        faulty.inject(
            1,
            Fault::Fail(StoreError::Backend("disk on fire".into())),
            |_| true,
        );
        assert!(batcher.submit(job("lost"), Vec::new()).await.is_err());
        assert!(batcher.get("default", "lost").is_none());
        // A job held still: stored and installed without a runner, which would otherwise
        // finish a job without targets at once and race the stops below.
        faulty
            .commit(WriteBatch {
                batch_jobs: vec![record_row(&job("j"))],
                fence: Some(batcher.history.fence("default", "j").unwrap()),
                ..Default::default()
            })
            .await
            .unwrap()
            .unwrap();
        batcher
            .jobs
            .lock()
            .insert(("default".into(), "j".into()), job("j"));
        // A stop whose commit fails changes nothing; the next one stops the job.
        let stored = batcher.get("default", "j").unwrap();
        faulty.inject(
            1,
            Fault::Fail(StoreError::Backend("disk on fire".into())),
            |_| true,
        );
        assert!(batcher.stop("default", "j").await.is_err());
        let after = batcher.get("default", "j").unwrap();
        assert_eq!(after.state, stored.state, "memory moved ahead of the store");
        batcher.stop("default", "j").await.unwrap();
        let stopped = batcher.get("default", "j").unwrap();
        assert_eq!(stopped.state, BatchOperationState::Failed as i32);
    }
}
