//! The mutable state of one workflow execution, persisted as a protobuf blob beside its
//! append-only history.
//!
//! Invariants:
//! - `next_event_id` is one past the last event in the execution's history.
//! - At most one workflow task exists at a time; while it is started, new events are kept in
//!   `buffered_events` and written after its WorkflowTaskCompleted/Failed/TimedOut event.
//! - An activity or timer is in the maps exactly while it is pending.
//! - Started markers of workflow and activity tasks may be ahead of the persisted copy: a
//!   crash forgets them, which returns the task to "scheduled" and dispatches it again.

use crate::api::{
    common::v1::{Header, Payloads, RetryPolicy},
    failure::v1::Failure,
    history::v1::HistoryEvent,
};

/// Persistent state of one run. Encoded with prost; field tags are the storage format.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecutionState {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub workflow_id: String,
    #[prost(string, tag = "3")]
    pub run_id: String,
    #[prost(string, tag = "4")]
    pub first_execution_run_id: String,
    #[prost(string, tag = "5")]
    pub workflow_type: String,
    #[prost(string, tag = "6")]
    pub task_queue: String,
    /// `WorkflowExecutionStatus` as i32.
    #[prost(int32, tag = "7")]
    pub status: i32,
    #[prost(int64, tag = "8")]
    pub next_event_id: i64,
    #[prost(int64, tag = "9")]
    pub start_time_ms: i64,
    #[prost(int64, tag = "10")]
    pub close_time_ms: i64,
    #[prost(int64, tag = "11")]
    pub workflow_task_timeout_ms: i64,
    #[prost(int64, tag = "12")]
    pub run_timeout_ms: i64,
    #[prost(int64, tag = "13")]
    pub execution_timeout_ms: i64,
    /// Absolute deadline of the run (0: none).
    #[prost(int64, tag = "14")]
    pub run_expiration_ms: i64,
    /// Absolute deadline of the whole execution chain (0: none).
    #[prost(int64, tag = "15")]
    pub execution_expiration_ms: i64,
    #[prost(string, tag = "16")]
    pub start_request_id: String,
    #[prost(message, optional, tag = "17")]
    pub workflow_task: Option<WorkflowTaskInfo>,
    #[prost(message, repeated, tag = "18")]
    pub activities: Vec<ActivityInfo>,
    #[prost(message, repeated, tag = "19")]
    pub timers: Vec<TimerInfo>,
    /// Events that arrived while a workflow task was started; ids are assigned on flush.
    #[prost(message, repeated, tag = "20")]
    pub buffered_events: Vec<HistoryEvent>,
    /// The worker's sticky queue, if it asked for one.
    #[prost(string, tag = "21")]
    pub sticky_task_queue: String,
    #[prost(int64, tag = "22")]
    pub sticky_schedule_to_start_ms: i64,
    /// Started event id of the last completed workflow task (0: none yet).
    #[prost(int64, tag = "23")]
    pub last_completed_wt_started_event_id: i64,
    /// Event id of the last WorkflowTaskCompleted (0: none yet).
    #[prost(int64, tag = "24")]
    pub last_wt_completed_event_id: i64,
    /// Sum of the encoded sizes of the history's events.
    #[prost(int64, tag = "25")]
    pub history_size_bytes: i64,
    /// Event id of the close event (0 while running).
    #[prost(int64, tag = "26")]
    pub close_event_id: i64,
    /// Counter for task-token generations of workflow tasks.
    #[prost(int64, tag = "27")]
    pub next_task_seq: i64,
    #[prost(int32, tag = "28")]
    pub attempt: i32,
    /// Request ids of signals already applied (duplicates are dropped).
    #[prost(string, repeated, tag = "29")]
    pub signal_request_ids: Vec<String>,
    /// A cancellation was requested (later requests change nothing).
    #[prost(bool, tag = "30")]
    pub cancel_requested: bool,
    #[prost(string, tag = "31")]
    pub cancel_request_id: String,
    /// Number of committed transitions.
    #[prost(int64, tag = "32")]
    pub state_transition_count: i64,
    /// The workflow's own retry policy (None: the workflow is not retried).
    #[prost(message, optional, tag = "33")]
    pub retry_policy: Option<RetryPolicy>,
    #[prost(string, tag = "34")]
    pub cron_schedule: String,
    /// The first workflow task waits until then (retry or cron backoff); 0: no wait.
    #[prost(int64, tag = "35")]
    pub backoff_until_ms: i64,
    #[prost(message, optional, tag = "36")]
    pub parent: Option<ParentInfo>,
    #[prost(message, repeated, tag = "37")]
    pub children: Vec<ChildInfo>,
    #[prost(message, repeated, tag = "38")]
    pub external_signals: Vec<ExternalSignalInfo>,
    #[prost(message, repeated, tag = "39")]
    pub external_cancels: Vec<ExternalCancelInfo>,
    /// What the run was started with, for the next run of a retry or cron chain.
    #[prost(message, optional, tag = "40")]
    pub input: Option<Payloads>,
    #[prost(message, optional, tag = "41")]
    pub header: Option<Header>,
    #[prost(message, optional, tag = "42")]
    pub memo: Option<crate::api::common::v1::Memo>,
    #[prost(message, optional, tag = "43")]
    pub search_attributes: Option<crate::api::common::v1::SearchAttributes>,
    /// Run id of the next run of the chain (continue-as-new, retry, cron), once closed.
    #[prost(string, tag = "44")]
    pub new_execution_run_id: String,
    /// When the run's first workflow task may run (start time plus any backoff).
    #[prost(int64, tag = "45")]
    pub execution_time_ms: i64,
    /// Updates accepted and not completed yet.
    #[prost(message, repeated, tag = "46")]
    pub accepted_updates: Vec<AcceptedUpdate>,
    /// Updates this run completed (for the total-updates limit).
    #[prost(int64, tag = "47")]
    pub completed_update_count: i64,
    /// The start's user metadata (summary, details), as DescribeWorkflowExecution shows it in
    /// `execution_config`; also on the WorkflowExecutionStarted event.
    #[prost(message, optional, tag = "48")]
    pub user_metadata: Option<crate::api::sdk::v1::UserMetadata>,
    /// The versioning override set by UpdateWorkflowExecutionOptions, in the form its
    /// WorkflowExecutionOptionsUpdated event records (see `workflow_options`).
    #[prost(message, optional, tag = "49")]
    pub versioning_override: Option<crate::api::workflow::v1::VersioningOverride>,
    /// Updates admitted through history (UpdateAdmitted events, which a reset writes for the
    /// updates it reapplies) and not yet accepted or rejected by the worker.
    #[prost(message, repeated, tag = "50")]
    pub admitted_updates: Vec<AdmittedUpdate>,
    /// Set when a reset terminated this run: the reset's new run. No parent close policy is
    /// applied to the children of a run a reset terminated (as the reference server).
    #[prost(string, tag = "51")]
    pub reset_new_run_id: String,
    /// Nexus operations this run scheduled that have not closed, in event order (see `nexus`).
    #[prost(message, repeated, tag = "52")]
    pub nexus_operations: Vec<NexusOperationInfo>,
    /// The start's completion callbacks: this run backs a Nexus operation of another run,
    /// which is told of the chain's close (carried over by continue-as-new, retry and cron).
    #[prost(message, repeated, tag = "53")]
    pub completion_callbacks: Vec<crate::api::common::v1::Callback>,
    /// Request ids of starts attached to this running run (USE_EXISTING with
    /// `on_conflict_options`): repeating one answers with this run and attaches nothing again.
    #[prost(string, repeated, tag = "54")]
    pub attached_request_ids: Vec<String>,
    /// Reset points: the first completed workflow task of each worker build, in order (see
    /// `reset::record_reset_point`). Tag 100 keeps clear of the fields added in sequence.
    #[prost(message, repeated, tag = "100")]
    pub reset_points: Vec<crate::api::workflow::v1::ResetPointInfo>,
}

