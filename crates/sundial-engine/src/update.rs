//! Workflow updates: requests reach the workflow as protocol messages on a workflow task; the
//! worker answers with Acceptance / Rejection / Response messages. Accepted and completed
//! updates are written to history (WorkflowExecutionUpdateAccepted / Completed) where the
//! worker's ProtocolMessage commands place them; a rejected update leaves no trace.

use crate::api::{
    enums::v1::WorkflowTaskFailedCause as Cause,
    failure::v1::Failure,
    history::v1::{
        WorkflowExecutionUpdateAcceptedEventAttributes,
        WorkflowExecutionUpdateCompletedEventAttributes, history_event::Attributes,
    },
    protocol::v1::Message,
    update::v1::{Acceptance, Outcome, Rejection as UpdateRejection, Response},
};
use crate::commands::Rejection;
use crate::state::{AcceptedUpdate, ExecutionState};
use crate::{EngineError, Persist, Transition};
use prost::Message as _;

/// A workflow task failing this many times in a row makes new updates fail fast, as in the
/// reference server: an update cannot repair the workflow (its messages are applied after the
/// task's events) and would only wait for the task to succeed.
pub const FAIL_UPDATE_WORKFLOW_TASK_ATTEMPT: i32 = 3;

/// What happened to an update the run did not complete when it closed. The reference server
/// aborts such updates; its answer depends on how far the update got and how the run closed.
#[derive(Debug, Clone, PartialEq)]
pub enum ClosedRunUpdate {
    /// Accepted and never completed: the update is completed with a server failure
    /// ([`accepted_update_completed_workflow`]), whether or not the run has a successor (an
    /// accepted update cannot move to another run).
    Failed,
    /// Admitted (or delivered) and not accepted, and the run closed with a successor
    /// (continue-as-new, retry, cron): a retryable error, and the client's retry reaches the
    /// new run.
    Continuing,
    /// Admitted and not accepted, and the run closed for good: a NotFound error.
    Aborted,
}

/// The answer for an update the run took no decision on (`accepted` tells whether it was
/// accepted) once `state` is closed; `None` while the run is running.
pub fn closed_run_update(state: &ExecutionState, accepted: bool) -> Option<ClosedRunUpdate> {
    if state.is_running() {
        return None;
    }
    Some(if accepted {
        ClosedRunUpdate::Failed
    } else if !state.new_execution_run_id.is_empty() {
        ClosedRunUpdate::Continuing
    } else {
        ClosedRunUpdate::Aborted
    })
}

/// The outcome the reference server gives an accepted update whose workflow closed before the
/// update completed (type `AcceptedUpdateCompletedWorkflow`, non-retryable, source "Server").
pub fn accepted_update_completed_workflow() -> Outcome {
    use crate::api::failure::v1::{ApplicationFailureInfo, failure::FailureInfo};
    Outcome {
        value: Some(crate::api::update::v1::outcome::Value::Failure(Failure {
            message:
                "Workflow Update failed because the Workflow completed before the Update completed."
                    .into(),
            source: "Server".into(),
            failure_info: Some(FailureInfo::ApplicationFailureInfo(
                ApplicationFailureInfo {
                    r#type: "AcceptedUpdateCompletedWorkflow".into(),
                    non_retryable: true,
                    ..Default::default()
                },
            )),
            ..Default::default()
        })),
    }
}

/// What a workflow task completion did to an update.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateResult {
    Accepted {
        update_id: String,
    },
    Rejected {
        update_id: String,
        failure: Option<Failure>,
    },
    Completed {
        update_id: String,
        outcome: Option<Outcome>,
    },
}

/// The decoded body of a protocol message from a worker.
enum Body {
    Acceptance(Acceptance),
    Rejection(UpdateRejection),
    Response(Response),
}

