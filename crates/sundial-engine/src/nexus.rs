//! Nexus operations a run calls: the ScheduleNexusOperation and RequestCancelNexusOperation
//! commands, the answers of the handler's workers, the handler workflow's completion callback,
//! retries and the schedule-to-close timeout.
//!
//! An operation's life, as the reference server writes it:
//! - the command writes NexusOperationScheduled and dispatches a *start request* to the task
//!   queue of the endpoint's worker target;
//! - a worker answers it synchronously (NexusOperationCompleted or NexusOperationFailed), or
//!   asynchronously with an operation token (NexusOperationStarted); the outcome of a started
//!   operation arrives later through the completion callback of the handler's workflow
//!   (Completed, Failed or Canceled);
//! - a handler error that may be retried, or a worker that does not answer within
//!   [`NEXUS_REQUEST_TIMEOUT_MS`], costs an attempt: the request is dispatched again after a
//!   backoff, until the schedule-to-close timeout (NexusOperationTimedOut);
//! - RequestCancelNexusOperation writes NexusOperationCancelRequested; once the operation has
//!   started (at once if it has), a *cancel request* is dispatched the same way, answered by
//!   NexusOperationCancelRequestCompleted or NexusOperationCancelRequestFailed.
//!
//! Handing a request to a worker is kept in memory only (as a workflow task's start of an
//! unwritten task): a crash dispatches the attempt again, which the handler deduplicates by the
//! operation's request id.

use crate::api::{
    command::v1::{
        RequestCancelNexusOperationCommandAttributes, ScheduleNexusOperationCommandAttributes,
    },
    common::v1::{Payload, link},
    enums::v1::{
        EventType, NexusHandlerErrorRetryBehavior, NexusOperationCancellationState,
        PendingNexusOperationState, TimeoutType, WorkflowTaskFailedCause as Cause,
    },
    failure::v1::{
        ApplicationFailureInfo, CanceledFailureInfo, Failure, NexusHandlerFailureInfo,
        NexusOperationFailureInfo, TimeoutFailureInfo, failure::FailureInfo,
    },
    history::v1::{
        NexusOperationCancelRequestCompletedEventAttributes,
        NexusOperationCancelRequestFailedEventAttributes,
        NexusOperationCancelRequestedEventAttributes, NexusOperationCanceledEventAttributes,
        NexusOperationCompletedEventAttributes, NexusOperationFailedEventAttributes,
        NexusOperationScheduledEventAttributes, NexusOperationStartedEventAttributes,
        NexusOperationTimedOutEventAttributes, history_event::Attributes,
    },
    nexus::v1::{self as nexus, start_operation_response::Variant as StartVariant},
};
use crate::commands::{Rejection, check_pending};
use crate::state::{NexusCancellationInfo, NexusHandlerWorkflow, NexusOperationInfo};
use crate::transition::BUFFERED_STARTED;
use crate::{Effect, EngineError, ExecutionState, Persist, Transition, time};
use std::collections::HashMap;

/// How long a worker has to answer a request it took (the reference server's
/// `component.nexusoperations.request.timeout`).
pub const NEXUS_REQUEST_TIMEOUT_MS: i64 = 10_000;
/// The first retry's backoff; it doubles with each attempt up to [`RETRY_MAX_MS`] (the
/// reference's `component.nexusoperations.retryPolicy.*`).
const RETRY_INITIAL_MS: i64 = 1_000;
const RETRY_MAX_MS: i64 = 60 * 60 * 1_000;
/// The message of every failure a caller sees for an operation that did not complete.
pub const OPERATION_FAILED_MESSAGE: &str = "nexus operation completed unsuccessfully";
/// Longest endpoint, service or operation name a command may carry.
const MAX_NAME_LENGTH: usize = 1_000;

/// Where an endpoint sends its requests, as the server's registry resolved it when the
/// command arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NexusTarget {
    pub endpoint_id: String,
    pub namespace: String,
    pub task_queue: String,
}

/// The endpoints a workflow task's commands name, by name (the operation's input).
pub type NexusEndpointTargets = HashMap<String, NexusTarget>;

/// One attempt of one request of an operation: what a Nexus task and its token name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NexusTaskRef {
    pub scheduled_event_id: i64,
    /// The cancel request (else the start request).
    pub cancel: bool,
    pub attempt: i32,
}

/// A handler's answer to a start request.
#[derive(Debug, Clone, PartialEq)]
pub enum StartAnswer {
    /// Completed synchronously with this result.
    Completed(Option<Payload>),
    /// Runs asynchronously; its outcome comes through the completion callback.
    Started {
        operation_token: String,
        links: Vec<nexus::Link>,
    },
    /// The operation failed (the cause the caller sees).
    Failed(Failure),
    /// The operation was canceled by its handler.
    Canceled(Failure),
    /// The handler could not process the request; `retryable` says whether another attempt
    /// may succeed.
    HandlerError { failure: Failure, retryable: bool },
}

