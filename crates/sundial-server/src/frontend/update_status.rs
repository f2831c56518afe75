//! Where an update of a run stands, for the update RPCs: from the run's update registry
//! (admitted, not yet decided), its state (accepted) or its history (completed), and what a
//! closed run answers for updates it did not finish.

use crate::run::RunEntry;
use sundial_engine::api::{
    enums::v1::UpdateWorkflowExecutionLifecycleStage as Stage,
    history::v1::history_event::Attributes, update::v1::Outcome,
};

/// The reference server's error for an update admitted to a run that closed for good before
/// accepting it.
pub const ABORTED_BY_CLOSING: &str = "workflow update was aborted by closing workflow";

/// The reference server's error for an update admitted to a run that closed with a successor
/// before accepting it (ResourceExhausted, BUSY_WORKFLOW): clients retry, and the retry, which
/// names the workflow id, reaches the new run.
pub const WORKFLOW_CLOSING: &str =
    "workflow operation can not be applied because workflow is closing";

/// Where an update stands, from memory, the run's state, or its history. On a closed run,
/// updates it took no decision on are answered as the reference server aborts them
/// ([`sundial_engine::update::closed_run_update`]): an accepted one is completed with a
/// server failure, an admitted one is an error (retryable when the run has a successor).
pub fn status(
    entry: &RunEntry,
    update_id: &str,
) -> Result<Option<(i32, Option<Outcome>)>, crate::error::ServiceError> {
    use crate::error::ServiceError;
    use sundial_engine::update::{ClosedRunUpdate, closed_run_update};
    let known = entry.updates.lock().status(update_id);
    if let Some(known) = known {
        if known.0 < Stage::Completed as i32 {
            match closed_run_update(&entry.state, false) {
                Some(ClosedRunUpdate::Continuing) => {
                    return Err(ServiceError::BusyWorkflow(WORKFLOW_CLOSING.into()));
                }
                Some(_) => return Err(ServiceError::NotFound(ABORTED_BY_CLOSING.into())),
                None => {}
            }
        }
        return Ok(Some(known));
    }
    if is_admitted_in_history(entry, update_id) {
        match closed_run_update(&entry.state, false) {
            Some(ClosedRunUpdate::Continuing) => {
                return Err(ServiceError::BusyWorkflow(WORKFLOW_CLOSING.into()));
            }
            Some(_) => return Err(ServiceError::NotFound(ABORTED_BY_CLOSING.into())),
            None => return Ok(Some((Stage::Admitted as i32, None))),
        }
    }
    if is_accepted(entry, update_id) {
        if closed_run_update(&entry.state, true) == Some(ClosedRunUpdate::Failed) {
            let outcome = sundial_engine::update::accepted_update_completed_workflow();
            return Ok(Some((Stage::Completed as i32, Some(outcome))));
        }
        return Ok(Some((Stage::Accepted as i32, None)));
    }
    Ok(completed_outcome(entry, update_id)?.map(|outcome| (Stage::Completed as i32, outcome)))
}

/// Admitted through history (an UpdateAdmitted event a reset wrote) and not decided yet.
fn is_admitted_in_history(entry: &RunEntry, update_id: &str) -> bool {
    entry
        .state
        .admitted_updates
        .iter()
        .any(|u| u.update_id == update_id)
}

fn is_accepted(entry: &RunEntry, update_id: &str) -> bool {
    entry
        .state
        .accepted_updates
        .iter()
        .any(|u| u.update_id == update_id)
}

/// Whether the run holds the update admitted or accepted and not completed (what the
/// reference server's registry holds), so a new request for it attaches to it.
pub fn in_flight(entry: &RunEntry, update_id: &str) -> bool {
    entry
        .updates
        .lock()
        .status(update_id)
        .is_some_and(|(stage, _)| stage < Stage::Completed as i32)
        || is_admitted_in_history(entry, update_id)
        || is_accepted(entry, update_id)
}

/// The outcome of an update the run completed (from its UpdateCompleted event).
pub fn completed_outcome(
    entry: &RunEntry,
    update_id: &str,
) -> Result<Option<Option<Outcome>>, crate::error::ServiceError> {
    entry.events.find_newest(|e| match e.attributes {
        Some(Attributes::WorkflowExecutionUpdateCompletedEventAttributes(a))
            if a.meta.as_ref().is_some_and(|m| m.update_id == update_id) =>
        {
            Some(a.outcome)
        }
        _ => None,
    })
}
