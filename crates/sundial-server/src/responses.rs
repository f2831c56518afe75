//! Replies built from a run's entry: task hand-outs and descriptions.

use crate::error::ServiceError;
use crate::run::RunEntry;
use crate::tokens::TaskToken;
use sundial_engine::api::protocol::v1::{Message, message};
use sundial_engine::api::{
    common::v1::{ActivityType, WorkflowExecution, WorkflowType},
    enums::v1::{ParentClosePolicy, PendingActivityState, PendingWorkflowTaskState, TaskQueueKind},
    history::v1::{History, HistoryEvent, history_event::Attributes},
    taskqueue::v1::TaskQueue,
    workflow::v1::{
        PendingActivityInfo, PendingWorkflowTaskInfo, WorkflowExecutionConfig,
        WorkflowExecutionInfo,
    },
    workflowservice::v1::{
        DescribeWorkflowExecutionResponse, PollActivityTaskQueueResponse,
        PollWorkflowTaskQueueResponse,
    },
};
use sundial_engine::time::{duration, opt_duration, timestamp};

fn execution(entry: &RunEntry) -> WorkflowExecution {
    WorkflowExecution {
        workflow_id: entry.state.workflow_id.clone(),
        run_id: entry.state.run_id.clone(),
    }
}

/// The started workflow task of `entry`, as a poller receives it. Sticky tasks carry only the
/// events since the worker's last completed task; others carry the whole history. `None`
/// when no workflow task is started.
pub fn workflow_task(
    entry: &RunEntry,
) -> Result<Option<PollWorkflowTaskQueueResponse>, ServiceError> {
    let st = &entry.state;
    let Some(wt) = st.workflow_task.as_ref().filter(|wt| wt.is_started()) else {
        return Ok(None);
    };
    let first = if wt.sticky {
        st.last_completed_wt_started_event_id + 1
    } else {
        1
    };
    let mut events = entry.events.decode_range(first, wt.started_event_id)?;
    if wt.unwritten {
        // A retry's Scheduled/Started events are shown to the worker, not yet written.
        events.extend(wt.pending_events.iter().cloned());
    }
    // Admitted updates ride on the task as protocol messages.
    let messages = entry
        .updates
        .lock()
        .waiting()
        .map(|slot| {
            let update_id = slot
                .request
                .meta
                .as_ref()
                .map(|m| m.update_id.clone())
                .unwrap_or_default();
            Message {
                id: format!("{update_id}/request"),
                protocol_instance_id: update_id,
                body: Some(prost_wkt_types::Any {
                    type_url: "type.googleapis.com/temporal.api.update.v1.Request".into(),
                    value: prost::Message::encode_to_vec(&slot.request),
                }),
                sequencing_id: Some(message::SequencingId::EventId(wt.started_event_id - 1)),
            }
        })
        .collect();
    let token = TaskToken {
        namespace: st.namespace.clone(),
        workflow_id: st.workflow_id.clone(),
        run_id: st.run_id.clone(),
        scheduled_event_id: wt.scheduled_event_id,
        seq_or_attempt: wt.seq,
        is_activity: false,
        activity_id: String::new(),
        query_id: 0,
    };
    Ok(Some(PollWorkflowTaskQueueResponse {
        task_token: token.encode_bytes(),
        workflow_execution: Some(execution(entry)),
        workflow_type: Some(WorkflowType {
            name: st.workflow_type.clone(),
        }),
        previous_started_event_id: st.last_completed_wt_started_event_id,
        started_event_id: wt.started_event_id,
        attempt: wt.attempt,
        backlog_count_hint: 0,
        history: Some(History { events }),
        workflow_execution_task_queue: Some(TaskQueue {
            name: st.task_queue.clone(),
            kind: TaskQueueKind::Normal as i32,
            normal_name: String::new(),
        }),
        scheduled_time: Some(timestamp(wt.scheduled_time_ms)),
        started_time: Some(timestamp(wt.started_time_ms)),
        messages,
        ..Default::default()
    }))
}

