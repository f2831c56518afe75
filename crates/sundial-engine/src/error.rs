//! Errors a transition can return. Each maps to one gRPC status code in the frontend.

use thiserror::Error;

/// Why a transition was refused. A refused transition changes nothing.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum EngineError {
    /// The request is malformed (the frontend answers InvalidArgument).
    #[error("{0}")]
    InvalidArgument(String),
    /// The task, activity or execution it names is gone or was never there (NotFound).
    #[error("{0}")]
    NotFound(String),
    /// The execution is in a state where this is not allowed (FailedPrecondition).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A per-workflow limit is reached for now (ResourceExhausted, cause CONCURRENT_LIMIT).
    #[error("{0}")]
    ResourceExhausted(String),
    /// The workflow cannot take the request while its workflow task keeps failing
    /// (FailedPrecondition with a WorkflowNotReadyFailure detail).
    #[error("{0}")]
    WorkflowNotReady(String),
    /// The request uses something this server does not support yet (Unimplemented).
    #[error("{0}")]
    Unimplemented(String),
}