/// An accepted update waiting for its response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AcceptedUpdate {
    #[prost(string, tag = "1")]
    pub update_id: String,
    #[prost(int64, tag = "2")]
    pub accepted_event_id: i64,
}

/// An update whose request is in history (an UpdateAdmitted event) and that the worker has
/// not accepted or rejected yet.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AdmittedUpdate {
    #[prost(string, tag = "1")]
    pub update_id: String,
    #[prost(int64, tag = "2")]
    pub admitted_event_id: i64,
}

/// The parent of a child workflow.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ParentInfo {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub workflow_id: String,
    #[prost(string, tag = "3")]
    pub run_id: String,
    #[prost(int64, tag = "4")]
    pub initiated_event_id: i64,
    /// `ParentClosePolicy` as i32.
    #[prost(int32, tag = "5")]
    pub close_policy: i32,
    /// The root of the workflow tree the parent belongs to.
    #[prost(string, tag = "6")]
    pub root_workflow_id: String,
    #[prost(string, tag = "7")]
    pub root_run_id: String,
}

/// A child workflow the run started (or is starting).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChildInfo {
    #[prost(int64, tag = "1")]
    pub initiated_event_id: i64,
    /// Empty until the child has started.
    #[prost(string, tag = "2")]
    pub run_id: String,
    /// Event id of ChildWorkflowExecutionStarted (-1 while that event waits in the buffer).
    #[prost(int64, tag = "3")]
    pub started_event_id: i64,
    #[prost(message, optional, tag = "4")]
    pub command: Option<crate::api::command::v1::StartChildWorkflowExecutionCommandAttributes>,
    /// The command's user metadata: on the initiated event, and the child's start.
    #[prost(message, optional, tag = "5")]
    pub user_metadata: Option<crate::api::sdk::v1::UserMetadata>,
    /// The run the child names as its parent when that is not this run: a reset's new run
    /// took the child over from the run that started it (its close is delivered here from
    /// there; see `reset`). Empty: this run started it (or is starting it).
    #[prost(string, tag = "6")]
    pub parent_run_id: String,
}