/// The started activity attempt `scheduled_event_id`, as a poller receives it. Its header and
/// input come from the ActivityTaskScheduled event (the run's state does not repeat them);
/// `entry`'s history must be loaded.
pub fn activity_task(
    entry: &RunEntry,
    scheduled_event_id: i64,
) -> Option<PollActivityTaskQueueResponse> {
    let st = &entry.state;
    let a = st.activity(scheduled_event_id)?;
    let (header, input) = match entry.events.get(scheduled_event_id) {
        Ok(Some(HistoryEvent {
            attributes: Some(Attributes::ActivityTaskScheduledEventAttributes(scheduled)),
            ..
        })) => (scheduled.header, scheduled.input),
        other => {
            tracing::error!(
                run_id = %st.run_id,
                scheduled_event_id,
                found = ?other.map(|e| e.map(|e| e.event_type)),
                "a pending activity's scheduled event is missing"
            );
            return None;
        }
    };
    let token = TaskToken {
        namespace: st.namespace.clone(),
        workflow_id: st.workflow_id.clone(),
        run_id: st.run_id.clone(),
        scheduled_event_id,
        seq_or_attempt: i64::from(a.attempt),
        is_activity: true,
        activity_id: a.activity_id.clone(),
        query_id: 0,
    };
    Some(PollActivityTaskQueueResponse {
        task_token: token.encode_bytes(),
        workflow_namespace: st.namespace.clone(),
        workflow_type: Some(WorkflowType {
            name: st.workflow_type.clone(),
        }),
        workflow_execution: Some(execution(entry)),
        activity_type: Some(ActivityType {
            name: a.activity_type.clone(),
        }),
        activity_id: a.activity_id.clone(),
        header,
        input,
        heartbeat_details: a.heartbeat_details.clone(),
        scheduled_time: Some(timestamp(a.scheduled_time_ms)),
        current_attempt_scheduled_time: Some(timestamp(a.attempt_scheduled_time_ms)),
        started_time: Some(timestamp(a.started_time_ms)),
        attempt: a.attempt,
        // Present even when zero, as the reference server sends them: the TypeScript SDK
        // refuses an activity task without a schedule-to-close timeout.
        schedule_to_close_timeout: Some(duration(a.schedule_to_close_ms)),
        start_to_close_timeout: Some(duration(a.start_to_close_ms)),
        heartbeat_timeout: Some(duration(a.heartbeat_timeout_ms)),
        retry_policy: a.retry_policy.clone(),
        ..Default::default()
    })
}

/// DescribeWorkflowExecution.
pub fn describe(entry: &RunEntry) -> DescribeWorkflowExecutionResponse {
    let st = &entry.state;
    let task_queue = TaskQueue {
        name: st.task_queue.clone(),
        kind: TaskQueueKind::Normal as i32,
        normal_name: String::new(),
    };
    DescribeWorkflowExecutionResponse {
        execution_config: Some(WorkflowExecutionConfig {
            task_queue: Some(task_queue),
            workflow_execution_timeout: opt_duration(st.execution_timeout_ms),
            workflow_run_timeout: opt_duration(st.run_timeout_ms),
            default_workflow_task_timeout: Some(duration(st.workflow_task_timeout_ms)),
            user_metadata: st.user_metadata.clone(),
        }),
        // What a listing shows of the run, and what only a description does.
        workflow_execution_info: Some(WorkflowExecutionInfo {
            auto_reset_points: (!st.reset_points.is_empty()).then(|| {
                sundial_engine::api::workflow::v1::ResetPoints {
                    points: st.reset_points.clone(),
                }
            }),
            versioning_info: st.versioning_override.as_ref().map(|o| {
                sundial_engine::api::workflow::v1::WorkflowExecutionVersioningInfo {
                    versioning_override: Some(sundial_engine::workflow_options::described(o)),
                    ..Default::default()
                }
            }),
            ..crate::visibility::execution_info(st)
        }),
        pending_activities: st
            .activities
            .iter()
            .map(|a| PendingActivityInfo {
                activity_id: a.activity_id.clone(),
                activity_type: Some(ActivityType {
                    name: a.activity_type.clone(),
                }),
                state: activity_state(a) as i32,
                heartbeat_details: a.heartbeat_details.clone(),
                last_heartbeat_time: (a.last_heartbeat_time_ms > 0)
                    .then(|| timestamp(a.last_heartbeat_time_ms)),
                last_started_time: (a.started_time_ms > 0).then(|| timestamp(a.started_time_ms)),
                attempt: a.attempt,
                maximum_attempts: a.retry_policy.as_ref().map_or(0, |p| p.maximum_attempts),
                scheduled_time: Some(timestamp(a.attempt_scheduled_time_ms)),
                expiration_time: (a.retry_expiration_ms() > 0)
                    .then(|| timestamp(a.retry_expiration_ms())),
                last_failure: a.last_failure.clone(),
                last_worker_identity: if a.started_identity.is_empty() {
                    a.last_worker_identity.clone()
                } else {
                    a.started_identity.clone()
                },
                last_attempt_complete_time: (a.last_attempt_complete_time_ms > 0)
                    .then(|| timestamp(a.last_attempt_complete_time_ms)),
                paused: a.paused,
                pause_info: a.pause_info.as_ref().map(pause_info),
                activity_options: Some(sundial_engine::activity_options::current_options(a)),
                ..Default::default()
            })
            .collect(),
        pending_children: st
            .children
            .iter()
            .map(|c| {
                let command = c.command.clone().unwrap_or_default();
                sundial_engine::api::workflow::v1::PendingChildExecutionInfo {
                    workflow_id: command.workflow_id,
                    run_id: c.run_id.clone(),
                    workflow_type_name: command.workflow_type.map(|t| t.name).unwrap_or_default(),
                    initiated_id: c.initiated_event_id,
                    parent_close_policy: if command.parent_close_policy
                        == ParentClosePolicy::Unspecified as i32
                    {
                        ParentClosePolicy::Terminate as i32
                    } else {
                        command.parent_close_policy
                    },
                }
            })
            .collect(),
        pending_nexus_operations: st
            .nexus_operations
            .iter()
            .map(pending_nexus_operation)
            .collect(),
        callbacks: callbacks(st),
        pending_workflow_task: st.workflow_task.as_ref().map(|wt| PendingWorkflowTaskInfo {
            state: if wt.is_started() {
                PendingWorkflowTaskState::Started
            } else {
                PendingWorkflowTaskState::Scheduled
            } as i32,
            scheduled_time: Some(timestamp(wt.scheduled_time_ms)),
            original_scheduled_time: Some(timestamp(wt.scheduled_time_ms)),
            started_time: wt.is_started().then(|| timestamp(wt.started_time_ms)),
            attempt: wt.attempt,
        }),
        ..Default::default()
    }
}

