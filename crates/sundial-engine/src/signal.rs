//! Messages from outside a running workflow: signals and cancellation requests.

use crate::api::{
    common::v1::{Header, Payloads, WorkflowExecution},
    history::v1::{
        WorkflowExecutionCancelRequestedEventAttributes, WorkflowExecutionSignaledEventAttributes,
        history_event::Attributes,
    },
};
use crate::{EngineError, Persist, Transition};

/// Most distinct signal request ids remembered for deduplication.
const MAX_SIGNAL_REQUEST_IDS: usize = 10_000;

fn closed() -> EngineError {
    EngineError::NotFound("workflow execution already completed".into())
}

/// A signal as it arrives.
#[derive(Debug, Default, Clone)]
pub struct Signal {
    pub name: String,
    pub input: Option<Payloads>,
    pub header: Option<Header>,
    pub identity: String,
    pub request_id: String,
    /// The signalling workflow, for signals sent by SignalExternalWorkflowExecution.
    pub external: Option<WorkflowExecution>,
}

impl Transition<'_> {
    /// Records a signal and makes sure a workflow task will deliver it. A request id seen
    /// before makes this a no-op, so client retries do not deliver twice.
    pub fn signal(&mut self, signal: Signal) -> Result<(), EngineError> {
        if !self.state.is_running() {
            return Err(closed());
        }
        if signal.name.is_empty() {
            return Err(EngineError::InvalidArgument(
                "SignalName is not set on request.".into(),
            ));
        }
        crate::validate::signal_name(&signal.name).map_err(EngineError::InvalidArgument)?;
        if signal.request_id.len() > crate::validate::MAX_ID_LENGTH {
            return Err(EngineError::InvalidArgument(
                "RequestId length exceeds limit.".into(),
            ));
        }
        if !signal.request_id.is_empty() {
            if self.state.signal_request_ids.contains(&signal.request_id) {
                self.persist = Persist::Nothing;
                return Ok(());
            }
            if self.state.signal_request_ids.len() >= MAX_SIGNAL_REQUEST_IDS {
                self.state.signal_request_ids.remove(0);
            }
            self.state
                .signal_request_ids
                .push(signal.request_id.clone());
        }
        self.record(Attributes::WorkflowExecutionSignaledEventAttributes(
            WorkflowExecutionSignaledEventAttributes {
                signal_name: signal.name,
                input: signal.input,
                identity: signal.identity,
                header: signal.header,
                external_workflow_execution: signal.external,
                request_id: signal.request_id,
                ..Default::default()
            },
        ));
        self.ensure_workflow_task();
        Ok(())
    }

    /// RequestCancelWorkflowExecution: the workflow is told and decides what to do. Repeated
    /// requests change nothing.
    /// RequestCancelWorkflowExecution from a client. As on the reference server, asking to
    /// cancel a run that already closed succeeds and changes nothing.
    pub fn client_request_cancel(
        &mut self,
        reason: &str,
        identity: &str,
        request_id: &str,
    ) -> Result<(), EngineError> {
        if !self.state.is_running() {
            self.persist = Persist::Nothing;
            return Ok(());
        }
        self.request_cancel(reason, identity, request_id, None)
    }

    pub fn request_cancel(
        &mut self,
        reason: &str,
        identity: &str,
        request_id: &str,
        external: Option<(i64, WorkflowExecution)>,
    ) -> Result<(), EngineError> {
        // Cancellation is idempotent: a run whose cancellation was requested already has it,
        // closed or not (the reference server reports a request to cancel such a closed run,
        // e.g. one a reset's new run sends again, as delivered).
        if self.state.cancel_requested {
            self.persist = Persist::Nothing;
            return Ok(());
        }
        if !self.state.is_running() {
            return Err(closed());
        }
        self.state.cancel_requested = true;
        self.state.cancel_request_id = request_id.to_string();
        let (external_initiated_event_id, external_workflow_execution) = match external {
            Some((id, execution)) => (id, Some(execution)),
            None => (0, None),
        };
        self.record(Attributes::WorkflowExecutionCancelRequestedEventAttributes(
            WorkflowExecutionCancelRequestedEventAttributes {
                cause: reason.to_string(),
                external_initiated_event_id,
                external_workflow_execution,
                identity: identity.to_string(),
            },
        ));
        self.ensure_workflow_task();
        Ok(())
    }
}