/// A signal the run sends to another workflow, until it is delivered (or found impossible).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExternalSignalInfo {
    #[prost(int64, tag = "1")]
    pub initiated_event_id: i64,
    #[prost(message, optional, tag = "2")]
    pub command: Option<crate::api::command::v1::SignalExternalWorkflowExecutionCommandAttributes>,
}

/// A cancellation request the run sends to another workflow, until it is delivered.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExternalCancelInfo {
    #[prost(int64, tag = "1")]
    pub initiated_event_id: i64,
    #[prost(message, optional, tag = "2")]
    pub command:
        Option<crate::api::command::v1::RequestCancelExternalWorkflowExecutionCommandAttributes>,
}

/// The execution's one workflow task, scheduled or started.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkflowTaskInfo {
    #[prost(int64, tag = "1")]
    pub scheduled_event_id: i64,
    /// 0 until a worker picks it up.
    #[prost(int64, tag = "2")]
    pub started_event_id: i64,
    #[prost(int32, tag = "3")]
    pub attempt: i32,
    /// The queue it was dispatched to (the sticky queue or the workflow's queue).
    #[prost(string, tag = "4")]
    pub task_queue: String,
    #[prost(bool, tag = "5")]
    pub sticky: bool,
    #[prost(int64, tag = "6")]
    pub scheduled_time_ms: i64,
    #[prost(int64, tag = "7")]
    pub started_time_ms: i64,
    #[prost(int64, tag = "8")]
    pub timeout_ms: i64,
    /// Distinguishes successive dispatches of the same scheduled task.
    #[prost(int64, tag = "9")]
    pub seq: i64,
    #[prost(string, tag = "10")]
    pub identity: String,
    /// Its Scheduled/Started events are not in the history yet: a retry (attempt > 1) or a
    /// speculative task. They are written only if the task completes (see `pending_events`).
    #[prost(bool, tag = "11")]
    pub unwritten: bool,
    /// Scheduled for an update alone: dropped without a trace if it produces nothing.
    #[prost(bool, tag = "12")]
    pub speculative: bool,
    /// The Scheduled (and, once started, Started) events of an unwritten task, ids assigned
    /// as if they were next in the history.
    #[prost(message, repeated, tag = "13")]
    pub pending_events: Vec<HistoryEvent>,
    /// Build id of the worker that started it.
    #[prost(string, tag = "14")]
    pub build_id: String,
}

impl WorkflowTaskInfo {
    pub fn is_started(&self) -> bool {
        self.started_event_id != 0
    }
}

