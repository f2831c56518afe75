//! Work that must not be abandoned with its caller.
//!
//! A gRPC handler's future is dropped when the client's deadline passes or it resets the
//! stream. Anything that commits and then installs the committed outcome in memory runs
//! through [`run_detached`], so once it has started it finishes (commit, install, wake-ups)
//! whether or not anyone still waits for the reply: memory and disk never disagree.

use crate::error::ServiceError;

/// Runs `work` to completion in a task of its own and returns its result to the caller, if the
/// caller is still there.
pub async fn run_detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, ServiceError>> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::spawn(work).await.map_err(|e| {
        ServiceError::Internal(format!(
            "a task carrying out a committed change failed: {e}"
        ))
    })?
}