/// How the workflow backing a started operation closed (its completion callback).
#[derive(Debug, Clone, PartialEq)]
pub enum HandlerOutcome {
    Completed(Option<Payload>),
    Failed(Failure),
    Canceled(Failure),
}

/// What the close event of a workflow backing an operation tells its caller (None: not a
/// close that ends the chain, such as continue-as-new). A terminated or timed-out handler
/// fails the operation.
pub fn handler_outcome(close: &crate::api::history::v1::HistoryEvent) -> Option<HandlerOutcome> {
    use crate::api::failure::v1::TerminatedFailureInfo;
    Some(match close.attributes.as_ref()? {
        Attributes::WorkflowExecutionCompletedEventAttributes(a) => {
            HandlerOutcome::Completed(a.result.as_ref().and_then(|r| r.payloads.first().cloned()))
        }
        Attributes::WorkflowExecutionFailedEventAttributes(a) => {
            HandlerOutcome::Failed(a.failure.clone().unwrap_or_default())
        }
        Attributes::WorkflowExecutionCanceledEventAttributes(a) => {
            HandlerOutcome::Canceled(Failure {
                message: "operation canceled".into(),
                failure_info: Some(FailureInfo::CanceledFailureInfo(CanceledFailureInfo {
                    details: a.details.clone(),
                    identity: String::new(),
                })),
                ..Default::default()
            })
        }
        Attributes::WorkflowExecutionTerminatedEventAttributes(a) => {
            HandlerOutcome::Failed(Failure {
                message: if a.reason.is_empty() {
                    "operation terminated".into()
                } else {
                    a.reason.clone()
                },
                failure_info: Some(FailureInfo::TerminatedFailureInfo(
                    TerminatedFailureInfo::default(),
                )),
                ..Default::default()
            })
        }
        Attributes::WorkflowExecutionTimedOutEventAttributes(_) => {
            HandlerOutcome::Failed(Failure {
                message: "operation exceeded internal timeout".into(),
                failure_info: Some(FailureInfo::TimeoutFailureInfo(TimeoutFailureInfo {
                    timeout_type: TimeoutType::StartToClose as i32,
                    last_heartbeat_details: None,
                })),
                ..Default::default()
            })
        }
        _ => return None,
    })
}

/// The answer a RespondNexusTaskCompleted carries for a start request.
pub fn start_answer(response: &nexus::StartOperationResponse) -> Result<StartAnswer, EngineError> {
    #[allow(deprecated)] // operation_id, operation_error: what older workers send
    match &response.variant {
        Some(StartVariant::SyncSuccess(sync)) => Ok(StartAnswer::Completed(sync.payload.clone())),
        Some(StartVariant::AsyncSuccess(started)) => {
            let operation_token = if started.operation_token.is_empty() {
                started.operation_id.clone()
            } else {
                started.operation_token.clone()
            };
            if operation_token.is_empty() {
                return Err(EngineError::InvalidArgument(
                    "an asynchronous start response must carry an operation token".into(),
                ));
            }
            Ok(StartAnswer::Started {
                operation_token,
                links: started.links.clone(),
            })
        }
        Some(StartVariant::OperationError(error)) => {
            let failure = error
                .failure
                .as_ref()
                .map(from_nexus_failure)
                .unwrap_or_default();
            if error.operation_state == "canceled" {
                Ok(StartAnswer::Canceled(canceled_failure(failure)))
            } else {
                Ok(StartAnswer::Failed(operation_error(failure)))
            }
        }
        Some(StartVariant::Failure(failure)) => {
            if matches!(
                failure.failure_info,
                Some(FailureInfo::CanceledFailureInfo(_))
            ) {
                Ok(StartAnswer::Canceled(failure.clone()))
            } else {
                Ok(StartAnswer::Failed(failure.clone()))
            }
        }
        None => Err(EngineError::InvalidArgument(
            "the start operation response carries no outcome".into(),
        )),
    }
}

