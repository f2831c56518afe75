//! Work that reaches other workflows: child workflows, signals and cancellation requests to
//! external workflows. Each is initiated by a command (an event and an effect), performed by
//! the caller after the commit, and its outcome comes back as a transition on this run.

// The API marks `namespace`, `control` and a few other fields deprecated; the reference server
// still writes them, and so do we.
#![allow(deprecated)]

use crate::api::{
    command::v1::{
        RequestCancelExternalWorkflowExecutionCommandAttributes,
        SignalExternalWorkflowExecutionCommandAttributes,
        StartChildWorkflowExecutionCommandAttributes,
    },
    common::v1::{WorkflowExecution, WorkflowType},
    enums::v1::{
        CancelExternalWorkflowExecutionFailedCause, ParentClosePolicy,
        SignalExternalWorkflowExecutionFailedCause, StartChildWorkflowExecutionFailedCause,
        WorkflowTaskFailedCause as Cause,
    },
    history::v1::{
        ChildWorkflowExecutionCanceledEventAttributes,
        ChildWorkflowExecutionCompletedEventAttributes,
        ChildWorkflowExecutionFailedEventAttributes, ChildWorkflowExecutionStartedEventAttributes,
        ChildWorkflowExecutionTerminatedEventAttributes,
        ChildWorkflowExecutionTimedOutEventAttributes,
        ExternalWorkflowExecutionCancelRequestedEventAttributes,
        ExternalWorkflowExecutionSignaledEventAttributes, HistoryEvent,
        RequestCancelExternalWorkflowExecutionFailedEventAttributes,
        RequestCancelExternalWorkflowExecutionInitiatedEventAttributes,
        SignalExternalWorkflowExecutionFailedEventAttributes,
        SignalExternalWorkflowExecutionInitiatedEventAttributes,
        StartChildWorkflowExecutionFailedEventAttributes,
        StartChildWorkflowExecutionInitiatedEventAttributes, history_event::Attributes,
    },
    taskqueue::v1::TaskQueue,
    workflowservice::v1::StartWorkflowExecutionRequest,
};
use crate::commands::{Rejection, check_pending};
use crate::state::{ChildInfo, ExternalCancelInfo, ExternalSignalInfo};
use crate::transition::BUFFERED_STARTED;
use crate::{Effect, EngineError, ExecutionState, ParentInfo, Persist, Transition};

impl ExecutionState {
    /// The start of the child initiated at `initiated_event_id`, while it waits to be started:
    /// the request (its request id made of this run and the event, so a retried start is the
    /// same start) and the child's link to this run, with the parent close policy defaulting
    /// to TERMINATE as on the reference server. None once it has started or when no such
    /// child is pending.
    pub fn child_start(
        &self,
        initiated_event_id: i64,
    ) -> Option<(StartWorkflowExecutionRequest, ParentInfo)> {
        let child = self.child(initiated_event_id)?;
        if !child.run_id.is_empty() {
            return None;
        }
        let command = child.command.clone().unwrap_or_default();
        let (root_workflow_id, root_run_id) = match &self.parent {
            Some(p) => (p.root_workflow_id.clone(), p.root_run_id.clone()),
            None => (self.workflow_id.clone(), self.run_id.clone()),
        };
        let close_policy = match command.parent_close_policy {
            p if p == ParentClosePolicy::Unspecified as i32 => ParentClosePolicy::Terminate as i32,
            p => p,
        };
        let parent = ParentInfo {
            namespace: self.namespace.clone(),
            workflow_id: self.workflow_id.clone(),
            run_id: self.run_id.clone(),
            initiated_event_id,
            close_policy,
            root_workflow_id,
            root_run_id,
        };
        let request = StartWorkflowExecutionRequest {
            identity: format!("parent:{}", self.workflow_id),
            request_id: format!("{}/{}", self.run_id, initiated_event_id),
            namespace: command.namespace,
            workflow_id: command.workflow_id,
            workflow_type: command.workflow_type,
            task_queue: command.task_queue,
            input: command.input,
            workflow_execution_timeout: command.workflow_execution_timeout,
            workflow_run_timeout: command.workflow_run_timeout,
            workflow_task_timeout: command.workflow_task_timeout,
            workflow_id_reuse_policy: command.workflow_id_reuse_policy,
            retry_policy: command.retry_policy,
            cron_schedule: command.cron_schedule,
            memo: command.memo,
            search_attributes: command.search_attributes,
            header: command.header,
            priority: command.priority,
            user_metadata: child.user_metadata.clone(),
            ..Default::default()
        };
        Some((request, parent))
    }
}