/// A pending Nexus operation as DescribeWorkflowExecution shows it.
#[allow(deprecated)] // operation_id: still filled in by the reference
fn pending_nexus_operation(
    op: &sundial_engine::state::NexusOperationInfo,
) -> sundial_engine::api::workflow::v1::PendingNexusOperationInfo {
    use sundial_engine::api::enums::v1::{
        NexusOperationCancellationState, PendingNexusOperationState,
    };
    use sundial_engine::api::workflow::v1::{
        NexusOperationCancellationInfo, PendingNexusOperationInfo,
    };
    let ms_time = |ms: i64| (ms > 0).then(|| timestamp(ms));
    PendingNexusOperationInfo {
        endpoint: op.endpoint.clone(),
        service: op.service.clone(),
        operation: op.operation.clone(),
        operation_id: op.operation_token.clone(),
        schedule_to_close_timeout: Some(duration(op.schedule_to_close_ms)),
        scheduled_time: Some(timestamp(op.scheduled_time_ms)),
        state: op.state,
        // Attempts finished, as the reference counts them (0 until the first one ends).
        attempt: if op.state == PendingNexusOperationState::Started as i32 {
            op.attempt
        } else {
            op.attempt - 1
        },
        last_attempt_complete_time: ms_time(op.last_attempt_complete_time_ms),
        last_attempt_failure: op.last_attempt_failure.clone(),
        next_attempt_schedule_time: (op.state == PendingNexusOperationState::BackingOff as i32)
            .then(|| timestamp(op.next_attempt_time_ms)),
        cancellation_info: op
            .cancellation
            .as_ref()
            .map(|c| NexusOperationCancellationInfo {
                requested_time: Some(timestamp(c.requested_time_ms)),
                state: c.state,
                attempt: if c.state == NexusOperationCancellationState::Succeeded as i32
                    || c.state == NexusOperationCancellationState::Failed as i32
                {
                    c.attempt
                } else {
                    c.attempt - 1
                },
                last_attempt_complete_time: ms_time(c.last_attempt_complete_time_ms),
                last_attempt_failure: c.last_attempt_failure.clone(),
                next_attempt_schedule_time: ms_time(c.next_attempt_time_ms),
                blocked_reason: String::new(),
            }),
        scheduled_event_id: op.scheduled_event_id,
        blocked_reason: String::new(),
        operation_token: op.operation_token.clone(),
        ..Default::default()
    }
}