/// The failure a RespondNexusTaskFailed reports, and whether another attempt may succeed: a
/// handler error's type decides (as Nexus defines them) unless the handler said otherwise.
#[allow(deprecated)] // `error`: what workers without temporal failure responses send
pub fn handler_error(
    failure: Option<&Failure>,
    error: Option<&nexus::HandlerError>,
) -> Result<(Failure, bool), EngineError> {
    if let Some(failure) = failure {
        let (kind, behavior) = match &failure.failure_info {
            Some(FailureInfo::NexusHandlerFailureInfo(info)) => {
                (info.r#type.clone(), info.retry_behavior)
            }
            _ => (String::new(), 0),
        };
        return Ok((failure.clone(), retryable(&kind, behavior)));
    }
    let Some(error) = error else {
        return Err(EngineError::InvalidArgument(
            "RespondNexusTaskFailed carries neither a failure nor an error".into(),
        ));
    };
    let cause = error.failure.as_ref().map(from_nexus_failure);
    let failure = Failure {
        message: cause
            .as_ref()
            .map(|c| c.message.clone())
            .unwrap_or_default(),
        failure_info: Some(FailureInfo::NexusHandlerFailureInfo(
            NexusHandlerFailureInfo {
                r#type: error.error_type.clone(),
                retry_behavior: error.retry_behavior,
            },
        )),
        ..Default::default()
    };
    Ok((failure, retryable(&error.error_type, error.retry_behavior)))
}

/// Whether a handler error of `kind` is retried (Nexus: bad request, authentication,
/// authorization, not found, conflict and not implemented are not; the rest are).
fn retryable(kind: &str, behavior: i32) -> bool {
    if behavior == NexusHandlerErrorRetryBehavior::Retryable as i32 {
        return true;
    }
    if behavior == NexusHandlerErrorRetryBehavior::NonRetryable as i32 {
        return false;
    }
    !matches!(
        kind,
        "BAD_REQUEST"
            | "UNAUTHENTICATED"
            | "UNAUTHORIZED"
            | "NOT_FOUND"
            | "CONFLICT"
            | "NOT_IMPLEMENTED"
    )
}

/// A Nexus failure (message, metadata, JSON details) as a Temporal failure.
fn from_nexus_failure(failure: &nexus::Failure) -> Failure {
    Failure {
        message: failure.message.clone(),
        stack_trace: failure.stack_trace.clone(),
        cause: failure
            .cause
            .as_deref()
            .map(|c| Box::new(from_nexus_failure(c))),
        ..Default::default()
    }
}

/// The cause the reference records for a failed operation reported as a plain error.
fn operation_error(cause: Failure) -> Failure {
    Failure {
        failure_info: Some(FailureInfo::ApplicationFailureInfo(
            ApplicationFailureInfo {
                r#type: "OperationError".into(),
                non_retryable: true,
                ..Default::default()
            },
        )),
        ..cause
    }
}

fn canceled_failure(cause: Failure) -> Failure {
    Failure {
        message: if cause.message.is_empty() {
            "operation canceled".into()
        } else {
            cause.message
        },
        failure_info: Some(FailureInfo::CanceledFailureInfo(
            CanceledFailureInfo::default(),
        )),
        ..Default::default()
    }
}

/// What the caller's workflow is given for an operation that did not complete: the
/// operation's identity around `cause`.
fn operation_failure(op: &NexusOperationInfo, cause: Failure) -> Failure {
    #[allow(deprecated)] // operation_id: still filled in by the reference
    Failure {
        message: OPERATION_FAILED_MESSAGE.into(),
        cause: Some(Box::new(cause)),
        failure_info: Some(FailureInfo::NexusOperationExecutionFailureInfo(
            NexusOperationFailureInfo {
                scheduled_event_id: op.scheduled_event_id,
                endpoint: op.endpoint.clone(),
                service: op.service.clone(),
                operation: op.operation.clone(),
                operation_id: op.operation_token.clone(),
                operation_token: op.operation_token.clone(),
            },
        )),
        ..Default::default()
    }
}

/// The backoff before attempt `attempt` (2 or more).
fn retry_backoff_ms(attempt: i32) -> i64 {
    let doublings = (attempt - 2).clamp(0, 32) as u32;
    RETRY_INITIAL_MS
        .saturating_mul(1_i64 << doublings)
        .min(RETRY_MAX_MS)
}

const SCHEDULED: i32 = PendingNexusOperationState::Scheduled as i32;
const BACKING_OFF: i32 = PendingNexusOperationState::BackingOff as i32;
const STARTED: i32 = PendingNexusOperationState::Started as i32;
const CANCEL_SCHEDULED: i32 = NexusOperationCancellationState::Scheduled as i32;
const CANCEL_BACKING_OFF: i32 = NexusOperationCancellationState::BackingOff as i32;

impl NexusOperationInfo {
    /// The start request waits in its queue for a worker.
    pub fn start_dispatchable(&self) -> bool {
        self.state == SCHEDULED && self.attempt_dispatched_ms == 0
    }

    /// The cancel request waits in its queue for a worker.
    pub fn cancel_dispatchable(&self) -> bool {
        self.state == STARTED
            && self
                .cancellation
                .as_ref()
                .is_some_and(|c| c.state == CANCEL_SCHEDULED && c.attempt_dispatched_ms == 0)
    }

    /// The operation's timeouts that apply in its current state, with when each passes.
    pub fn timeouts(&self) -> Vec<(i64, TimeoutType)> {
        let mut out = Vec::new();
        if self.schedule_to_close_ms > 0 {
            out.push((
                self.scheduled_time_ms + self.schedule_to_close_ms,
                TimeoutType::ScheduleToClose,
            ));
        }
        if self.state == STARTED {
            if self.start_to_close_ms > 0 && self.started_time_ms > 0 {
                out.push((
                    self.started_time_ms + self.start_to_close_ms,
                    TimeoutType::StartToClose,
                ));
            }
        } else if self.schedule_to_start_ms > 0 {
            out.push((
                self.scheduled_time_ms + self.schedule_to_start_ms,
                TimeoutType::ScheduleToStart,
            ));
        }
        out
    }

    /// When the current attempt of a request must be looked at again: the end of its backoff,
    /// or the request timeout of the worker that took it.
    pub fn attempt_deadline(&self) -> Option<(i64, bool, i32)> {
        if let Some(c) = self.cancellation.as_ref().filter(|_| self.state == STARTED) {
            return match c.state {
                CANCEL_BACKING_OFF => Some((c.next_attempt_time_ms, true, c.attempt)),
                CANCEL_SCHEDULED if c.attempt_dispatched_ms > 0 => Some((
                    c.attempt_dispatched_ms + NEXUS_REQUEST_TIMEOUT_MS,
                    true,
                    c.attempt,
                )),
                _ => None,
            };
        }
        match self.state {
            BACKING_OFF => Some((self.next_attempt_time_ms, false, self.attempt)),
            SCHEDULED if self.attempt_dispatched_ms > 0 => Some((
                self.attempt_dispatched_ms + NEXUS_REQUEST_TIMEOUT_MS,
                false,
                self.attempt,
            )),
            _ => None,
        }
    }
}

impl ExecutionState {
    /// The dispatch effect of an operation's waiting request, if one waits.
    pub(crate) fn nexus_dispatch(op: &NexusOperationInfo) -> Option<Effect> {
        let (cancel, attempt) = if op.start_dispatchable() {
            (false, op.attempt)
        } else if op.cancel_dispatchable() {
            (true, op.cancellation.as_ref().map_or(1, |c| c.attempt))
        } else {
            return None;
        };
        Some(Effect::DispatchNexusTask {
            namespace: op.target_namespace.clone(),
            task_queue: op.target_task_queue.clone(),
            scheduled_event_id: op.scheduled_event_id,
            cancel,
            attempt,
        })
    }
}

impl Transition<'_> {
    pub(crate) fn schedule_nexus_operation(
        &mut self,
        a: &ScheduleNexusOperationCommandAttributes,
        completed_id: i64,
    ) -> Result<(), Rejection> {
        let bad = |m: String| Rejection::new(Cause::BadScheduleNexusOperationAttributes, m);
        for (what, value) in [
            ("Endpoint", &a.endpoint),
            ("Service", &a.service),
            ("Operation", &a.operation),
        ] {
            if value.is_empty() {
                return Err(bad(format!("{what} is not set on command.")));
            }
            if value.len() > MAX_NAME_LENGTH {
                return Err(bad(format!(
                    "{what} exceeds length limit of {MAX_NAME_LENGTH}."
                )));
            }
        }
        let schedule_to_close = time::duration_ms(a.schedule_to_close_timeout.as_ref());
        let schedule_to_start_ms = time::duration_ms(a.schedule_to_start_timeout.as_ref());
        let start_to_close_ms = time::duration_ms(a.start_to_close_timeout.as_ref());
        for (what, ms) in [
            ("ScheduleToCloseTimeout", schedule_to_close),
            ("ScheduleToStartTimeout", schedule_to_start_ms),
            ("StartToCloseTimeout", start_to_close_ms),
        ] {
            if ms < 0 {
                return Err(bad(format!("{what} must not be negative.")));
            }
        }
        check_pending(
            self.state.nexus_operations.len(),
            self.limits.pending_nexus_operations,
            "pending Nexus operations",
            Cause::PendingNexusOperationsLimitExceeded,
        )?;
        let Some(target) = self.nexus_endpoints.get(&a.endpoint).cloned() else {
            return Err(bad(format!("endpoint {:?} not found", a.endpoint)));
        };
        // Capped by the run's own timeout, which stands for it when none is given (as the
        // reference: the timeout's length, not what is left of the run).
        let run_timeout = self.state.run_timeout_ms.max(0);
        let schedule_to_close_ms = match (schedule_to_close, run_timeout) {
            (0, run_timeout) => run_timeout,
            (own, 0) => own,
            (own, run_timeout) => own.min(run_timeout),
        };
        let scheduled_event_id = self.state.next_event_id;
        let request_id = nexus_request_id(&self.state.run_id, scheduled_event_id);
        self.append(Attributes::NexusOperationScheduledEventAttributes(
            NexusOperationScheduledEventAttributes {
                endpoint: a.endpoint.clone(),
                service: a.service.clone(),
                operation: a.operation.clone(),
                input: a.input.clone(),
                schedule_to_close_timeout: time::opt_duration(schedule_to_close_ms),
                nexus_header: a.nexus_header.clone(),
                workflow_task_completed_event_id: completed_id,
                request_id: request_id.clone(),
                endpoint_id: target.endpoint_id.clone(),
                schedule_to_start_timeout: a.schedule_to_start_timeout,
                start_to_close_timeout: a.start_to_close_timeout,
            },
        ));
        let op = NexusOperationInfo {
            scheduled_event_id,
            endpoint: a.endpoint.clone(),
            endpoint_id: target.endpoint_id,
            service: a.service.clone(),
            operation: a.operation.clone(),
            target_namespace: target.namespace,
            target_task_queue: target.task_queue,
            schedule_to_close_ms,
            scheduled_time_ms: self.now,
            request_id,
            state: SCHEDULED,
            attempt: 1,
            schedule_to_start_ms,
            start_to_close_ms,
            ..Default::default()
        };
        self.effects.extend(ExecutionState::nexus_dispatch(&op));
        self.state.nexus_operations.push(op);
        Ok(())
    }

    /// The RequestCancelNexusOperation command. The cancel request is sent once the
    /// operation has started (a handler can only cancel what it gave a token for): a start
    /// answered synchronously meanwhile completes the operation as usual. Writes nothing the
    /// workflow waits for, so it asks for no new workflow task.
    pub(crate) fn request_cancel_nexus_operation(
        &mut self,
        a: &RequestCancelNexusOperationCommandAttributes,
        completed_id: i64,
    ) -> Result<bool, Rejection> {
        let bad = |m: String| Rejection::new(Cause::BadRequestCancelNexusOperationAttributes, m);
        let id = a.scheduled_event_id;
        let Some(op) = self.state.nexus_operation(id).cloned() else {
            return Err(bad(format!(
                "requested cancelation for a non-existing or already completed operation with scheduled event ID of {id}"
            )));
        };
        if op.cancellation.is_some() {
            return Err(bad(format!(
                "cancelation was already requested for an operation with scheduled event ID {id}"
            )));
        }
        let requested_event_id =
            self.append(Attributes::NexusOperationCancelRequestedEventAttributes(
                NexusOperationCancelRequestedEventAttributes {
                    scheduled_event_id: id,
                    workflow_task_completed_event_id: completed_id,
                },
            ));
        let now = self.now;
        if let Some(op) = self.state.nexus_operation_mut(id) {
            op.cancellation = Some(NexusCancellationInfo {
                requested_event_id,
                requested_time_ms: now,
                state: CANCEL_SCHEDULED,
                attempt: 1,
                ..Default::default()
            });
        }
        // Only the cancel request: a start request still waiting was dispatched already.
        if self
            .state
            .nexus_operation(id)
            .is_some_and(NexusOperationInfo::cancel_dispatchable)
        {
            self.dispatch_nexus(id);
        }
        Ok(false)
    }

    fn dispatch_nexus(&mut self, scheduled_event_id: i64) {
        if let Some(effect) = self
            .state
            .nexus_operation(scheduled_event_id)
            .and_then(ExecutionState::nexus_dispatch)
        {
            self.effects.push(effect);
        }
    }

    /// The operation a worker's task names, while that attempt of that request is current.
    fn nexus_task(&self, task: NexusTaskRef) -> Result<NexusOperationInfo, EngineError> {
        let gone = || EngineError::NotFound("Nexus task not found or already expired".into());
        if !self.state.is_running() {
            return Err(gone());
        }
        let op = self
            .state
            .nexus_operation(task.scheduled_event_id)
            .ok_or_else(gone)?;
        let current = if task.cancel {
            op.state == STARTED
                && op
                    .cancellation
                    .as_ref()
                    .is_some_and(|c| c.state == CANCEL_SCHEDULED && c.attempt == task.attempt)
        } else {
            op.state == SCHEDULED && op.attempt == task.attempt
        };
        if current { Ok(op.clone()) } else { Err(gone()) }
    }

    /// A worker took the request: its request timeout starts. Kept in memory only.
    pub fn nexus_task_dispatched(&mut self, task: NexusTaskRef) -> Result<(), EngineError> {
        self.nexus_task(task)?;
        let now = self.now;
        if let Some(op) = self.state.nexus_operation_mut(task.scheduled_event_id) {
            match op.cancellation.as_mut().filter(|_| task.cancel) {
                Some(c) => c.attempt_dispatched_ms = now,
                None => op.attempt_dispatched_ms = now,
            }
        }
        self.persist = Persist::Nothing;
        Ok(())
    }

    /// A worker answered the start request `task`.
    pub fn nexus_start_answered(
        &mut self,
        task: NexusTaskRef,
        answer: StartAnswer,
    ) -> Result<(), EngineError> {
        if task.cancel {
            return Err(EngineError::InvalidArgument(
                "a cancel request was answered with a start response".into(),
            ));
        }
        let op = self.nexus_task(task)?;
        let id = op.scheduled_event_id;
        match answer {
            StartAnswer::Completed(result) => self.nexus_completed(&op, result),
            StartAnswer::Started {
                operation_token,
                links,
            } => {
                let handler = links.iter().find_map(|l| parse_workflow_link(&l.url));
                self.nexus_started(id, &operation_token, handler);
                // A cancellation requested meanwhile could not be sent before: it is now.
                self.dispatch_nexus(id);
                return Ok(());
            }
            StartAnswer::Failed(cause) => self.nexus_failed(&op, cause),
            StartAnswer::Canceled(cause) => self.nexus_canceled(&op, cause),
            StartAnswer::HandlerError { failure, retryable } => {
                if retryable {
                    self.retry_nexus_start(id, failure);
                    return Ok(());
                }
                self.nexus_failed(&op, failure);
            }
        }
        self.ensure_workflow_task();
        Ok(())
    }

    /// A worker answered the cancel request `task`: `Ok` when the handler accepted it, else
    /// its failure and whether another attempt may succeed.
    pub fn nexus_cancel_answered(
        &mut self,
        task: NexusTaskRef,
        answer: Result<(), (Failure, bool)>,
    ) -> Result<(), EngineError> {
        if !task.cancel {
            return Err(EngineError::InvalidArgument(
                "a start request was answered with a cancel response".into(),
            ));
        }
        let op = self.nexus_task(task)?;
        let id = op.scheduled_event_id;
        let requested_event_id = op.cancellation.as_ref().map_or(0, |c| c.requested_event_id);
        let now = self.now;
        let state = match answer {
            Ok(()) => {
                self.record(
                    Attributes::NexusOperationCancelRequestCompletedEventAttributes(
                        NexusOperationCancelRequestCompletedEventAttributes {
                            requested_event_id,
                            workflow_task_completed_event_id: 0,
                            scheduled_event_id: id,
                        },
                    ),
                );
                NexusOperationCancellationState::Succeeded
            }
            Err((failure, true)) => {
                if let Some(c) = self
                    .state
                    .nexus_operation_mut(id)
                    .and_then(|o| o.cancellation.as_mut())
                {
                    c.attempt += 1;
                    c.state = CANCEL_BACKING_OFF;
                    c.attempt_dispatched_ms = 0;
                    c.next_attempt_time_ms = now + retry_backoff_ms(c.attempt);
                    c.last_attempt_complete_time_ms = now;
                    c.last_attempt_failure = Some(failure);
                }
                return Ok(());
            }
            Err((failure, false)) => {
                self.record(
                    Attributes::NexusOperationCancelRequestFailedEventAttributes(
                        NexusOperationCancelRequestFailedEventAttributes {
                            requested_event_id,
                            workflow_task_completed_event_id: 0,
                            failure: Some(failure),
                            scheduled_event_id: id,
                        },
                    ),
                );
                NexusOperationCancellationState::Failed
            }
        };
        if let Some(c) = self
            .state
            .nexus_operation_mut(id)
            .and_then(|o| o.cancellation.as_mut())
        {
            c.state = state as i32;
            c.attempt_dispatched_ms = 0;
            c.last_attempt_complete_time_ms = now;
        }
        self.ensure_workflow_task();
        Ok(())
    }

    /// The workflow backing operation `scheduled_event_id` closed with `outcome` (its
    /// completion callback, or the check after a restart). An operation no longer pending
    /// changes nothing.
    pub fn nexus_handler_closed(
        &mut self,
        scheduled_event_id: i64,
        operation_token: &str,
        outcome: HandlerOutcome,
    ) -> Result<(), EngineError> {
        let Some(mut op) = self
            .state
            .nexus_operation(scheduled_event_id)
            .cloned()
            .filter(|_| self.state.is_running())
        else {
            self.persist = Persist::Nothing;
            return Ok(());
        };
        if op.state != STARTED {
            // The handler's workflow closed before its start was answered: both are recorded.
            self.nexus_started(scheduled_event_id, operation_token, None);
            op = self
                .state
                .nexus_operation(scheduled_event_id)
                .cloned()
                .unwrap_or(op);
        }
        match outcome {
            HandlerOutcome::Completed(result) => self.nexus_completed(&op, result),
            HandlerOutcome::Failed(cause) => self.nexus_failed(&op, cause),
            HandlerOutcome::Canceled(cause) => self.nexus_canceled(&op, cause),
        }
        self.ensure_workflow_task();
        Ok(())
    }

    fn nexus_started(
        &mut self,
        id: i64,
        operation_token: &str,
        handler: Option<NexusHandlerWorkflow>,
    ) {
        let request_id = self
            .state
            .nexus_operation(id)
            .map(|o| o.request_id.clone())
            .unwrap_or_default();
        let mut event = self.build_event(Attributes::NexusOperationStartedEventAttributes(
            #[allow(deprecated)] // operation_id: still filled in by the reference
            NexusOperationStartedEventAttributes {
                scheduled_event_id: id,
                operation_id: operation_token.to_string(),
                request_id,
                operation_token: operation_token.to_string(),
            },
        ));
        if let Some(h) = &handler {
            event.links.push(crate::api::common::v1::Link {
                variant: Some(link::Variant::WorkflowEvent(link::WorkflowEvent {
                    namespace: h.namespace.clone(),
                    workflow_id: h.workflow_id.clone(),
                    run_id: h.run_id.clone(),
                    reference: Some(link::workflow_event::Reference::EventRef(
                        link::workflow_event::EventReference {
                            event_id: 1,
                            event_type: EventType::WorkflowExecutionStarted as i32,
                        },
                    )),
                })),
            });
        }
        let buffered = self.state.workflow_task_started();
        let now = self.now;
        self.record_event(event);
        let started_event_id = if buffered {
            BUFFERED_STARTED
        } else {
            self.state.next_event_id - 1
        };
        if let Some(op) = self.state.nexus_operation_mut(id) {
            op.state = STARTED;
            op.operation_token = operation_token.to_string();
            op.started_event_id = started_event_id;
            op.attempt_dispatched_ms = 0;
            op.handler_workflow = handler;
            op.started_time_ms = now;
        }
        self.ensure_workflow_task();
    }

    fn nexus_completed(&mut self, op: &NexusOperationInfo, result: Option<Payload>) {
        self.record(Attributes::NexusOperationCompletedEventAttributes(
            NexusOperationCompletedEventAttributes {
                scheduled_event_id: op.scheduled_event_id,
                result,
                request_id: op.request_id.clone(),
            },
        ));
        self.state.remove_nexus_operation(op.scheduled_event_id);
    }

    fn nexus_failed(&mut self, op: &NexusOperationInfo, cause: Failure) {
        self.record(Attributes::NexusOperationFailedEventAttributes(
            NexusOperationFailedEventAttributes {
                scheduled_event_id: op.scheduled_event_id,
                failure: Some(operation_failure(op, cause)),
                request_id: op.request_id.clone(),
            },
        ));
        self.state.remove_nexus_operation(op.scheduled_event_id);
    }

    fn nexus_canceled(&mut self, op: &NexusOperationInfo, cause: Failure) {
        self.record(Attributes::NexusOperationCanceledEventAttributes(
            NexusOperationCanceledEventAttributes {
                scheduled_event_id: op.scheduled_event_id,
                failure: Some(operation_failure(op, cause)),
                request_id: op.request_id.clone(),
            },
        ));
        self.state.remove_nexus_operation(op.scheduled_event_id);
    }

    /// The start attempt failed in a way another attempt may not: the next one waits out its
    /// backoff (the schedule-to-close timeout ends the retries).
    fn retry_nexus_start(&mut self, id: i64, failure: Failure) {
        let now = self.now;
        if let Some(op) = self.state.nexus_operation_mut(id) {
            op.attempt += 1;
            op.state = BACKING_OFF;
            op.attempt_dispatched_ms = 0;
            op.next_attempt_time_ms = now + retry_backoff_ms(op.attempt);
            op.last_attempt_complete_time_ms = now;
            op.last_attempt_failure = Some(failure);
        }
    }

    /// An operation's attempt deadline fired (see [`NexusOperationInfo::attempt_deadline`]).
    pub(crate) fn nexus_attempt_due(&mut self, id: i64, cancel: bool, attempt: i32) {
        let Some(op) = self.state.nexus_operation(id).cloned() else {
            return;
        };
        let Some((at, due_cancel, due_attempt)) = op.attempt_deadline() else {
            return;
        };
        if (due_cancel, due_attempt) != (cancel, attempt) || self.now < at {
            return;
        }
        let timed_out = || Failure {
            message: "request timed out".into(),
            failure_info: Some(FailureInfo::TimeoutFailureInfo(TimeoutFailureInfo {
                timeout_type: TimeoutType::StartToClose as i32,
                last_heartbeat_details: None,
            })),
            ..Default::default()
        };
        let now = self.now;
        if cancel {
            if let Some(c) = self
                .state
                .nexus_operation_mut(id)
                .and_then(|o| o.cancellation.as_mut())
            {
                if c.state == CANCEL_BACKING_OFF {
                    c.state = CANCEL_SCHEDULED;
                } else {
                    c.attempt += 1;
                    c.state = CANCEL_BACKING_OFF;
                    c.attempt_dispatched_ms = 0;
                    c.next_attempt_time_ms = now + retry_backoff_ms(c.attempt);
                    c.last_attempt_complete_time_ms = now;
                    c.last_attempt_failure = Some(timed_out());
                }
            }
        } else if op.state == BACKING_OFF {
            if let Some(op) = self.state.nexus_operation_mut(id) {
                op.state = SCHEDULED;
            }
        } else {
            self.retry_nexus_start(id, timed_out());
        }
        self.dispatch_nexus(id);
    }

    /// One of the operation's timeouts (`TimeoutType` as i32) fired; it ends the operation if
    /// it still applies and has passed.
    pub(crate) fn nexus_timed_out(&mut self, id: i64, timeout_type: i32) {
        let Some(op) = self.state.nexus_operation(id).cloned() else {
            return;
        };
        let due = op
            .timeouts()
            .into_iter()
            .any(|(at, kind)| kind as i32 == timeout_type && self.now >= at);
        if !due {
            return;
        }
        let cause = Failure {
            message: "operation timed out".into(),
            failure_info: Some(FailureInfo::TimeoutFailureInfo(TimeoutFailureInfo {
                timeout_type,
                last_heartbeat_details: None,
            })),
            ..Default::default()
        };
        self.record(Attributes::NexusOperationTimedOutEventAttributes(
            NexusOperationTimedOutEventAttributes {
                scheduled_event_id: id,
                failure: Some(operation_failure(&op, cause)),
                request_id: op.request_id.clone(),
            },
        ));
        self.state.remove_nexus_operation(id);
        self.ensure_workflow_task();
    }
}

