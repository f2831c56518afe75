//! Service errors and their gRPC form: status codes plus Temporal's typed error details in
//! `grpc-status-details-bin`, which the SDKs switch on.

use prost::Message;
use sundial_engine::{EngineError, api};
use sundial_store::StoreError;
use thiserror::Error;
use tonic::{Code, Status};

#[derive(Debug, Error)]
pub enum ServiceError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("Namespace {0} is not found.")]
    NamespaceNotFound(String),
    #[error("Namespace already exists.")]
    NamespaceAlreadyExists,
    #[error("{0}")]
    AlreadyExistsPlain(String),
    #[error("Workflow execution is already running. WorkflowId: {workflow_id}, RunId: {run_id}.")]
    AlreadyStarted {
        workflow_id: String,
        run_id: String,
        start_request_id: String,
    },
    #[error("schedule {0:?} is already registered")]
    ScheduleAlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Unavailable(String),
    /// The store refused a write as stale; the run was reloaded and the call may be retried.
    #[error("{0}; the workflow was reloaded, retry the call")]
    Conflict(String),
    /// A per-workflow concurrency limit (cause CONCURRENT_LIMIT, scope NAMESPACE, as the
    /// reference server reports in-flight update limits).
    #[error("{0}")]
    ResourceExhausted(String),
    /// The workflow cannot take the request right now (cause BUSY_WORKFLOW, scope NAMESPACE):
    /// the reference server's answer to an update caught by a run that closed with a
    /// successor (continue-as-new, retry, cron). Clients retry it, and the retry reaches the
    /// new run.
    #[error("{0}")]
    BusyWorkflow(String),
    /// The workflow cannot take the request until its failing workflow task succeeds (detail
    /// WorkflowNotReadyFailure, code FailedPrecondition).
    #[error("{0}")]
    WorkflowNotReady(String),
    /// ExecuteMultiOperation failed: one status per operation, `None` for an operation that
    /// succeeded, [`OpError::Aborted`] for one not carried out because another failed. The
    /// overall code is the first operation error's that is not an abort.
    #[error("Update-with-Start could not be executed.")]
    MultiOperation(Vec<OpError>),
    #[error("Request unauthorized.")]
    PermissionDenied,
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{message}")]
    QueryFailed {
        message: String,
        failure: Option<Box<api::failure::v1::Failure>>,
    },
    #[error("{0}")]
    Internal(String),
}

/// One operation's result inside [`ServiceError::MultiOperation`].
#[derive(Debug)]
pub enum OpError {
    /// The operation succeeded (the other one failed).
    Ok,
    /// Not carried out because another operation failed.
    Aborted,
    Failed(Box<ServiceError>),
    /// Failed with a status of its own (the reference server's `Aborted` code, which asks the
    /// client to retry the whole request).
    AbortedRetryable(String),
}

impl From<EngineError> for ServiceError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::InvalidArgument(m) => ServiceError::InvalidArgument(m),
            EngineError::NotFound(m) => ServiceError::NotFound(m),
            EngineError::FailedPrecondition(m) => ServiceError::FailedPrecondition(m),
            EngineError::Unimplemented(m) => ServiceError::Unimplemented(m),
            EngineError::ResourceExhausted(m) => ServiceError::ResourceExhausted(m),
            EngineError::WorkflowNotReady(m) => ServiceError::WorkflowNotReady(m),
        }
    }
}

/// A store's typed errors as the client sees them: a stale write is a conflict (the run is
/// reloaded and the call may be retried), a run deleted meanwhile is not found, and the rest
/// (an unreachable or failed backend, a shard taken by another node) is Unavailable, which
/// clients retry.
impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ServiceError::Conflict(m),
            StoreError::NotFound(m) => ServiceError::NotFound(m),
            StoreError::InvalidInput(m) => ServiceError::InvalidArgument(m),
            other => ServiceError::Unavailable(other.to_string()),
        }
    }
}

fn any(type_name: &str, value: Vec<u8>) -> prost_wkt_types::Any {
    prost_wkt_types::Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value,
    }
}

/// ResourceExhausted with the reference's `ResourceExhaustedFailure` detail (namespace scope).
fn resource_exhausted(message: String, cause: api::enums::v1::ResourceExhaustedCause) -> Status {
    with_details(
        Code::ResourceExhausted,
        message,
        any(
            "temporal.api.errordetails.v1.ResourceExhaustedFailure",
            api::errordetails::v1::ResourceExhaustedFailure {
                cause: cause as i32,
                scope: api::enums::v1::ResourceExhaustedScope::Namespace as i32,
            }
            .encode_to_vec(),
        ),
    )
}

fn with_details(code: Code, message: String, detail: prost_wkt_types::Any) -> Status {
    let status = sundial_proto::google::rpc::Status {
        code: code as i32,
        message: message.clone(),
        details: vec![detail],
    };
    Status::with_details(code, message, status.encode_to_vec().into())
}