/// The run's completion callbacks (it backs a Nexus operation): STANDBY while it runs,
/// SUCCEEDED once it closed (the outcome is delivered after the close's commit, retried
/// until it is).
fn callbacks(
    st: &sundial_engine::ExecutionState,
) -> Vec<sundial_engine::api::workflow::v1::CallbackInfo> {
    use sundial_engine::api::enums::v1::CallbackState;
    use sundial_engine::api::workflow::v1::{CallbackInfo, callback_info};
    st.completion_callbacks
        .iter()
        .map(|callback| CallbackInfo {
            callback: Some(callback.clone()),
            trigger: Some(callback_info::Trigger {
                variant: Some(callback_info::trigger::Variant::WorkflowClosed(
                    callback_info::WorkflowClosed {},
                )),
            }),
            registration_time: Some(timestamp(st.start_time_ms)),
            state: if st.is_running() {
                CallbackState::Standby
            } else {
                CallbackState::Succeeded
            } as i32,
            attempt: i32::from(!st.is_running()),
            last_attempt_complete_time: (!st.is_running()).then(|| timestamp(st.close_time_ms)),
            ..Default::default()
        })
        .collect()
}

/// A Nexus operation's start or cancel request as a handler worker receives it: the headers
/// (request timeout, what is left of the operation's timeout, the link back to the caller's
/// scheduled event, the command's own headers), and the request. None when the operation is
/// gone or its scheduled event cannot be read.
#[allow(deprecated)] // operation_id: still filled in by the reference
pub fn nexus_task(
    entry: &RunEntry,
    task: sundial_engine::nexus::NexusTaskRef,
    now_ms: i64,
) -> Option<sundial_engine::api::workflowservice::v1::PollNexusTaskQueueResponse> {
    use sundial_engine::api::enums::v1::EventType;
    use sundial_engine::api::nexus::v1::{
        CancelOperationRequest, Link, Request, StartOperationRequest, request,
    };
    use sundial_engine::nexus::{NEXUS_REQUEST_TIMEOUT_MS, workflow_event_link};
    let st = &entry.state;
    let op = st.nexus_operation(task.scheduled_event_id)?;
    let scheduled = match entry.events.get(task.scheduled_event_id) {
        Ok(Some(HistoryEvent {
            attributes: Some(Attributes::NexusOperationScheduledEventAttributes(scheduled)),
            ..
        })) => scheduled,
        other => {
            tracing::error!(
                run_id = %st.run_id,
                scheduled_event_id = task.scheduled_event_id,
                found = ?other.map(|e| e.map(|e| e.event_type)),
                "a pending Nexus operation's scheduled event is missing"
            );
            return None;
        }
    };
    let link_type = "temporal.api.common.v1.Link.WorkflowEvent";
    let link = workflow_event_link(
        &st.namespace,
        &st.workflow_id,
        &st.run_id,
        op.scheduled_event_id,
        EventType::NexusOperationScheduled,
    );
    let mut header = scheduled.nexus_header.clone();
    // The worker's time for this request: the request timeout, or less when one of the
    // operation's timeouts passes sooner (the handler is then cancelled in time).
    let timeouts = op.timeouts();
    let soonest = timeouts.iter().map(|(at, _)| at - now_ms).min();
    let request_ms = soonest.map_or(NEXUS_REQUEST_TIMEOUT_MS, |left| {
        left.clamp(0, NEXUS_REQUEST_TIMEOUT_MS)
    });
    header.insert("request-timeout".into(), format!("{request_ms}ms"));
    if let Some(left) = soonest {
        header.insert("operation-timeout".into(), format!("{}ms", left.max(0)));
    }
    header.insert(
        "nexus-link".into(),
        format!("<{link}>; type=\"{link_type}\""),
    );
    let variant = if task.cancel {
        request::Variant::CancelOperation(CancelOperationRequest {
            service: op.service.clone(),
            operation: op.operation.clone(),
            operation_id: op.operation_token.clone(),
            operation_token: op.operation_token.clone(),
        })
    } else {
        let callback = crate::tokens::NexusCallbackToken {
            namespace: st.namespace.clone(),
            workflow_id: st.workflow_id.clone(),
            run_id: st.run_id.clone(),
            scheduled_event_id: op.scheduled_event_id,
        };
        request::Variant::StartOperation(StartOperationRequest {
            service: op.service.clone(),
            operation: op.operation.clone(),
            request_id: op.request_id.clone(),
            callback: "temporal://system".into(),
            payload: scheduled.input,
            callback_header: [(
                crate::tokens::CALLBACK_TOKEN_HEADER.to_string(),
                callback.encode_string(),
            )]
            .into_iter()
            .collect(),
            links: vec![Link {
                url: link,
                r#type: link_type.into(),
            }],
        })
    };
    let token = crate::tokens::NexusTaskToken {
        namespace: st.namespace.clone(),
        workflow_id: st.workflow_id.clone(),
        run_id: st.run_id.clone(),
        scheduled_event_id: op.scheduled_event_id,
        cancel: task.cancel,
        attempt: task.attempt,
    };
    Some(
        sundial_engine::api::workflowservice::v1::PollNexusTaskQueueResponse {
            task_token: token.encode_bytes(),
            request: Some(Request {
                header,
                scheduled_time: Some(timestamp(op.scheduled_time_ms)),
                capabilities: Some(request::Capabilities {
                    temporal_failure_responses: true,
                }),
                variant: Some(variant),
                endpoint: op.endpoint.clone(),
            }),
            ..Default::default()
        },
    )
}

