//! RespondWorkflowTaskCompleted: the workflow task's commands turned into history events.
//!
//! Order written: WorkflowTaskCompleted, one or more events per command in command order, the
//! events buffered while the task ran, then a new WorkflowTaskScheduled if the workflow has
//! something new to see. A bad command fails the whole task instead (nothing of the commands
//! is kept) with the cause the reference server uses.

use crate::activity_options::ActivityTimeouts;
use crate::api::{
    command::v1::{
        CancelTimerCommandAttributes, Command, RecordMarkerCommandAttributes,
        RequestCancelActivityTaskCommandAttributes, ScheduleActivityTaskCommandAttributes,
        StartTimerCommandAttributes, command::Attributes as Cmd,
    },
    enums::v1::{WorkflowExecutionStatus, WorkflowTaskFailedCause as Cause},
    failure::v1::{Failure, ServerFailureInfo, failure::FailureInfo},
    history::v1::{
        ActivityTaskCancelRequestedEventAttributes, ActivityTaskCanceledEventAttributes,
        ActivityTaskScheduledEventAttributes, MarkerRecordedEventAttributes,
        TimerCanceledEventAttributes, TimerStartedEventAttributes,
        WorkflowExecutionCanceledEventAttributes, WorkflowTaskCompletedEventAttributes,
        history_event::Attributes,
    },
    taskqueue::v1::TaskQueue,
    workflowservice::v1::RespondWorkflowTaskCompletedRequest,
};
use crate::state::{ActivityInfo, TimerInfo};
use crate::workflow_task::WorkflowTaskRef;
use crate::{Effect, EngineError, Transition, retry, time};

/// What came of a workflow task completion.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CompletionOutcome {
    /// Set when a command was rejected: the task was failed with this message, and the caller
    /// answers InvalidArgument after committing.
    pub rejected: Option<String>,
    /// A new workflow task was scheduled by this completion.
    pub new_workflow_task: bool,
    /// What happened to updates answered by this completion.
    pub updates: Vec<crate::UpdateResult>,
    /// Set when a speculative task was dropped: the worker rewinds its history to this event.
    pub reset_history_event_id: i64,
}

/// What a whole RespondWorkflowTaskCompleted decided
/// ([`Transition::respond_workflow_task_completed`]): the completion and the tasks its reply
/// hands back to the completing worker.
#[derive(Debug, Default)]
pub struct TaskCompletion {
    pub outcome: CompletionOutcome,
    /// The next workflow task was started for the completing worker, to go in the reply.
    pub inline_task: bool,
    /// Scheduled event ids of the activities started eagerly for the completing worker.
    pub eager_activities: Vec<i64>,
}

/// Why a command fails its workflow task.
pub(crate) struct Rejection {
    cause: Cause,
    message: String,
}

impl Rejection {
    pub(crate) fn new(cause: Cause, message: impl Into<String>) -> Rejection {
        Rejection {
            cause,
            message: message.into(),
        }
    }
}

fn reject(cause: Cause, message: impl Into<String>) -> Rejection {
    Rejection::new(cause, message)
}

/// The name the reference server prints for a cause: `PendingActivitiesLimitExceeded` for
/// `WORKFLOW_TASK_FAILED_CAUSE_PENDING_ACTIVITIES_LIMIT_EXCEEDED`.
pub(crate) fn cause_name(cause: Cause) -> String {
    let upper = cause.as_str_name();
    upper_snake_to_camel(
        upper
            .strip_prefix("WORKFLOW_TASK_FAILED_CAUSE_")
            .unwrap_or(upper),
    )
}

/// `NEXUS_OPERATION_SCHEDULED` as `NexusOperationScheduled`.
pub(crate) fn upper_snake_to_camel(words: &str) -> String {
    words
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_string() + &chars.as_str().to_lowercase(),
                None => String::new(),
            }
        })
        .collect()
}

/// The message of a failed workflow task, as the reference server words it: the cause's name,
/// then what was wrong.
fn failure_message(rejection: &Rejection) -> String {
    let name = cause_name(rejection.cause);
    if rejection.message.starts_with(&format!("{name}:")) {
        rejection.message.clone()
    } else {
        format!("{name}: {}", rejection.message)
    }
}

