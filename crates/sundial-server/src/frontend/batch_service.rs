//! The batch operation RPCs of `WorkflowService` (Start, Describe, List, Stop): validation,
//! resolving the targets, and the translation to and from the batcher (`crate::batch`).

use super::workflow_service::Frontend;
use crate::batch::{self, BatchJob};
use crate::error::ServiceError;
use prost::Message;
use sundial_engine::api::{
    batch::v1::BatchOperationInfo,
    common::v1::WorkflowExecution,
    enums::v1::{BatchOperationState, BatchOperationType, WorkflowExecutionStatus},
    workflow::v1::WorkflowExecutionInfo,
    workflowservice::v1::{
        DescribeBatchOperationRequest, DescribeBatchOperationResponse, ListBatchOperationsRequest,
        ListBatchOperationsResponse, StartBatchOperationRequest, StartBatchOperationResponse,
        StopBatchOperationRequest, StopBatchOperationResponse,
    },
};
use sundial_engine::time::timestamp;
use sundial_store::{list_query, predicate};

/// Longest job id accepted (room is left for the per-target request ids derived from it).
const MAX_JOB_ID_LENGTH: usize = 900;
/// Most runs one job may target.
const MAX_TARGETS: usize = 1_000_000;
/// Page size of ListBatchOperations when the request gives none (or more).
const MAX_LIST_PAGE: usize = 1000;

const MISSING_PARAMETERS: &str = "must provide required parameters: BatchType,Reason,Namespace, AND one of (Query OR Executions OR TargetExecutions)";

fn invalid(msg: impl Into<String>) -> ServiceError {
    ServiceError::InvalidArgument(msg.into())
}

fn check_job_id(job_id: &str) -> Result<(), ServiceError> {
    if job_id.is_empty() {
        return Err(invalid("JobId is not set on request."));
    }
    if job_id.len() > MAX_JOB_ID_LENGTH {
        return Err(invalid("JobId length exceeds limit."));
    }
    Ok(())
}

fn not_found(job_id: &str) -> ServiceError {
    ServiceError::NotFound(format!("workflow not found for ID: {job_id}"))
}

impl Frontend {
    pub(super) async fn start_batch_operation_rpc(
        &self,
        mut req: StartBatchOperationRequest,
    ) -> Result<StartBatchOperationResponse, ServiceError> {
        self.namespaces.check(&req.namespace)?;
        check_job_id(&req.job_id)?;
        #[allow(deprecated)] // executions: deprecated, still what clients send
        let listed = std::mem::take(&mut req.executions);
        let by_id: Vec<WorkflowExecution> = listed
            .into_iter()
            .chain(
                std::mem::take(&mut req.target_executions)
                    .into_iter()
                    .map(|e| WorkflowExecution {
                        workflow_id: e.business_id,
                        run_id: e.run_id,
                    }),
            )
            .collect();
        let Some(op) = req.operation.as_ref() else {
            return Err(invalid(MISSING_PARAMETERS));
        };
        if req.reason.is_empty() || (req.visibility_query.is_empty() && by_id.is_empty()) {
            return Err(invalid(MISSING_PARAMETERS));
        }
        if !req.visibility_query.is_empty() && !by_id.is_empty() {
            return Err(invalid(
                "a batch operation takes either a visibility query or executions, not both",
            ));
        }
        let Some(kind) = batch::operation_type(op) else {
            return Err(ServiceError::Unimplemented(
                "this batch operation type is not supported by this server".into(),
            ));
        };
        if let sundial_engine::api::workflowservice::v1::start_batch_operation_request::Operation::UpdateWorkflowOptionsOperation(o) = op {
            let paths = o.update_mask.as_ref().map(|m| m.paths.as_slice());
            sundial_engine::workflow_options::check_request(
                o.workflow_execution_options.as_ref(),
                paths,
            )?;
        }
        if let Some(e) = by_id.iter().find(|e| e.workflow_id.is_empty()) {
            return Err(invalid(format!(
                "an execution of the batch has no workflow ID (run ID \"{}\")",
                e.run_id
            )));
        }
        if req.max_operations_per_second < 0.0 || !req.max_operations_per_second.is_finite() {
            return Err(invalid(format!(
                "max_operations_per_second must be a positive number, not {}",
                req.max_operations_per_second
            )));
        }
        let targets = if by_id.is_empty() {
            let running_only = matches!(
                kind,
                BatchOperationType::TerminateWorkflow
                    | BatchOperationType::CancelWorkflow
                    | BatchOperationType::SignalWorkflow
            );
            self.batch_targets(&req.namespace, &req.visibility_query, running_only)
                .await?
        } else {
            by_id
        };
        if targets.len() > MAX_TARGETS {
            return Err(invalid(format!(
                "a batch operation may target at most {MAX_TARGETS} workflows; the query matches {}",
                targets.len()
            )));
        }
        let identity = batch::operation_identity(op);
        let rps = self.batches.rps_for(req.max_operations_per_second);
        let job = BatchJob {
            state: BatchOperationState::Running as i32,
            operation_type: kind as i32,
            identity,
            start_time_ms: self.history.clock().now_ms(),
            total: targets.len() as i64,
            rps,
            request: Some(req),
            ..Default::default()
        };
        self.batches.submit(job, targets).await?;
        Ok(StartBatchOperationResponse {})
    }