/// A pending activity's state as the reference shows it: a paused activity that is not
/// running is PAUSED, a running one PAUSE_REQUESTED (a cancellation request goes first).
fn activity_state(a: &sundial_engine::ActivityInfo) -> PendingActivityState {
    match (a.cancel_requested, a.is_started(), a.paused) {
        (true, _, _) => PendingActivityState::CancelRequested,
        (false, true, true) => PendingActivityState::PauseRequested,
        (false, true, false) => PendingActivityState::Started,
        (false, false, true) => PendingActivityState::Paused,
        (false, false, false) => PendingActivityState::Scheduled,
    }
}

/// Who paused an activity (always an operator: pause rules are not supported).
fn pause_info(
    p: &sundial_engine::ActivityPauseInfo,
) -> sundial_engine::api::workflow::v1::pending_activity_info::PauseInfo {
    use sundial_engine::api::workflow::v1::pending_activity_info::{PauseInfo, pause_info};
    PauseInfo {
        pause_time: Some(timestamp(p.pause_time_ms)),
        paused_by: Some(pause_info::PausedBy::Manual(pause_info::Manual {
            identity: p.identity.clone(),
            reason: p.reason.clone(),
        })),
    }
}

/// A legacy query task: the workflow's history up to its last completed workflow task, and the
/// query. The worker replays and answers with RespondQueryTaskCompleted.
pub fn query_task(
    entry: &RunEntry,
    query_id: u64,
    query: sundial_engine::api::query::v1::WorkflowQuery,
) -> Result<PollWorkflowTaskQueueResponse, ServiceError> {
    let st = &entry.state;
    // A pending workflow task's events are left out: the worker has not run it yet.
    let end = st
        .workflow_task
        .as_ref()
        .filter(|wt| !wt.unwritten)
        .map_or(i64::MAX, |wt| wt.scheduled_event_id);
    let events = entry.events.decode_range(1, end.saturating_sub(1))?;
    let token = TaskToken {
        namespace: st.namespace.clone(),
        workflow_id: st.workflow_id.clone(),
        run_id: st.run_id.clone(),
        scheduled_event_id: 0,
        seq_or_attempt: 0,
        is_activity: false,
        activity_id: String::new(),
        query_id,
    };
    let started_event_id = events.last().map_or(0, |e| e.event_id);
    Ok(PollWorkflowTaskQueueResponse {
        task_token: token.encode_bytes(),
        workflow_execution: Some(execution(entry)),
        workflow_type: Some(WorkflowType {
            name: st.workflow_type.clone(),
        }),
        previous_started_event_id: st.last_completed_wt_started_event_id,
        started_event_id,
        attempt: 1,
        history: Some(History { events }),
        query: Some(query),
        workflow_execution_task_queue: Some(TaskQueue {
            name: st.task_queue.clone(),
            kind: TaskQueueKind::Normal as i32,
            normal_name: String::new(),
        }),
        ..Default::default()
    })
}