/// A pending activity (scheduled, started, or waiting for its next attempt).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ActivityInfo {
    #[prost(int64, tag = "1")]
    pub scheduled_event_id: i64,
    #[prost(string, tag = "2")]
    pub activity_id: String,
    #[prost(string, tag = "3")]
    pub activity_type: String,
    #[prost(string, tag = "4")]
    pub task_queue: String,
    // Tags 5 and 6 held the header and input, which now stay in the ActivityTaskScheduled
    // event only: the state is re-encoded on every transition, the event never. States
    // written with them still decode (unknown fields are skipped).
    #[prost(int64, tag = "7")]
    pub schedule_to_close_ms: i64,
    #[prost(int64, tag = "8")]
    pub schedule_to_start_ms: i64,
    #[prost(int64, tag = "9")]
    pub start_to_close_ms: i64,
    #[prost(int64, tag = "10")]
    pub heartbeat_timeout_ms: i64,
    #[prost(message, optional, tag = "11")]
    pub retry_policy: Option<RetryPolicy>,
    #[prost(int32, tag = "12")]
    pub attempt: i32,
    /// When the first attempt was scheduled.
    #[prost(int64, tag = "13")]
    pub scheduled_time_ms: i64,
    /// When the current attempt becomes dispatchable (after a retry backoff).
    #[prost(int64, tag = "14")]
    pub attempt_scheduled_time_ms: i64,
    /// 0 while not started.
    #[prost(int64, tag = "15")]
    pub started_time_ms: i64,
    #[prost(string, tag = "16")]
    pub started_identity: String,
    #[prost(string, tag = "17")]
    pub started_request_id: String,
    #[prost(int64, tag = "18")]
    pub last_heartbeat_time_ms: i64,
    #[prost(message, optional, tag = "19")]
    pub heartbeat_details: Option<Payloads>,
    #[prost(message, optional, tag = "20")]
    pub last_failure: Option<Failure>,
    #[prost(bool, tag = "21")]
    pub cancel_requested: bool,
    #[prost(int64, tag = "22")]
    pub cancel_requested_event_id: i64,
    #[prost(string, tag = "23")]
    pub last_worker_identity: String,
    /// Build id of the worker running the current attempt.
    #[prost(string, tag = "24")]
    pub started_build_id: String,
    /// Paused by an operator (PauseActivity): no attempt is dispatched and no timeout runs
    /// until it is unpaused; an attempt already running continues (its heartbeats report the
    /// pause). Set exactly while `pause_info` is.
    #[prost(bool, tag = "25")]
    pub paused: bool,
    #[prost(message, optional, tag = "26")]
    pub pause_info: Option<ActivityPauseInfo>,
    /// ResetActivity reached the running attempt: its heartbeats report `activity_reset`
    /// until the next attempt is scheduled.
    #[prost(bool, tag = "27")]
    pub reset_requested: bool,
    /// ResetActivity asked for the heartbeat details to be dropped when the next attempt is
    /// scheduled (the running attempt keeps them).
    #[prost(bool, tag = "28")]
    pub reset_heartbeats: bool,
    /// The retry deadline fixed when the activity was scheduled, recorded once its options
    /// change (UpdateActivityOptions, ResetActivity restoring them): 0 while it is still
    /// `scheduled_time_ms + schedule_to_close_ms`, -1 for none. The reference keeps the
    /// original deadline for retries and DescribeWorkflowExecution's `expiration_time`; the
    /// schedule-to-close timeout itself follows the new options.
    #[prost(int64, tag = "29")]
    pub fixed_retry_expiration_ms: i64,
    /// When the last attempt that was retried ended (0: none yet).
    #[prost(int64, tag = "30")]
    pub last_attempt_complete_time_ms: i64,
}

/// Who paused an activity, when and why (DescribeWorkflowExecution's `pause_info`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ActivityPauseInfo {
    #[prost(int64, tag = "1")]
    pub pause_time_ms: i64,
    #[prost(string, tag = "2")]
    pub identity: String,
    #[prost(string, tag = "3")]
    pub reason: String,
    /// The pause request's id: repeating that request is not an error.
    #[prost(string, tag = "4")]
    pub request_id: String,
}

impl ActivityInfo {
    pub fn is_started(&self) -> bool {
        self.started_time_ms != 0
    }

    /// The attempt, once not started, waits for a time of its own before it may be
    /// dispatched: a retry's backoff, or the delay of a first attempt an operator rescheduled
    /// (unpause or reset with jitter). Its retry deadline then stands for it.
    pub fn waits_for_retry(&self) -> bool {
        self.attempt > 1 || self.attempt_scheduled_time_ms > self.scheduled_time_ms
    }

    /// The absolute deadline past which the activity is not retried (0: none).
    pub fn retry_expiration_ms(&self) -> i64 {
        match self.fixed_retry_expiration_ms {
            0 if self.schedule_to_close_ms > 0 => {
                self.scheduled_time_ms + self.schedule_to_close_ms
            }
            0 | -1 => 0,
            fixed => fixed,
        }
    }
}

