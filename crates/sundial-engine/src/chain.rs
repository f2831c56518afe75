//! Runs that lead to a next run of the same workflow id: continue-as-new, workflow retries,
//! cron. The transition that closes a run describes the next one (`Transition::next_run`); the
//! caller creates it in the same commit, so the chain is never broken by a crash.

// `failure` on ContinuedAsNew is deprecated in the API but still written by the reference.
#![allow(deprecated)]

use crate::api::{
    command::v1::ContinueAsNewWorkflowExecutionCommandAttributes,
    common::v1::{Payloads, WorkflowType},
    enums::v1::{ContinueAsNewInitiator, RetryState, WorkflowExecutionStatus},
    failure::v1::Failure,
    history::v1::{
        WorkflowExecutionContinuedAsNewEventAttributes, WorkflowExecutionFailedEventAttributes,
        WorkflowExecutionTimedOutEventAttributes, history_event::Attributes,
    },
    taskqueue::v1::TaskQueue,
    workflowservice::v1::StartWorkflowExecutionRequest,
};
use crate::retry::{self, RetryDecision};
use crate::state::ParentInfo;
use crate::{Transition, time};
use sundial_schedule::WorkflowCron;

/// How a run continues an earlier one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Continuation {
    pub previous_run_id: String,
    pub first_execution_run_id: String,
    /// `ContinueAsNewInitiator` as i32.
    pub initiator: i32,
    pub attempt: i32,
    /// Wait before the first workflow task (retry backoff, continue-as-new backoff).
    pub backoff_ms: i64,
    pub last_completion_result: Option<Payloads>,
    pub continued_failure: Option<Failure>,
    /// The execution timeout spans the whole chain (0: none).
    pub execution_expiration_ms: i64,
}

/// The run to create in the same commit as the closing of this one.
#[derive(Debug, Clone, PartialEq)]
pub struct NextRun {
    pub run_id: String,
    pub request: StartWorkflowExecutionRequest,
    pub continuation: Continuation,
    pub parent: Option<ParentInfo>,
}