/// The request id of the operation scheduled at `scheduled_event_id` of run `run_id`: the
/// same for every attempt, so the handler can tell a retry from a new operation.
fn nexus_request_id(run_id: &str, scheduled_event_id: i64) -> String {
    format!("{run_id}-nexus-{scheduled_event_id}")
}

/// The workflow a `temporal:///namespaces/NS/workflows/WID/RID/history?...` link names.
pub fn parse_workflow_link(url: &str) -> Option<NexusHandlerWorkflow> {
    let rest = url.strip_prefix("temporal:///namespaces/")?;
    let path = rest.split('?').next()?;
    let mut parts = path.split('/');
    let namespace = percent_decode(parts.next()?)?;
    if parts.next()? != "workflows" {
        return None;
    }
    let workflow_id = percent_decode(parts.next()?)?;
    let run_id = percent_decode(parts.next()?)?;
    if namespace.is_empty() || workflow_id.is_empty() {
        return None;
    }
    Some(NexusHandlerWorkflow {
        namespace,
        workflow_id,
        run_id,
    })
}

/// The link to an event of a run, as Nexus requests carry it (`nexus-link` header and the
/// start request's links): `temporal:///namespaces/NS/workflows/WID/RID/history?eventID=N&...`.
pub fn workflow_event_link(
    namespace: &str,
    workflow_id: &str,
    run_id: &str,
    event_id: i64,
    event_type: EventType,
) -> String {
    let type_name = event_type
        .as_str_name()
        .strip_prefix("EVENT_TYPE_")
        .unwrap_or("");
    let camel: String = type_name
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(first) => first.to_string() + &c.as_str().to_lowercase(),
                None => String::new(),
            }
        })
        .collect();
    format!(
        "temporal:///namespaces/{}/workflows/{}/{}/history?eventID={event_id}&eventType={camel}&referenceType=EventReference",
        percent_encode(namespace),
        percent_encode(workflow_id),
        percent_encode(run_id),
    )
}