/// A Nexus operation the run scheduled, until it closes (completed, failed, canceled, timed
/// out). `state` is a `PendingNexusOperationState`: SCHEDULED while its start request waits for
/// (or is with) a handler worker, BACKING_OFF between attempts, STARTED once the handler
/// answered that it runs asynchronously (its outcome then comes through a completion callback).
#[derive(Clone, PartialEq, prost::Message)]
pub struct NexusOperationInfo {
    #[prost(int64, tag = "1")]
    pub scheduled_event_id: i64,
    #[prost(string, tag = "2")]
    pub endpoint: String,
    #[prost(string, tag = "3")]
    pub endpoint_id: String,
    #[prost(string, tag = "4")]
    pub service: String,
    #[prost(string, tag = "5")]
    pub operation: String,
    /// The endpoint's worker target when the operation was scheduled.
    #[prost(string, tag = "6")]
    pub target_namespace: String,
    #[prost(string, tag = "7")]
    pub target_task_queue: String,
    /// 0: no schedule-to-close timeout.
    #[prost(int64, tag = "8")]
    pub schedule_to_close_ms: i64,
    #[prost(int64, tag = "9")]
    pub scheduled_time_ms: i64,
    #[prost(string, tag = "10")]
    pub request_id: String,
    #[prost(int32, tag = "11")]
    pub state: i32,
    /// The start request's attempt (1-based).
    #[prost(int32, tag = "12")]
    pub attempt: i32,
    /// Set once started (asynchronous operations).
    #[prost(string, tag = "13")]
    pub operation_token: String,
    /// Event id of NexusOperationStarted (0: not started, -1 while it waits in the buffer).
    #[prost(int64, tag = "14")]
    pub started_event_id: i64,
    /// BACKING_OFF: when the next attempt is dispatched.
    #[prost(int64, tag = "15")]
    pub next_attempt_time_ms: i64,
    #[prost(int64, tag = "16")]
    pub last_attempt_complete_time_ms: i64,
    #[prost(message, optional, tag = "17")]
    pub last_attempt_failure: Option<Failure>,
    /// When the current attempt was handed to a worker (0: waiting in its queue). A worker
    /// that does not answer within the request timeout loses the attempt.
    #[prost(int64, tag = "18")]
    pub attempt_dispatched_ms: i64,
    #[prost(message, optional, tag = "19")]
    pub cancellation: Option<NexusCancellationInfo>,
    /// The handler's workflow, from the link a started answer carried (none: unknown). After a
    /// restart its close is looked up there in case its callback was lost.
    #[prost(message, optional, tag = "20")]
    pub handler_workflow: Option<NexusHandlerWorkflow>,
    /// Longest the operation may wait to start (0: no limit).
    #[prost(int64, tag = "21")]
    pub schedule_to_start_ms: i64,
    /// Longest a started operation may run (0: no limit).
    #[prost(int64, tag = "22")]
    pub start_to_close_ms: i64,
    /// When it started (0: not started).
    #[prost(int64, tag = "23")]
    pub started_time_ms: i64,
}

/// The workflow run backing a started Nexus operation.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NexusHandlerWorkflow {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub workflow_id: String,
    #[prost(string, tag = "3")]
    pub run_id: String,
}

/// A cancellation the run requested for a Nexus operation. `state` is a
/// `NexusOperationCancellationState`: SCHEDULED until the operation has started and a handler
/// worker took the cancel request, BACKING_OFF between attempts, SUCCEEDED or FAILED once
/// answered.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NexusCancellationInfo {
    #[prost(int64, tag = "1")]
    pub requested_event_id: i64,
    #[prost(int64, tag = "2")]
    pub requested_time_ms: i64,
    #[prost(int32, tag = "3")]
    pub state: i32,
    #[prost(int32, tag = "4")]
    pub attempt: i32,
    #[prost(int64, tag = "5")]
    pub attempt_dispatched_ms: i64,
    #[prost(int64, tag = "6")]
    pub next_attempt_time_ms: i64,
    #[prost(int64, tag = "7")]
    pub last_attempt_complete_time_ms: i64,
    #[prost(message, optional, tag = "8")]
    pub last_attempt_failure: Option<Failure>,
}

/// A pending user timer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimerInfo {
    #[prost(string, tag = "1")]
    pub timer_id: String,
    #[prost(int64, tag = "2")]
    pub started_event_id: i64,
    #[prost(int64, tag = "3")]
    pub fire_time_ms: i64,
}

impl ExecutionState {
    pub fn is_running(&self) -> bool {
        self.status == crate::api::enums::v1::WorkflowExecutionStatus::Running as i32
    }