/// Temporal's per-workflow count limits (`limit.numPending*.error`): a command that would add
/// one more once `pending` reached `limit` fails the workflow task with `cause`.
pub(crate) fn check_pending(
    pending: usize,
    limit: i64,
    what: &str,
    cause: Cause,
) -> Result<(), Rejection> {
    let pending = i64::try_from(pending).unwrap_or(i64::MAX);
    if limit <= 0 || pending < limit {
        return Ok(());
    }
    Err(reject(
        cause,
        format!("the number of {what}, {pending}, has reached the per-workflow limit of {limit}"),
    ))
}

impl Transition<'_> {
    /// Applies a RespondWorkflowTaskCompleted for the started task `task` whose commands
    /// name no Nexus endpoint (one they name is not registered).
    pub fn complete_workflow_task(
        &mut self,
        task: WorkflowTaskRef,
        req: &RespondWorkflowTaskCompletedRequest,
    ) -> Result<CompletionOutcome, EngineError> {
        self.complete_workflow_task_with_endpoints(task, req, Default::default())
    }

    /// RespondWorkflowTaskCompleted as a whole, for the worker `poller`: the completion
    /// ([`Transition::complete_workflow_task_with_endpoints`]); then, unless a command was
    /// rejected or the run closed, the activities it asks to run eagerly on its own task queue,
    /// started for that worker; then, when it asks for it (`return_new_workflow_task`) and
    /// the completion scheduled one, the next workflow task, started for it instead of being
    /// dispatched.
    pub fn respond_workflow_task_completed(
        &mut self,
        task: WorkflowTaskRef,
        req: &RespondWorkflowTaskCompletedRequest,
        endpoints: crate::nexus::NexusEndpointTargets,
        poller: &crate::Poller,
    ) -> Result<TaskCompletion, EngineError> {
        let outcome = self.complete_workflow_task_with_endpoints(task, req, endpoints)?;
        if outcome.rejected.is_some() || !self.state.is_running() {
            return Ok(TaskCompletion {
                outcome,
                ..TaskCompletion::default()
            });
        }
        let eager_activities = self.start_eager_activities(req, poller);
        let inline_task = req.return_new_workflow_task
            && outcome.new_workflow_task
            && self.start_inline_workflow_task(poller)?;
        Ok(TaskCompletion {
            outcome,
            inline_task,
            eager_activities,
        })
    }

    /// Applies a RespondWorkflowTaskCompleted for the started task `task`; `endpoints` are
    /// the registered Nexus endpoints its ScheduleNexusOperation commands name.
    pub fn complete_workflow_task_with_endpoints(
        &mut self,
        task: WorkflowTaskRef,
        req: &RespondWorkflowTaskCompletedRequest,
        endpoints: crate::nexus::NexusEndpointTargets,
    ) -> Result<CompletionOutcome, EngineError> {
        self.check_started_workflow_task(task)?;
        self.nexus_endpoints = endpoints;
        let snapshot = self.state.clone();
        let (events_before, effects_before) = (self.events.len(), self.effects.len());
        match self.apply_completion(req) {
            Ok((new_workflow_task, updates)) => Ok(CompletionOutcome {
                rejected: None,
                new_workflow_task,
                updates,
                reset_history_event_id: self.dropped_speculative_at,
            }),
            Err(rejection) => {
                *self.state = snapshot;
                self.events.truncate(events_before);
                self.effects.truncate(effects_before);
                self.activity_ids = None;
                self.timer_ids = None;
                // The reference server records a server failure named after the cause.
                let message = failure_message(&rejection);
                let failure = Failure {
                    message: message.clone(),
                    failure_info: Some(
                        FailureInfo::ServerFailureInfo(ServerFailureInfo::default()),
                    ),
                    ..Default::default()
                };
                self.workflow_task_failed(rejection.cause as i32, Some(failure), &req.identity);
                Ok(CompletionOutcome {
                    rejected: Some(message),
                    new_workflow_task: true,
                    updates: Vec::new(),
                    reset_history_event_id: 0,
                })
            }
        }
    }

    #[allow(deprecated)] // worker_version: still what the reference server records
    fn apply_completion(
        &mut self,
        req: &RespondWorkflowTaskCompletedRequest,
    ) -> Result<(bool, Vec<crate::UpdateResult>), Rejection> {
        let mut updates = Vec::new();
        let mut applied = std::collections::HashSet::new();
        // Rejections leave no trace: they are answered even when the task is dropped.
        for message in &req.messages {
            if let Some(body) = &message.body
                && body.type_url.ends_with("temporal.api.update.v1.Rejection")
            {
                updates.push(self.apply_protocol_message(message)?);
                applied.insert(message.id.clone());
            }
        }
        let speculative_with_nothing = self
            .state
            .workflow_task
            .as_ref()
            .is_some_and(|wt| wt.speculative)
            && req.commands.is_empty()
            && self.state.buffered_events.is_empty()
            && !req.force_create_new_workflow_task;
        if speculative_with_nothing {
            // A speculative task that produced nothing leaves no trace in history; the worker
            // rewinds to the last written event.
            self.state.workflow_task = None;
            self.dropped_speculative_at = self.state.next_event_id - 1;
            let new_task = self.schedule_for_waiting_updates(&updates);
            return Ok((new_task, updates));
        }
        self.write_pending_task_events();
        let wt = self.state.workflow_task.take().expect("checked by caller");
        let completed_id = self.append(Attributes::WorkflowTaskCompletedEventAttributes(
            WorkflowTaskCompletedEventAttributes {
                scheduled_event_id: wt.scheduled_event_id,
                started_event_id: wt.started_event_id,
                identity: req.identity.clone(),
                sdk_metadata: req.sdk_metadata.clone(),
                metering_metadata: req.metering_metadata,
                worker_version: (!wt.build_id.is_empty()).then(|| {
                    crate::api::common::v1::WorkerVersionStamp {
                        build_id: wt.build_id.clone(),
                        use_versioning: false,
                    }
                }),
                versioning_behavior: req.versioning_behavior,
                ..Default::default()
            },
        ));
        self.state.last_completed_wt_started_event_id = wt.started_event_id;
        self.state.last_wt_completed_event_id = completed_id;
        #[allow(deprecated)] // binary_checksum: what workers without build ids send
        crate::reset::record_reset_point(
            self.state,
            &wt.build_id,
            &req.binary_checksum,
            completed_id,
            self.now,
        );
        match req
            .sticky_attributes
            .as_ref()
            .and_then(|s| s.worker_task_queue.as_ref())
        {
            Some(queue) if !queue.name.is_empty() => {
                self.state.sticky_task_queue = queue.name.clone();
                self.state.sticky_schedule_to_start_ms = time::duration_ms(
                    req.sticky_attributes
                        .as_ref()
                        .and_then(|s| s.schedule_to_start_timeout.as_ref()),
                );
            }
            _ => self.state.sticky_task_queue.clear(),
        }
        let mut needs_task = false;
        let last = req.commands.len().saturating_sub(1);
        for (index, command) in req.commands.iter().enumerate() {
            let closes = matches!(
                command.attributes,
                Some(Cmd::CompleteWorkflowExecutionCommandAttributes(_))
                    | Some(Cmd::FailWorkflowExecutionCommandAttributes(_))
                    | Some(Cmd::CancelWorkflowExecutionCommandAttributes(_))
                    | Some(Cmd::ContinueAsNewWorkflowExecutionCommandAttributes(_))
            );
            if closes && index != last {
                return Err(reject(
                    Cause::BadCompleteWorkflowExecutionAttributes,
                    "invalid command sequence: a command that closes the workflow must be the last command",
                ));
            }
            if closes && !self.state.buffered_events.is_empty() {
                return Err(reject(
                    Cause::UnhandledCommand,
                    "UnhandledCommand: new events arrived while the workflow task was running",
                ));
            }
            if let Some(Cmd::ProtocolMessageCommandAttributes(p)) = &command.attributes {
                let message = req
                    .messages
                    .iter()
                    .find(|m| m.id == p.message_id)
                    .ok_or_else(|| {
                        reject(
                            Cause::BadUpdateWorkflowExecutionMessage,
                            format!("no protocol message {}", p.message_id),
                        )
                    })?;
                if applied.insert(message.id.clone()) {
                    updates.push(self.apply_protocol_message(message)?);
                }
                continue;
            }
            needs_task |= self.apply_command(command, completed_id)?;
        }
        // Messages no command placed go after the commands' events.
        for message in &req.messages {
            if applied.insert(message.id.clone()) && self.state.is_running() {
                updates.push(self.apply_protocol_message(message)?);
            }
        }
        if !self.state.is_running() {
            return Ok((false, updates));
        }
        needs_task |= self.flush_buffer();
        if needs_task || req.force_create_new_workflow_task {
            self.schedule_workflow_task(1);
            return Ok((true, updates));
        }
        let new_task = self.schedule_for_waiting_updates(&updates);
        Ok((new_task, updates))
    }

    /// Admitted updates this completion did not answer need another (speculative) task.
    fn schedule_for_waiting_updates(&mut self, answered: &[crate::UpdateResult]) -> bool {
        use crate::UpdateResult as U;
        let is_answered = |id: &String| {
            answered.iter().any(|r| match r {
                U::Accepted { update_id }
                | U::Rejected { update_id, .. }
                | U::Completed { update_id, .. } => update_id == id,
            })
        };
        let waiting = self.pending_update_ids.iter().any(|id| !is_answered(id));
        if waiting && self.state.workflow_task.is_none() && self.state.is_running() {
            self.schedule_workflow_task_with(1, true);
            return true;
        }
        false
    }

    /// Applies one command; returns true when it produced an event the workflow must see.
    fn apply_command(&mut self, command: &Command, completed_id: i64) -> Result<bool, Rejection> {
        crate::validate::command(command)?;
        let first_event = self.events.len();
        let needs_task = self.apply_command_attributes(command, completed_id)?;
        // The command's user metadata (a timer's or activity's summary) goes on the event
        // the command produced, its first one, as the reference server records it.
        if let Some(metadata) = &command.user_metadata {
            self.set_user_metadata(first_event, metadata);
            let initiated = self.events.get(first_event).map(|e| e.event_id);
            if let Some(Cmd::StartChildWorkflowExecutionCommandAttributes(_)) = &command.attributes
                && let Some(child) = (self.state.children.iter_mut().rev())
                    .find(|c| Some(c.initiated_event_id) == initiated)
            {
                // The child is started with it too (the reference reads it from the
                // initiated event).
                child.user_metadata = Some(metadata.clone());
            }
        }
        Ok(needs_task)
    }

    fn apply_command_attributes(
        &mut self,
        command: &Command,
        completed_id: i64,
    ) -> Result<bool, Rejection> {
        match &command.attributes {
            Some(Cmd::ScheduleActivityTaskCommandAttributes(a)) => {
                self.schedule_activity(a, completed_id)?;
                Ok(false)
            }
            Some(Cmd::RequestCancelActivityTaskCommandAttributes(a)) => {
                self.request_cancel_activity(a, completed_id)
            }
            Some(Cmd::StartTimerCommandAttributes(a)) => {
                self.start_timer(a, completed_id)?;
                Ok(false)
            }
            Some(Cmd::CancelTimerCommandAttributes(a)) => {
                self.cancel_timer(a, completed_id)?;
                Ok(false)
            }
            Some(Cmd::RecordMarkerCommandAttributes(a)) => {
                self.record_marker(a, completed_id)?;
                Ok(false)
            }
            Some(Cmd::CompleteWorkflowExecutionCommandAttributes(a)) => {
                self.complete_workflow(a.result.clone(), completed_id);
                Ok(false)
            }
            Some(Cmd::FailWorkflowExecutionCommandAttributes(a)) => {
                self.fail_workflow(a.failure.clone(), completed_id);
                Ok(false)
            }
            Some(Cmd::UpsertWorkflowSearchAttributesCommandAttributes(a)) => {
                let upserted = a.search_attributes.clone().unwrap_or_default();
                let merged = self
                    .state
                    .search_attributes
                    .get_or_insert_with(Default::default);
                merge_payload_map(&mut merged.indexed_fields, &upserted.indexed_fields);
                self.append(Attributes::UpsertWorkflowSearchAttributesEventAttributes(
                    crate::api::history::v1::UpsertWorkflowSearchAttributesEventAttributes {
                        workflow_task_completed_event_id: completed_id,
                        search_attributes: Some(upserted),
                    },
                ));
                Ok(false)
            }
            Some(Cmd::ModifyWorkflowPropertiesCommandAttributes(a)) => {
                let upserted = a.upserted_memo.clone().unwrap_or_default();
                let merged = self.state.memo.get_or_insert_with(Default::default);
                merge_payload_map(&mut merged.fields, &upserted.fields);
                self.append(Attributes::WorkflowPropertiesModifiedEventAttributes(
                    crate::api::history::v1::WorkflowPropertiesModifiedEventAttributes {
                        workflow_task_completed_event_id: completed_id,
                        upserted_memo: Some(upserted),
                    },
                ));
                Ok(false)
            }
            Some(Cmd::ContinueAsNewWorkflowExecutionCommandAttributes(a)) => {
                self.continue_as_new(a, completed_id);
                Ok(false)
            }
            Some(Cmd::StartChildWorkflowExecutionCommandAttributes(a)) => {
                self.start_child(a, completed_id)?;
                Ok(false)
            }
            Some(Cmd::SignalExternalWorkflowExecutionCommandAttributes(a)) => {
                self.signal_external(a, completed_id)?;
                Ok(false)
            }
            Some(Cmd::RequestCancelExternalWorkflowExecutionCommandAttributes(a)) => {
                self.cancel_external(a, completed_id)?;
                Ok(false)
            }
            Some(Cmd::ScheduleNexusOperationCommandAttributes(a)) => {
                self.schedule_nexus_operation(a, completed_id)?;
                Ok(false)
            }
            Some(Cmd::RequestCancelNexusOperationCommandAttributes(a)) => {
                self.request_cancel_nexus_operation(a, completed_id)
            }
            Some(Cmd::CancelWorkflowExecutionCommandAttributes(a)) => {
                let id = self.append(Attributes::WorkflowExecutionCanceledEventAttributes(
                    WorkflowExecutionCanceledEventAttributes {
                        workflow_task_completed_event_id: completed_id,
                        details: a.details.clone(),
                    },
                ));
                self.close(WorkflowExecutionStatus::Canceled, id);
                Ok(false)
            }
            Some(_) => Err(reject(Cause::UnhandledCommand, "unsupported command")),
            None => Err(reject(Cause::UnhandledCommand, "command has no attributes")),
        }
    }

    fn schedule_activity(
        &mut self,
        a: &ScheduleActivityTaskCommandAttributes,
        completed_id: i64,
    ) -> Result<(), Rejection> {
        let bad = |m: &str| reject(Cause::BadScheduleActivityAttributes, m);
        if a.activity_id.is_empty() {
            return Err(bad("ActivityId is not set on ScheduleActivityTaskCommand."));
        }
        let activity_type = a
            .activity_type
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default();
        if activity_type.is_empty() {
            return Err(bad(
                "ActivityType is not set on ScheduleActivityTaskCommand.",
            ));
        }
        if self.pending_activity_ids().contains(&a.activity_id) {
            return Err(reject(
                Cause::ScheduleActivityDuplicateId,
                format!("Activity ID {} already exists.", a.activity_id),
            ));
        }
        let ActivityTimeouts {
            schedule_to_close,
            schedule_to_start,
            start_to_close,
            heartbeat,
        } = ActivityTimeouts::normalized(
            &a.schedule_to_close_timeout,
            &a.schedule_to_start_timeout,
            &a.start_to_close_timeout,
            &a.heartbeat_timeout,
            self.state.run_timeout_ms,
        )
        .map_err(|m| bad(&m))?;
        let policy = retry::normalize(a.retry_policy.as_ref()).map_err(|m| bad(&m))?;
        check_pending(
            self.state.activities.len(),
            self.limits.pending_activities,
            "pending activities",
            Cause::PendingActivitiesLimitExceeded,
        )?;
        let queue = match a.task_queue.as_ref().map(|q| q.name.as_str()) {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => self.state.task_queue.clone(),
        };
        let scheduled_event_id = self.append(Attributes::ActivityTaskScheduledEventAttributes(
            ActivityTaskScheduledEventAttributes {
                activity_id: a.activity_id.clone(),
                activity_type: a.activity_type.clone(),
                task_queue: Some(TaskQueue {
                    name: queue.clone(),
                    kind: 1,
                    normal_name: String::new(),
                }),
                header: a.header.clone(),
                input: a.input.clone(),
                // All four present, zero when unset, as the reference server records them.
                schedule_to_close_timeout: Some(time::duration(schedule_to_close)),
                schedule_to_start_timeout: Some(time::duration(schedule_to_start)),
                start_to_close_timeout: Some(time::duration(start_to_close)),
                heartbeat_timeout: Some(time::duration(heartbeat)),
                workflow_task_completed_event_id: completed_id,
                retry_policy: Some(policy.clone()),
                priority: a.priority.clone(),
                #[allow(deprecated)]
                use_workflow_build_id: a.use_workflow_build_id,
            },
        ));
        if let Some(ids) = self.activity_ids.as_mut() {
            ids.insert(a.activity_id.clone());
        }
        self.state.activities.push(ActivityInfo {
            scheduled_event_id,
            activity_id: a.activity_id.clone(),
            activity_type,
            task_queue: queue.clone(),
            schedule_to_close_ms: schedule_to_close,
            schedule_to_start_ms: schedule_to_start,
            start_to_close_ms: start_to_close,
            heartbeat_timeout_ms: heartbeat,
            retry_policy: Some(policy),
            attempt: 1,
            scheduled_time_ms: self.now,
            attempt_scheduled_time_ms: self.now,
            ..Default::default()
        });
        self.effects.push(Effect::DispatchActivityTask {
            task_queue: queue,
            scheduled_event_id,
            attempt: 1,
        });
        Ok(())
    }

    fn request_cancel_activity(
        &mut self,
        a: &RequestCancelActivityTaskCommandAttributes,
        completed_id: i64,
    ) -> Result<bool, Rejection> {
        let Some(activity) = self.state.activity(a.scheduled_event_id).cloned() else {
            return Err(reject(
                Cause::BadRequestCancelActivityAttributes,
                format!(
                    "Activity with scheduled event id {} not found.",
                    a.scheduled_event_id
                ),
            ));
        };
        let requested_id = self.append(Attributes::ActivityTaskCancelRequestedEventAttributes(
            ActivityTaskCancelRequestedEventAttributes {
                scheduled_event_id: a.scheduled_event_id,
                workflow_task_completed_event_id: completed_id,
            },
        ));
        if activity.is_started() {
            if let Some(info) = self.state.activity_mut(a.scheduled_event_id) {
                info.cancel_requested = true;
                info.cancel_requested_event_id = requested_id;
            }
            return Ok(false);
        }
        self.append(Attributes::ActivityTaskCanceledEventAttributes(
            ActivityTaskCanceledEventAttributes {
                details: None,
                latest_cancel_requested_event_id: requested_id,
                scheduled_event_id: a.scheduled_event_id,
                started_event_id: 0,
                identity: String::new(),
                ..Default::default()
            },
        ));
        if let Some(ids) = self.activity_ids.as_mut() {
            ids.remove(&activity.activity_id);
        }
        self.state.remove_activity(a.scheduled_event_id);
        Ok(true)
    }

    fn start_timer(
        &mut self,
        a: &StartTimerCommandAttributes,
        completed_id: i64,
    ) -> Result<(), Rejection> {
        if a.timer_id.is_empty() {
            return Err(reject(
                Cause::BadStartTimerAttributes,
                "TimerId is not set on StartTimerCommand.",
            ));
        }
        if self.pending_timer_ids().contains_key(&a.timer_id) {
            return Err(reject(
                Cause::StartTimerDuplicateId,
                format!("Timer with ID {} already exists.", a.timer_id),
            ));
        }
        // As the reference (`ValidateAndCapProtoDuration`): an unset or zero timeout is a
        // timer that fires at once (`workflow.sleep(0)`); only a negative one is refused.
        if let Some(cause) = time::invalid_duration(a.start_to_fire_timeout.as_ref()) {
            return Err(reject(
                Cause::BadStartTimerAttributes,
                format!(
                    "An invalid StartToFireTimeout is set on StartTimerCommand: {cause}. TimerId={}",
                    a.timer_id
                ),
            ));
        }
        let fire_in = time::duration_ms(a.start_to_fire_timeout.as_ref());
        let started_event_id = self.append(Attributes::TimerStartedEventAttributes(
            TimerStartedEventAttributes {
                timer_id: a.timer_id.clone(),
                start_to_fire_timeout: a.start_to_fire_timeout,
                workflow_task_completed_event_id: completed_id,
            },
        ));
        if let Some(ids) = self.timer_ids.as_mut() {
            ids.insert(a.timer_id.clone(), started_event_id);
        }
        self.state.timers.push(TimerInfo {
            timer_id: a.timer_id.clone(),
            started_event_id,
            fire_time_ms: self.now + fire_in,
        });
        Ok(())
    }

    fn cancel_timer(
        &mut self,
        a: &CancelTimerCommandAttributes,
        completed_id: i64,
    ) -> Result<(), Rejection> {
        let started = self.pending_timer_ids().get(&a.timer_id).copied();
        let Some(timer) = started.and_then(|id| self.state.timer(id)).cloned() else {
            return Err(reject(
                Cause::BadCancelTimerAttributes,
                format!("Timer with ID {} not found.", a.timer_id),
            ));
        };
        self.append(Attributes::TimerCanceledEventAttributes(
            TimerCanceledEventAttributes {
                timer_id: timer.timer_id.clone(),
                started_event_id: timer.started_event_id,
                workflow_task_completed_event_id: completed_id,
                identity: String::new(),
            },
        ));
        if let Some(ids) = self.timer_ids.as_mut() {
            ids.remove(&a.timer_id);
        }
        self.state.remove_timer(timer.started_event_id);
        Ok(())
    }

    /// Ids of the pending activities, indexed once per transition: a completion scheduling
    /// many activities checks each id in constant time instead of scanning them all.
    fn pending_activity_ids(&mut self) -> &std::collections::HashSet<String> {
        let activities = &self.state.activities;
        self.activity_ids
            .get_or_insert_with(|| activities.iter().map(|a| a.activity_id.clone()).collect())
    }

    /// Pending timers by id (their started event ids), indexed once per transition (see
    /// `pending_activity_ids`).
    fn pending_timer_ids(&mut self) -> &std::collections::HashMap<String, i64> {
        let timers = &self.state.timers;
        self.timer_ids.get_or_insert_with(|| {
            timers
                .iter()
                .map(|t| (t.timer_id.clone(), t.started_event_id))
                .collect()
        })
    }

    fn record_marker(
        &mut self,
        a: &RecordMarkerCommandAttributes,
        completed_id: i64,
    ) -> Result<(), Rejection> {
        if a.marker_name.is_empty() {
            return Err(reject(
                Cause::BadRecordMarkerAttributes,
                "MarkerName is not set on RecordMarkerCommand.",
            ));
        }
        self.append(Attributes::MarkerRecordedEventAttributes(
            MarkerRecordedEventAttributes {
                marker_name: a.marker_name.clone(),
                details: a.details.clone(),
                workflow_task_completed_event_id: completed_id,
                header: a.header.clone(),
                failure: a.failure.clone(),
            },
        ));
        Ok(())
    }
}

/// Upserts `changes` into `target`; a change whose payload is empty or JSON `null` removes the key.
fn merge_payload_map(
    target: &mut std::collections::HashMap<String, crate::api::common::v1::Payload>,
    changes: &std::collections::HashMap<String, crate::api::common::v1::Payload>,
) {
    for (key, payload) in changes {
        if payload.data.is_empty() || payload.data == b"null" {
            target.remove(key);
        } else {
            target.insert(key.clone(), payload.clone());
        }
    }
}