impl Transition<'_> {
    /// A start request for the next run, with what this run was started with.
    fn next_request(&self) -> StartWorkflowExecutionRequest {
        let st = &self.state;
        StartWorkflowExecutionRequest {
            namespace: st.namespace.clone(),
            workflow_id: st.workflow_id.clone(),
            workflow_type: Some(WorkflowType {
                name: st.workflow_type.clone(),
            }),
            task_queue: Some(TaskQueue {
                name: st.task_queue.clone(),
                kind: 1,
                normal_name: String::new(),
            }),
            input: st.input.clone(),
            workflow_execution_timeout: time::opt_duration(st.execution_timeout_ms),
            workflow_run_timeout: time::opt_duration(st.run_timeout_ms),
            workflow_task_timeout: time::opt_duration(st.workflow_task_timeout_ms),
            request_id: self.new_run_id.clone(),
            retry_policy: st.retry_policy.clone(),
            cron_schedule: st.cron_schedule.clone(),
            memo: st.memo.clone(),
            search_attributes: st.search_attributes.clone(),
            header: st.header.clone(),
            completion_callbacks: st.completion_callbacks.clone(),
            ..Default::default()
        }
    }

    fn chain_to(&mut self, request: StartWorkflowExecutionRequest, continuation: Continuation) {
        self.state.new_execution_run_id = self.new_run_id.clone();
        self.next_run = Some(NextRun {
            run_id: self.new_run_id.clone(),
            request,
            continuation,
            parent: self.state.parent.clone(),
        });
    }

    fn continuation(
        &self,
        initiator: ContinueAsNewInitiator,
        attempt: i32,
        backoff_ms: i64,
    ) -> Continuation {
        Continuation {
            previous_run_id: self.state.run_id.clone(),
            first_execution_run_id: self.state.first_execution_run_id.clone(),
            initiator: initiator as i32,
            attempt,
            backoff_ms,
            last_completion_result: None,
            continued_failure: None,
            execution_expiration_ms: self.state.execution_expiration_ms,
        }
    }

    /// The ContinueAsNewWorkflowExecution command.
    pub(crate) fn continue_as_new(
        &mut self,
        a: &ContinueAsNewWorkflowExecutionCommandAttributes,
        completed_id: i64,
    ) {
        let mut request = self.next_request();
        if let Some(t) = a.workflow_type.as_ref().filter(|t| !t.name.is_empty()) {
            request.workflow_type = Some(t.clone());
        }
        if let Some(q) = a.task_queue.as_ref().filter(|q| !q.name.is_empty()) {
            request.task_queue = Some(TaskQueue {
                name: q.name.clone(),
                kind: 1,
                normal_name: String::new(),
            });
        }
        request.input = a.input.clone();
        if time::duration_ms(a.workflow_run_timeout.as_ref()) > 0 {
            request.workflow_run_timeout = a.workflow_run_timeout;
        }
        if time::duration_ms(a.workflow_task_timeout.as_ref()) > 0 {
            request.workflow_task_timeout = a.workflow_task_timeout;
        }
        if a.retry_policy.is_some() {
            request.retry_policy = a.retry_policy.clone();
        }
        if a.header.is_some() {
            request.header = a.header.clone();
        }
        if a.memo.is_some() {
            request.memo = a.memo.clone();
        }
        if a.search_attributes.is_some() {
            request.search_attributes = a.search_attributes.clone();
        }
        let backoff_ms = time::duration_ms(a.backoff_start_interval.as_ref());
        let id = self.append(Attributes::WorkflowExecutionContinuedAsNewEventAttributes(
            WorkflowExecutionContinuedAsNewEventAttributes {
                new_execution_run_id: self.new_run_id.clone(),
                workflow_type: request.workflow_type.clone(),
                task_queue: request.task_queue.clone(),
                input: request.input.clone(),
                workflow_run_timeout: request.workflow_run_timeout,
                workflow_task_timeout: request.workflow_task_timeout,
                workflow_task_completed_event_id: completed_id,
                backoff_start_interval: a.backoff_start_interval,
                initiator: a.initiator,
                failure: a.failure.clone(),
                last_completion_result: a.last_completion_result.clone(),
                header: request.header.clone(),
                memo: request.memo.clone(),
                search_attributes: request.search_attributes.clone(),
                ..Default::default()
            },
        ));
        let mut continuation = self.continuation(ContinueAsNewInitiator::Workflow, 1, backoff_ms);
        continuation.last_completion_result = a.last_completion_result.clone();
        continuation.continued_failure = a.failure.clone();
        self.chain_to(request, continuation);
        self.close(WorkflowExecutionStatus::ContinuedAsNew, id);
    }

    /// The next run of a cron workflow, if it has a schedule: it waits for the schedule's
    /// first time after this run's execution time that is not past (the reference's
    /// `GetBackoffForNextSchedule`). A schedule that never fires again ends the chain.
    fn cron_next(
        &mut self,
        last_completion_result: Option<Payloads>,
        failure: Option<Failure>,
    ) -> bool {
        if self.state.cron_schedule.is_empty() {
            return false;
        }
        let Some(backoff_ms) = WorkflowCron::parse(&self.state.cron_schedule)
            .ok()
            .and_then(|cron| cron.backoff_ms(self.state.execution_time_ms, self.now))
        else {
            return false;
        };
        let request = self.next_request();
        let mut continuation =
            self.continuation(ContinueAsNewInitiator::CronSchedule, 1, backoff_ms);
        continuation.last_completion_result = last_completion_result;
        continuation.continued_failure = failure;
        self.chain_to(request, continuation);
        true
    }

    /// The CompleteWorkflowExecution command (a cron workflow schedules its next run).
    pub(crate) fn complete_workflow(&mut self, result: Option<Payloads>, completed_id: i64) {
        use crate::api::history::v1::WorkflowExecutionCompletedEventAttributes;
        let chained = self.cron_next(result.clone(), None);
        let id = self.append(Attributes::WorkflowExecutionCompletedEventAttributes(
            WorkflowExecutionCompletedEventAttributes {
                result,
                workflow_task_completed_event_id: completed_id,
                new_execution_run_id: if chained {
                    self.new_run_id.clone()
                } else {
                    String::new()
                },
            },
        ));
        self.close(WorkflowExecutionStatus::Completed, id);
    }

    /// Whether the workflow's retry policy asks for another run after `failure`.
    fn retry_decision(&self, failure: &Failure) -> RetryDecision {
        let Some(policy) = self.state.retry_policy.as_ref() else {
            return RetryDecision::Stop(RetryState::RetryPolicyNotSet);
        };
        let policy = retry::normalize(Some(policy)).unwrap_or_else(|_| policy.clone());
        retry::decide(
            &policy,
            self.state.attempt,
            failure,
            self.now,
            self.state.execution_expiration_ms,
        )
    }

    /// The FailWorkflowExecution command: the run fails, and is retried if its policy says so.
    pub(crate) fn fail_workflow(&mut self, failure: Option<Failure>, completed_id: i64) {
        let decision = self.retry_decision(&failure.clone().unwrap_or_default());
        let retry_state = match decision {
            RetryDecision::Retry { .. } => RetryState::InProgress,
            RetryDecision::Stop(state) => state,
        };
        let chained = match decision {
            RetryDecision::Retry { delay_ms } => {
                let request = self.next_request();
                let mut continuation = self.continuation(
                    ContinueAsNewInitiator::Retry,
                    self.state.attempt + 1,
                    delay_ms,
                );
                continuation.continued_failure = failure.clone();
                self.chain_to(request, continuation);
                true
            }
            RetryDecision::Stop(_) => self.cron_next(None, failure.clone()),
        };
        let new_execution_run_id = if chained {
            self.new_run_id.clone()
        } else {
            String::new()
        };
        let id = self.append(Attributes::WorkflowExecutionFailedEventAttributes(
            WorkflowExecutionFailedEventAttributes {
                failure: failure.clone(),
                retry_state: retry_state as i32,
                workflow_task_completed_event_id: completed_id,
                new_execution_run_id,
            },
        ));
        self.close(WorkflowExecutionStatus::Failed, id);
    }

    /// The run timed out; retried if its policy says so (a timeout is retryable).
    pub(crate) fn time_out_workflow(&mut self) {
        let failure = Failure {
            message: "workflow timeout".into(),
            failure_info: Some(
                crate::api::failure::v1::failure::FailureInfo::TimeoutFailureInfo(
                    crate::api::failure::v1::TimeoutFailureInfo {
                        timeout_type: 1,
                        last_heartbeat_details: None,
                    },
                ),
            ),
            ..Default::default()
        };
        let decision = if self.now >= self.state.execution_expiration_ms
            && self.state.execution_expiration_ms > 0
        {
            RetryDecision::Stop(RetryState::Timeout)
        } else {
            self.retry_decision(&failure)
        };
        let (retry_state, new_execution_run_id) = match decision {
            RetryDecision::Retry { .. } => (RetryState::InProgress, self.new_run_id.clone()),
            RetryDecision::Stop(RetryState::RetryPolicyNotSet) => {
                (RetryState::Timeout, String::new())
            }
            RetryDecision::Stop(state) => (state, String::new()),
        };
        self.state.buffered_events.clear();
        let id = self.append(Attributes::WorkflowExecutionTimedOutEventAttributes(
            WorkflowExecutionTimedOutEventAttributes {
                retry_state: retry_state as i32,
                new_execution_run_id,
            },
        ));
        if let RetryDecision::Retry { delay_ms } = decision {
            let request = self.next_request();
            let mut continuation = self.continuation(
                ContinueAsNewInitiator::Retry,
                self.state.attempt + 1,
                delay_ms,
            );
            continuation.continued_failure = Some(failure);
            self.chain_to(request, continuation);
        }
        self.close(WorkflowExecutionStatus::TimedOut, id);
    }
}