/// The status of a failed ExecuteMultiOperation: a MultiOperationExecutionFailure detail
/// with each operation's code, message and details, as the SDKs unpack it.
fn multi_operation_status(message: String, ops: Vec<OpError>) -> Status {
    use api::errordetails::v1::{
        MultiOperationExecutionFailure, multi_operation_execution_failure::OperationStatus,
    };
    let mut code = None;
    let statuses = ops
        .into_iter()
        .map(|op| {
            let (op_code, op_message, details) = match op {
                OpError::Ok => (Code::Ok, String::new(), Vec::new()),
                OpError::Aborted => (
                    Code::Aborted,
                    "Operation was aborted.".to_string(),
                    vec![any(
                        "temporal.api.failure.v1.MultiOperationExecutionAborted",
                        Vec::new(),
                    )],
                ),
                OpError::AbortedRetryable(m) => {
                    code.get_or_insert(Code::Aborted);
                    (Code::Aborted, m, Vec::new())
                }
                OpError::Failed(e) => {
                    let status = Status::from(*e);
                    code.get_or_insert(status.code());
                    let details = sundial_proto::google::rpc::Status::decode(status.details())
                        .map(|s| s.details)
                        .unwrap_or_default();
                    (status.code(), status.message().to_string(), details)
                }
            };
            OperationStatus {
                code: op_code as i32,
                message: op_message,
                details,
            }
        })
        .collect();
    let failure = MultiOperationExecutionFailure { statuses };
    with_details(
        code.unwrap_or(Code::Aborted),
        message,
        any(
            "temporal.api.errordetails.v1.MultiOperationExecutionFailure",
            failure.encode_to_vec(),
        ),
    )
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        use api::errordetails::v1 as details;
        let message = e.to_string();
        match e {
            ServiceError::InvalidArgument(_) => Status::invalid_argument(message),
            ServiceError::NotFound(_) => with_details(
                Code::NotFound,
                message,
                any(
                    "temporal.api.errordetails.v1.NotFoundFailure",
                    details::NotFoundFailure::default().encode_to_vec(),
                ),
            ),
            ServiceError::NamespaceNotFound(ns) => with_details(
                Code::NotFound,
                message,
                any(
                    "temporal.api.errordetails.v1.NamespaceNotFoundFailure",
                    details::NamespaceNotFoundFailure { namespace: ns }.encode_to_vec(),
                ),
            ),
            ServiceError::NamespaceAlreadyExists => with_details(
                Code::AlreadyExists,
                message,
                any(
                    "temporal.api.errordetails.v1.NamespaceAlreadyExistsFailure",
                    details::NamespaceAlreadyExistsFailure::default().encode_to_vec(),
                ),
            ),
            ServiceError::AlreadyStarted {
                run_id,
                start_request_id,
                ..
            } => with_details(
                Code::AlreadyExists,
                message,
                any(
                    "temporal.api.errordetails.v1.WorkflowExecutionAlreadyStartedFailure",
                    details::WorkflowExecutionAlreadyStartedFailure {
                        start_request_id,
                        run_id,
                        ..Default::default()
                    }
                    .encode_to_vec(),
                ),
            ),
            // The SDKs recognise a taken schedule id by this detail, as for a workflow id.
            ServiceError::ScheduleAlreadyExists(_) => with_details(
                Code::AlreadyExists,
                message,
                any(
                    "temporal.api.errordetails.v1.WorkflowExecutionAlreadyStartedFailure",
                    details::WorkflowExecutionAlreadyStartedFailure::default().encode_to_vec(),
                ),
            ),
            ServiceError::FailedPrecondition(_) => Status::failed_precondition(message),
            ServiceError::AlreadyExistsPlain(_) => Status::already_exists(message),
            ServiceError::Unimplemented(_) => Status::unimplemented(message),
            ServiceError::Unavailable(_) | ServiceError::Conflict(_) => {
                Status::unavailable(message)
            }
            ServiceError::ResourceExhausted(_) => resource_exhausted(
                message,
                api::enums::v1::ResourceExhaustedCause::ConcurrentLimit,
            ),
            ServiceError::BusyWorkflow(_) => resource_exhausted(
                message,
                api::enums::v1::ResourceExhaustedCause::BusyWorkflow,
            ),
            ServiceError::WorkflowNotReady(_) => with_details(
                Code::FailedPrecondition,
                message,
                any(
                    "temporal.api.errordetails.v1.WorkflowNotReadyFailure",
                    details::WorkflowNotReadyFailure::default().encode_to_vec(),
                ),
            ),
            ServiceError::MultiOperation(ops) => multi_operation_status(message, ops),
            ServiceError::PermissionDenied => Status::permission_denied(message),
            ServiceError::DeadlineExceeded(_) => Status::deadline_exceeded(message),
            ServiceError::QueryFailed { failure, .. } => with_details(
                Code::InvalidArgument,
                message,
                any(
                    "temporal.api.errordetails.v1.QueryFailedFailure",
                    details::QueryFailedFailure {
                        failure: failure.map(|f| *f),
                    }
                    .encode_to_vec(),
                ),
            ),
            ServiceError::Internal(_) => Status::internal(message),
        }
    }
}