/// A path segment of a link: everything but RFC 3986's unreserved characters is escaped.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, PATH_SEGMENT).to_string()
}

fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_links_round_trip_through_their_url() {
        let url = workflow_event_link(
            "default",
            "order/42 ü",
            "r-1",
            5,
            EventType::NexusOperationScheduled,
        );
        assert!(url.contains("eventType=NexusOperationScheduled"), "{url}");
        let parsed = parse_workflow_link(&url).expect("parses");
        assert_eq!(parsed.namespace, "default");
        assert_eq!(parsed.workflow_id, "order/42 ü");
        assert_eq!(parsed.run_id, "r-1");
        assert_eq!(parse_workflow_link("http://example.com/x"), None);
        assert_eq!(
            parse_workflow_link("temporal:///namespaces/%FF/workflows/a/b"),
            None
        );
    }

    /// (handler error type, retry behavior) -> retried?
    #[test]
    fn handler_errors_are_retried_by_type_unless_the_handler_says_otherwise() {
        let retry = NexusHandlerErrorRetryBehavior::Retryable as i32;
        let never = NexusHandlerErrorRetryBehavior::NonRetryable as i32;
        for (kind, behavior, expected) in [
            ("BAD_REQUEST", 0, false),
            ("NOT_FOUND", 0, false),
            ("INTERNAL", 0, true),
            ("UNAVAILABLE", 0, true),
            ("", 0, true),
            ("BAD_REQUEST", retry, true),
            ("INTERNAL", never, false),
        ] {
            assert_eq!(retryable(kind, behavior), expected, "{kind} {behavior}");
        }
    }

    #[test]
    fn retries_back_off_from_a_second_doubling_to_an_hour() {
        assert_eq!(retry_backoff_ms(2), 1_000);
        assert_eq!(retry_backoff_ms(3), 2_000);
        assert_eq!(retry_backoff_ms(4), 4_000);
        assert_eq!(retry_backoff_ms(100), RETRY_MAX_MS);
    }
}