fn decode(message: &Message) -> Result<Body, Rejection> {
    let bad = |m: String| Rejection::new(Cause::BadUpdateWorkflowExecutionMessage, m);
    let body = message
        .body
        .as_ref()
        .ok_or_else(|| bad(format!("protocol message {} has no body", message.id)))?;
    let kind = body.type_url.rsplit('/').next().unwrap_or_default();
    let value = body.value.as_slice();
    let err = |e: prost::DecodeError| bad(format!("protocol message {}: {e}", message.id));
    Ok(match kind {
        "temporal.api.update.v1.Acceptance" => {
            Body::Acceptance(Acceptance::decode(value).map_err(err)?)
        }
        "temporal.api.update.v1.Rejection" => {
            Body::Rejection(UpdateRejection::decode(value).map_err(err)?)
        }
        "temporal.api.update.v1.Response" => Body::Response(Response::decode(value).map_err(err)?),
        other => return Err(bad(format!("unsupported protocol message type {other}"))),
    })
}

impl Transition<'_> {
    /// Applies one protocol message; returns what happened to its update.
    pub(crate) fn apply_protocol_message(
        &mut self,
        message: &Message,
    ) -> Result<UpdateResult, Rejection> {
        let update_id = message.protocol_instance_id.clone();
        match decode(message)? {
            Body::Rejection(r) => {
                self.state
                    .admitted_updates
                    .retain(|u| u.update_id != update_id);
                Ok(UpdateResult::Rejected {
                    update_id,
                    failure: r.failure,
                })
            }
            Body::Acceptance(a) => {
                // An update admitted through history (reapplied by a reset) is accepted like
                // one the registry delivered; its request is in the UpdateAdmitted event, so
                // the acceptance does not repeat it (as the reference server writes it).
                let admitted_in_history = self
                    .state
                    .admitted_updates
                    .iter()
                    .any(|u| u.update_id == update_id);
                self.state
                    .admitted_updates
                    .retain(|u| u.update_id != update_id);
                if self
                    .state
                    .accepted_updates
                    .iter()
                    .any(|u| u.update_id == update_id)
                {
                    return Ok(UpdateResult::Accepted { update_id });
                }
                let accepted_event_id =
                    self.append(Attributes::WorkflowExecutionUpdateAcceptedEventAttributes(
                        WorkflowExecutionUpdateAcceptedEventAttributes {
                            protocol_instance_id: update_id.clone(),
                            accepted_request_message_id: a.accepted_request_message_id,
                            accepted_request_sequencing_event_id: a
                                .accepted_request_sequencing_event_id,
                            accepted_request: if admitted_in_history {
                                None
                            } else {
                                a.accepted_request
                            },
                        },
                    ));
                self.state.accepted_updates.push(AcceptedUpdate {
                    update_id: update_id.clone(),
                    accepted_event_id,
                });
                Ok(UpdateResult::Accepted { update_id })
            }
            Body::Response(r) => {
                let Some(accepted) = self
                    .state
                    .accepted_updates
                    .iter()
                    .find(|u| u.update_id == update_id)
                    .cloned()
                else {
                    return Err(Rejection::new(
                        Cause::BadUpdateWorkflowExecutionMessage,
                        format!("response for update {update_id}, which was not accepted"),
                    ));
                };
                self.append(Attributes::WorkflowExecutionUpdateCompletedEventAttributes(
                    WorkflowExecutionUpdateCompletedEventAttributes {
                        meta: r.meta,
                        accepted_event_id: accepted.accepted_event_id,
                        outcome: r.outcome.clone(),
                    },
                ));
                self.state
                    .accepted_updates
                    .retain(|u| u.update_id != update_id);
                self.state.completed_update_count += 1;
                Ok(UpdateResult::Completed {
                    update_id,
                    outcome: r.outcome,
                })
            }
        }
    }

    /// An update request for an id the run already knows: nothing changes (the caller waits
    /// for the known update's outcome).
    pub fn update_already_known(&mut self) {
        self.persist = Persist::Nothing;
    }

    /// Whether one more update may be admitted, `admitted` being the updates admitted to the
    /// run and not yet accepted or rejected (the caller keeps them). As the reference server:
    /// past `history.maxInFlightUpdates` updates admitted or accepted and not completed the
    /// answer is ResourceExhausted; past `history.maxTotalUpdates` updates in the run it is
    /// FailedPrecondition.
    pub fn check_update_admission(&self, admitted: usize) -> Result<(), EngineError> {
        let in_flight = i64::try_from(
            admitted + self.state.admitted_updates.len() + self.state.accepted_updates.len(),
        )
        .unwrap_or(i64::MAX);
        let max_in_flight = self.limits.max_in_flight_updates;
        if max_in_flight > 0 && in_flight >= max_in_flight {
            return Err(EngineError::ResourceExhausted(format!(
                "limit on number of concurrent in-flight updates has been reached ({max_in_flight})"
            )));
        }
        let max_total = self.limits.max_total_updates;
        if max_total > 0 && in_flight.saturating_add(self.state.completed_update_count) >= max_total
        {
            return Err(EngineError::FailedPrecondition(format!(
                "The limit on the total number of distinct updates in this workflow has been reached ({max_total}). \
                 Make sure any duplicate updates share an Update ID so the server can deduplicate them, \
                 and consider rejecting updates that you aren't going to process. \
                 You can also Continue-as-New to avoid this; we recommend you check Continue-as-New Suggested in your Workflow."
            )));
        }
        Ok(())
    }

    /// Checks made before an update request is looked at, in the reference server's order
    /// for a running run: the request's `first_execution_run_id` (when set) must be this
    /// run's chain (NotFound "workflow execution not found"), and a workflow task that failed
    /// [`FAIL_UPDATE_WORKFLOW_TASK_ATTEMPT`] times in a row fails the update fast.
    pub fn check_update_target(&self, first_execution_run_id: &str) -> Result<(), EngineError> {
        if !first_execution_run_id.is_empty()
            && self.state.first_execution_run_id != first_execution_run_id
        {
            return Err(EngineError::NotFound("workflow execution not found".into()));
        }
        if self.state.is_running()
            && self
                .state
                .workflow_task
                .as_ref()
                .is_some_and(|wt| wt.attempt >= FAIL_UPDATE_WORKFLOW_TASK_ATTEMPT)
        {
            return Err(EngineError::WorkflowNotReady(
                "Unable to perform workflow execution update due to Workflow Task in failed state."
                    .into(),
            ));
        }
        Ok(())
    }

    /// Whether the run's updates (admitted, accepted, completed) reached 90% of
    /// `history.maxTotalUpdates` (the reference server's default
    /// `history.maxTotalUpdates.suggestContinueAsNewThreshold`, rounded up): workflow tasks
    /// then suggest continue-as-new with reason TOO_MANY_UPDATES.
    pub(crate) fn updates_near_total_limit(&self) -> bool {
        let max_total = self.limits.max_total_updates;
        if max_total <= 0 {
            return false;
        }
        let threshold = max_total.saturating_mul(9).saturating_add(9) / 10;
        let in_flight = i64::try_from(
            self.pending_update_ids.len()
                + self.state.admitted_updates.len()
                + self.state.accepted_updates.len(),
        )
        .unwrap_or(i64::MAX);
        in_flight.saturating_add(self.state.completed_update_count) >= threshold
    }

    /// An update was admitted: make sure a workflow task will carry it. Without other work a
    /// speculative task is used, which leaves no trace if the update is rejected.
    pub fn request_update_task(&mut self) {
        self.persist = Persist::Nothing;
        if self.state.workflow_task.is_none()
            && self.state.is_running()
            && self.state.backoff_until_ms <= self.now
        {
            self.schedule_workflow_task_with(1, true);
        }
    }
}