    /// The runs a visibility query matches now; with `running_only` (terminate, cancel,
    /// signal) only running ones, as the reference selects them (a job over closed runs has
    /// no targets).
    async fn batch_targets(
        &self,
        namespace: &str,
        query: &str,
        running_only: bool,
    ) -> Result<Vec<WorkflowExecution>, ServiceError> {
        let parsed = list_query::parse(query)
            .map_err(|e| invalid(format!("invalid visibility query: {e}")))?;
        let resolver = self.history.visibility.resolver(namespace);
        let query = predicate::resolve_query(&parsed, &resolver)
            .map_err(|e| invalid(format!("invalid visibility query: {e}")))?;
        let rows = self
            .history
            .store()
            .list_visibility(namespace, &query, MAX_TARGETS + 1, None)
            .await?
            .infos;
        let mut targets = Vec::with_capacity(rows.len());
        for row in &rows {
            let info = WorkflowExecutionInfo::decode(row.as_slice())
                .map_err(|e| ServiceError::Internal(format!("corrupt visibility record: {e}")))?;
            if running_only && info.status != WorkflowExecutionStatus::Running as i32 {
                continue;
            }
            targets.push(info.execution.unwrap_or_default());
        }
        Ok(targets)
    }

    pub(super) async fn describe_batch_operation_rpc(
        &self,
        req: DescribeBatchOperationRequest,
    ) -> Result<DescribeBatchOperationResponse, ServiceError> {
        self.namespaces.check(&req.namespace)?;
        check_job_id(&req.job_id)?;
        let job = self
            .batches
            .get(&req.namespace, &req.job_id)
            .ok_or_else(|| not_found(&req.job_id))?;
        let request = job.request.clone().unwrap_or_default();
        Ok(DescribeBatchOperationResponse {
            operation_type: job.operation_type,
            job_id: request.job_id,
            state: job.state,
            start_time: Some(timestamp(job.start_time_ms)),
            close_time: (job.close_time_ms > 0).then(|| timestamp(job.close_time_ms)),
            total_operation_count: job.total,
            complete_operation_count: job.complete,
            failure_operation_count: job.failure,
            identity: job.identity,
            reason: request.reason,
            query: request.visibility_query,
            executions: Vec::new(),
        })
    }

    pub(super) async fn list_batch_operations_rpc(
        &self,
        req: ListBatchOperationsRequest,
    ) -> Result<ListBatchOperationsResponse, ServiceError> {
        self.namespaces.check(&req.namespace)?;
        let page = match usize::try_from(req.page_size) {
            Ok(n) if n > 0 => n.min(MAX_LIST_PAGE),
            _ => MAX_LIST_PAGE,
        };
        let offset = if req.next_page_token.is_empty() {
            0
        } else {
            std::str::from_utf8(&req.next_page_token)
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| invalid("invalid next_page_token"))?
        };
        let jobs = self.batches.list(&req.namespace);
        let more = jobs.len() > offset.saturating_add(page);
        let operation_info = jobs
            .iter()
            .skip(offset)
            .take(page)
            .map(|job| BatchOperationInfo {
                job_id: job.job_id().to_string(),
                state: job.state,
                start_time: Some(timestamp(job.start_time_ms)),
                close_time: (job.close_time_ms > 0).then(|| timestamp(job.close_time_ms)),
                operation_type: job.operation_type,
            })
            .collect();
        Ok(ListBatchOperationsResponse {
            operation_info,
            next_page_token: if more {
                (offset + page).to_string().into_bytes()
            } else {
                Vec::new()
            },
        })
    }

    pub(super) async fn stop_batch_operation_rpc(
        &self,
        req: StopBatchOperationRequest,
    ) -> Result<StopBatchOperationResponse, ServiceError> {
        self.namespaces.check(&req.namespace)?;
        check_job_id(&req.job_id)?;
        if req.reason.is_empty() {
            return Err(invalid("Reason is not set on request."));
        }
        self.batches.stop(&req.namespace, &req.job_id).await?;
        Ok(StopBatchOperationResponse {})
    }
}