    pub fn activity(&self, scheduled_event_id: i64) -> Option<&ActivityInfo> {
        find_by_event_id(&self.activities, scheduled_event_id, |a| {
            a.scheduled_event_id
        })
        .map(|i| &self.activities[i])
    }

    pub fn activity_mut(&mut self, scheduled_event_id: i64) -> Option<&mut ActivityInfo> {
        find_by_event_id(&self.activities, scheduled_event_id, |a| {
            a.scheduled_event_id
        })
        .map(|i| &mut self.activities[i])
    }

    /// Removes a pending activity (keeping the others in event order).
    pub fn remove_activity(&mut self, scheduled_event_id: i64) -> Option<ActivityInfo> {
        find_by_event_id(&self.activities, scheduled_event_id, |a| {
            a.scheduled_event_id
        })
        .map(|i| self.activities.remove(i))
    }

    pub fn timer(&self, started_event_id: i64) -> Option<&TimerInfo> {
        find_by_event_id(&self.timers, started_event_id, |t| t.started_event_id)
            .map(|i| &self.timers[i])
    }

    /// Removes a pending timer (keeping the others in event order).
    pub fn remove_timer(&mut self, started_event_id: i64) -> Option<TimerInfo> {
        find_by_event_id(&self.timers, started_event_id, |t| t.started_event_id)
            .map(|i| self.timers.remove(i))
    }

    pub fn child(&self, initiated_event_id: i64) -> Option<&ChildInfo> {
        find_by_event_id(&self.children, initiated_event_id, |c| c.initiated_event_id)
            .map(|i| &self.children[i])
    }

    pub fn child_mut(&mut self, initiated_event_id: i64) -> Option<&mut ChildInfo> {
        find_by_event_id(&self.children, initiated_event_id, |c| c.initiated_event_id)
            .map(|i| &mut self.children[i])
    }

    /// Removes a pending child (keeping the others in event order).
    pub fn remove_child(&mut self, initiated_event_id: i64) -> Option<ChildInfo> {
        find_by_event_id(&self.children, initiated_event_id, |c| c.initiated_event_id)
            .map(|i| self.children.remove(i))
    }

    pub fn external_signal(&self, initiated_event_id: i64) -> Option<&ExternalSignalInfo> {
        find_by_event_id(&self.external_signals, initiated_event_id, |s| {
            s.initiated_event_id
        })
        .map(|i| &self.external_signals[i])
    }

    pub fn external_cancel(&self, initiated_event_id: i64) -> Option<&ExternalCancelInfo> {
        find_by_event_id(&self.external_cancels, initiated_event_id, |s| {
            s.initiated_event_id
        })
        .map(|i| &self.external_cancels[i])
    }

    pub fn nexus_operation(&self, scheduled_event_id: i64) -> Option<&NexusOperationInfo> {
        find_by_event_id(&self.nexus_operations, scheduled_event_id, |o| {
            o.scheduled_event_id
        })
        .map(|i| &self.nexus_operations[i])
    }

    pub fn nexus_operation_mut(
        &mut self,
        scheduled_event_id: i64,
    ) -> Option<&mut NexusOperationInfo> {
        find_by_event_id(&self.nexus_operations, scheduled_event_id, |o| {
            o.scheduled_event_id
        })
        .map(|i| &mut self.nexus_operations[i])
    }

    /// Removes a pending Nexus operation (keeping the others in event order).
    pub fn remove_nexus_operation(
        &mut self,
        scheduled_event_id: i64,
    ) -> Option<NexusOperationInfo> {
        find_by_event_id(&self.nexus_operations, scheduled_event_id, |o| {
            o.scheduled_event_id
        })
        .map(|i| self.nexus_operations.remove(i))
    }

    pub fn activity_by_id(&self, activity_id: &str) -> Option<&ActivityInfo> {
        self.activities
            .iter()
            .find(|a| a.activity_id == activity_id)
    }

    pub fn workflow_task_started(&self) -> bool {
        self.workflow_task
            .as_ref()
            .is_some_and(WorkflowTaskInfo::is_started)
    }
}

/// The position of the entry whose event id is `id`. Pending work is appended as its events
/// are written, so each list is in event-id order and a binary search finds it; a list out of
/// order (never written so, but cheap to survive) falls back to a scan.
fn find_by_event_id<T>(items: &[T], id: i64, key: impl Fn(&T) -> i64) -> Option<usize> {
    match items.binary_search_by_key(&id, &key) {
        Ok(i) => Some(i),
        Err(_) => items.iter().position(|x| key(x) == id),
    }
}