impl Transition<'_> {
    /// A command naming another namespace is refused unless cross-namespace commands are
    /// enabled (`system.enableCrossNamespaceCommands`, off by default as on the reference
    /// server). Whether the namespace exists is checked by the caller, which knows them.
    fn check_cross_namespace(&self, target: &str, cause: Cause) -> Result<(), Rejection> {
        if target.is_empty()
            || target == self.state.namespace
            || self.limits.cross_namespace_commands
        {
            return Ok(());
        }
        Err(Rejection::new(
            cause,
            "cross namespace commands are not allowed",
        ))
    }

    /// `namespace`, or this run's own when it is empty (a command may leave it out).
    fn namespace_or_own(&self, namespace: &str) -> String {
        if namespace.is_empty() {
            self.state.namespace.clone()
        } else {
            namespace.to_string()
        }
    }

    pub(crate) fn start_child(
        &mut self,
        a: &StartChildWorkflowExecutionCommandAttributes,
        completed_id: i64,
    ) -> Result<(), Rejection> {
        let bad = |m: &str| Rejection::new(Cause::BadStartChildExecutionAttributes, m);
        self.check_cross_namespace(&a.namespace, Cause::BadStartChildExecutionAttributes)?;
        if a.workflow_id.is_empty() {
            return Err(bad("Required field WorkflowId is not set on command."));
        }
        if a.workflow_type.as_ref().is_none_or(|t| t.name.is_empty()) {
            return Err(bad("Required field WorkflowType is not set on command."));
        }
        check_pending(
            self.state.children.len(),
            self.limits.pending_child_executions,
            "pending child workflow executions",
            Cause::PendingChildWorkflowsLimitExceeded,
        )?;
        let mut command = a.clone();
        command.namespace = self.namespace_or_own(&a.namespace);
        if command
            .task_queue
            .as_ref()
            .is_none_or(|q| q.name.is_empty())
        {
            command.task_queue = Some(TaskQueue {
                name: self.state.task_queue.clone(),
                kind: 1,
                normal_name: String::new(),
            });
        }
        let initiated_event_id = self.append(
            Attributes::StartChildWorkflowExecutionInitiatedEventAttributes(
                StartChildWorkflowExecutionInitiatedEventAttributes {
                    namespace: command.namespace.clone(),
                    workflow_id: command.workflow_id.clone(),
                    workflow_type: command.workflow_type.clone(),
                    task_queue: command.task_queue.clone(),
                    input: command.input.clone(),
                    workflow_execution_timeout: command.workflow_execution_timeout,
                    workflow_run_timeout: command.workflow_run_timeout,
                    workflow_task_timeout: command.workflow_task_timeout,
                    parent_close_policy: command.parent_close_policy,
                    control: command.control.clone(),
                    workflow_task_completed_event_id: completed_id,
                    workflow_id_reuse_policy: command.workflow_id_reuse_policy,
                    retry_policy: command.retry_policy.clone(),
                    cron_schedule: command.cron_schedule.clone(),
                    header: command.header.clone(),
                    memo: command.memo.clone(),
                    search_attributes: command.search_attributes.clone(),
                    inherit_build_id: command.inherit_build_id,
                    priority: command.priority.clone(),
                    ..Default::default()
                },
            ),
        );
        self.state.children.push(ChildInfo {
            initiated_event_id,
            run_id: String::new(),
            started_event_id: 0,
            command: Some(command),
            user_metadata: None,
            parent_run_id: String::new(),
        });
        self.effects.push(Effect::StartChild { initiated_event_id });
        Ok(())
    }

    pub(crate) fn signal_external(
        &mut self,
        a: &SignalExternalWorkflowExecutionCommandAttributes,
        completed_id: i64,
    ) -> Result<(), Rejection> {
        let bad = |m: &str| Rejection::new(Cause::BadSignalWorkflowExecutionAttributes, m);
        self.check_cross_namespace(&a.namespace, Cause::BadSignalWorkflowExecutionAttributes)?;
        if a.execution
            .as_ref()
            .is_none_or(|e| e.workflow_id.is_empty())
        {
            return Err(bad("WorkflowId is not set on command."));
        }
        if a.signal_name.is_empty() {
            return Err(bad("SignalName is not set on command."));
        }
        check_pending(
            self.state.external_signals.len(),
            self.limits.pending_signals,
            "pending signals to external workflows",
            Cause::PendingSignalsLimitExceeded,
        )?;
        let mut command = a.clone();
        command.namespace = self.namespace_or_own(&a.namespace);
        let initiated_event_id = self.append(
            Attributes::SignalExternalWorkflowExecutionInitiatedEventAttributes(
                SignalExternalWorkflowExecutionInitiatedEventAttributes {
                    workflow_task_completed_event_id: completed_id,
                    namespace: command.namespace.clone(),
                    workflow_execution: command.execution.clone(),
                    signal_name: command.signal_name.clone(),
                    input: command.input.clone(),
                    control: command.control.clone(),
                    child_workflow_only: command.child_workflow_only,
                    header: command.header.clone(),
                    ..Default::default()
                },
            ),
        );
        self.state.external_signals.push(ExternalSignalInfo {
            initiated_event_id,
            command: Some(command),
        });
        self.effects
            .push(Effect::SignalExternal { initiated_event_id });
        Ok(())
    }

    pub(crate) fn cancel_external(
        &mut self,
        a: &RequestCancelExternalWorkflowExecutionCommandAttributes,
        completed_id: i64,
    ) -> Result<(), Rejection> {
        self.check_cross_namespace(
            &a.namespace,
            Cause::BadRequestCancelExternalWorkflowExecutionAttributes,
        )?;
        if a.workflow_id.is_empty() {
            return Err(Rejection::new(
                Cause::BadRequestCancelExternalWorkflowExecutionAttributes,
                "WorkflowId is not set on command.",
            ));
        }
        check_pending(
            self.state.external_cancels.len(),
            self.limits.pending_cancel_requests,
            "pending requests to cancel external workflows",
            Cause::PendingRequestCancelLimitExceeded,
        )?;
        let mut command = a.clone();
        command.namespace = self.namespace_or_own(&a.namespace);
        let initiated_event_id = self.append(
            Attributes::RequestCancelExternalWorkflowExecutionInitiatedEventAttributes(
                RequestCancelExternalWorkflowExecutionInitiatedEventAttributes {
                    workflow_task_completed_event_id: completed_id,
                    namespace: command.namespace.clone(),
                    workflow_execution: Some(WorkflowExecution {
                        workflow_id: command.workflow_id.clone(),
                        run_id: command.run_id.clone(),
                    }),
                    control: command.control.clone(),
                    child_workflow_only: command.child_workflow_only,
                    reason: command.reason.clone(),
                    ..Default::default()
                },
            ),
        );
        self.state.external_cancels.push(ExternalCancelInfo {
            initiated_event_id,
            command: Some(command),
        });
        self.effects
            .push(Effect::CancelExternal { initiated_event_id });
        Ok(())
    }

    fn child(&self, initiated_event_id: i64) -> Result<ChildInfo, EngineError> {
        if !self.state.is_running() {
            return Err(EngineError::NotFound(
                "workflow execution already completed".into(),
            ));
        }
        self.state
            .child(initiated_event_id)
            .cloned()
            .ok_or_else(|| EngineError::NotFound("child workflow not found".into()))
    }

    /// The child started as `run_id`. Repeated reports change nothing.
    pub fn child_started(
        &mut self,
        initiated_event_id: i64,
        run_id: &str,
    ) -> Result<(), EngineError> {
        let child = self.child(initiated_event_id)?;
        if !child.run_id.is_empty() {
            self.persist = Persist::Nothing;
            return Ok(());
        }
        let command = child.command.unwrap_or_default();
        let buffered = self.state.workflow_task_started();
        self.record(Attributes::ChildWorkflowExecutionStartedEventAttributes(
            ChildWorkflowExecutionStartedEventAttributes {
                namespace: command.namespace.clone(),
                initiated_event_id,
                workflow_execution: Some(WorkflowExecution {
                    workflow_id: command.workflow_id.clone(),
                    run_id: run_id.to_string(),
                }),
                workflow_type: command.workflow_type.clone(),
                header: command.header.clone(),
                ..Default::default()
            },
        ));
        let started_event_id = if buffered {
            BUFFERED_STARTED
        } else {
            self.state.next_event_id - 1
        };
        if let Some(c) = self.state.child_mut(initiated_event_id) {
            c.run_id = run_id.to_string();
            c.started_event_id = started_event_id;
        }
        self.ensure_workflow_task();
        Ok(())
    }

    /// The child could not start: its workflow id is taken, or its namespace is gone.
    pub fn child_start_failed(
        &mut self,
        initiated_event_id: i64,
        cause: StartChildWorkflowExecutionFailedCause,
    ) -> Result<(), EngineError> {
        let child = self.child(initiated_event_id)?;
        let command = child.command.unwrap_or_default();
        self.record(
            Attributes::StartChildWorkflowExecutionFailedEventAttributes(
                StartChildWorkflowExecutionFailedEventAttributes {
                    namespace: command.namespace.clone(),
                    workflow_id: command.workflow_id.clone(),
                    workflow_type: command.workflow_type.clone(),
                    cause: cause as i32,
                    control: command.control.clone(),
                    initiated_event_id,
                    ..Default::default()
                },
            ),
        );
        self.state.remove_child(initiated_event_id);
        self.ensure_workflow_task();
        Ok(())
    }

    /// The child closed with `close_event` (its last event). Repeated reports change nothing.
    pub fn child_closed(
        &mut self,
        initiated_event_id: i64,
        child_run_id: &str,
        close_event: &HistoryEvent,
    ) -> Result<(), EngineError> {
        let Ok(mut child) = self.child(initiated_event_id) else {
            self.persist = Persist::Nothing;
            return Ok(());
        };
        if child.run_id.is_empty() {
            // The child finished before its start was reported: report both, in order.
            self.child_started(initiated_event_id, child_run_id)?;
            child = self.child(initiated_event_id)?;
        }

        let command = child.command.unwrap_or_default();
        let namespace = command.namespace.clone();
        let workflow_execution = Some(WorkflowExecution {
            workflow_id: command.workflow_id.clone(),
            run_id: child.run_id.clone(),
        });
        let workflow_type: Option<WorkflowType> = command.workflow_type.clone();
        let started_event_id = child.started_event_id;
        // The child's close event: `$attributes` is both the history event's attribute type
        // and its variant of `Attributes`; the fields every kind carries are filled in here.
        macro_rules! child_closed_event {
            ($attributes:ident { $($field:ident: $value:expr),* $(,)? }) => {
                Attributes::$attributes($attributes {
                    $($field: $value,)*
                    namespace,
                    workflow_execution,
                    workflow_type,
                    initiated_event_id,
                    started_event_id,
                    ..Default::default()
                })
            };
        }
        let attributes = match &close_event.attributes {
            Some(Attributes::WorkflowExecutionCompletedEventAttributes(a)) => {
                child_closed_event!(ChildWorkflowExecutionCompletedEventAttributes {
                    result: a.result.clone(),
                })
            }
            Some(Attributes::WorkflowExecutionFailedEventAttributes(a)) => {
                child_closed_event!(ChildWorkflowExecutionFailedEventAttributes {
                    failure: a.failure.clone(),
                    retry_state: a.retry_state,
                })
            }
            Some(Attributes::WorkflowExecutionCanceledEventAttributes(a)) => {
                child_closed_event!(ChildWorkflowExecutionCanceledEventAttributes {
                    details: a.details.clone(),
                })
            }
            Some(Attributes::WorkflowExecutionTimedOutEventAttributes(a)) => {
                child_closed_event!(ChildWorkflowExecutionTimedOutEventAttributes {
                    retry_state: a.retry_state,
                })
            }
            Some(Attributes::WorkflowExecutionTerminatedEventAttributes(_)) => {
                child_closed_event!(ChildWorkflowExecutionTerminatedEventAttributes {})
            }
            _ => {
                return Err(EngineError::InvalidArgument("not a close event".into()));
            }
        };
        self.record(attributes);
        self.state.remove_child(initiated_event_id);
        self.ensure_workflow_task();
        Ok(())
    }

    /// The child closed, and it names `from_run_id` as its parent, a run a reset replaced:
    /// recorded here only if this run took the child over from that run (a reset's new run,
    /// see `reset`) and it is still pending with that run id. Anything else changes nothing.
    pub fn child_closed_taken_over(
        &mut self,
        initiated_event_id: i64,
        from_run_id: &str,
        child_run_id: &str,
        close_event: &HistoryEvent,
    ) -> Result<(), EngineError> {
        let ours = self.state.child(initiated_event_id).is_some_and(|c| {
            !from_run_id.is_empty()
                && c.parent_run_id == from_run_id
                && !c.run_id.is_empty()
                && c.run_id == child_run_id
        });
        if !ours || !self.state.is_running() {
            self.persist = Persist::Nothing;
            return Ok(());
        }
        self.child_closed(initiated_event_id, child_run_id, close_event)
    }

    /// The pending request (signal or cancellation) that `pending` finds, as its outcome is
    /// reported: `None` when it is no longer pending (a repeated report; nothing is recorded
    /// or persisted), an error when this run has closed.
    fn awaited_outcome<T: Clone>(
        &mut self,
        pending: impl FnOnce(&ExecutionState) -> Option<&T>,
    ) -> Result<Option<T>, EngineError> {
        let Some(info) = pending(self.state).cloned() else {
            self.persist = Persist::Nothing;
            return Ok(None);
        };
        if !self.state.is_running() {
            return Err(EngineError::NotFound(
                "workflow execution already completed".into(),
            ));
        }
        Ok(Some(info))
    }

    /// Outcome of a SignalExternalWorkflowExecution: delivered, or the target was not found.
    pub fn external_signal_done(
        &mut self,
        initiated_event_id: i64,
        delivered: bool,
    ) -> Result<(), EngineError> {
        let Some(info) = self.awaited_outcome(|s| s.external_signal(initiated_event_id))? else {
            return Ok(());
        };
        let command = info.command.unwrap_or_default();
        let attributes = if delivered {
            Attributes::ExternalWorkflowExecutionSignaledEventAttributes(
                ExternalWorkflowExecutionSignaledEventAttributes {
                    initiated_event_id,
                    namespace: command.namespace.clone(),
                    workflow_execution: command.execution.clone(),
                    control: command.control.clone(),
                    ..Default::default()
                },
            )
        } else {
            Attributes::SignalExternalWorkflowExecutionFailedEventAttributes(SignalExternalWorkflowExecutionFailedEventAttributes {
                cause: SignalExternalWorkflowExecutionFailedCause::ExternalWorkflowExecutionNotFound as i32,
                namespace: command.namespace.clone(),
                workflow_execution: command.execution.clone(),
                initiated_event_id,
                control: command.control.clone(),
                ..Default::default()
            })
        };
        self.record(attributes);
        self.state
            .external_signals
            .retain(|s| s.initiated_event_id != initiated_event_id);
        self.ensure_workflow_task();
        Ok(())
    }

    /// Outcome of a RequestCancelExternalWorkflowExecution.
    pub fn external_cancel_done(
        &mut self,
        initiated_event_id: i64,
        delivered: bool,
    ) -> Result<(), EngineError> {
        let Some(info) = self.awaited_outcome(|s| s.external_cancel(initiated_event_id))? else {
            return Ok(());
        };
        let command = info.command.unwrap_or_default();
        let workflow_execution = Some(WorkflowExecution {
            workflow_id: command.workflow_id.clone(),
            run_id: command.run_id.clone(),
        });
        let attributes = if delivered {
            Attributes::ExternalWorkflowExecutionCancelRequestedEventAttributes(
                ExternalWorkflowExecutionCancelRequestedEventAttributes {
                    initiated_event_id,
                    namespace: command.namespace.clone(),
                    workflow_execution,
                    ..Default::default()
                },
            )
        } else {
            Attributes::RequestCancelExternalWorkflowExecutionFailedEventAttributes(
                RequestCancelExternalWorkflowExecutionFailedEventAttributes {
                    cause: CancelExternalWorkflowExecutionFailedCause::ExternalWorkflowExecutionNotFound as i32,
                    namespace: command.namespace.clone(),
                    workflow_execution,
                    initiated_event_id,
                    control: command.control.clone(),
                    ..Default::default()
                },
            )
        };
        self.record(attributes);
        self.state
            .external_cancels
            .retain(|c| c.initiated_event_id != initiated_event_id);
        self.ensure_workflow_task();
        Ok(())
    }
}
