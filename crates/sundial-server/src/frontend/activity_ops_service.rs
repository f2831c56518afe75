//! Operator actions on a workflow's pending activities: PauseActivity, UnpauseActivity,
//! ResetActivity, UpdateActivityOptions and their `...Execution` forms (what the `temporal
//! activity pause|unpause|reset|update-options` commands call). Each validates its request,
//! resolves the run and runs one transition; the rules are the engine's
//! (`sundial_engine::activity_ops`, `activity_options`). Standalone activities (no workflow id) are not supported.

use super::workflow_service::Frontend;
use super::{ExecutionChecks, check_length};
use crate::error::ServiceError;
use crate::run::RunEntry;
use sundial_engine::activity_ops::{
    ActivityTarget, Jitter, PauseRequest, ResetRequest, UnpauseRequest,
};
use sundial_engine::activity_options::{SUPPORTED_PATHS, UpdateOptionsRequest, camel_path};
use sundial_engine::api::{
    activity::v1::ActivityOptions,
    common::v1::WorkflowExecution,
    history::v1::{HistoryEvent, history_event::Attributes},
    workflowservice::v1::*,
};
use sundial_engine::time;

const TARGET_NOT_SET: &str = "Either Activity.Id or Activity.Type should be set on request.";

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::InvalidArgument(message.into())
}

/// The run and the activity an `...Execution` form names: one activity by id. Without a
/// workflow id it means a standalone activity, which this server does not have.
fn execution_target(
    workflow_id: &str,
    run_id: &str,
    activity_id: &str,
) -> Result<(WorkflowExecution, ActivityTarget), ServiceError> {
    if workflow_id.is_empty() {
        return Err(ServiceError::Unimplemented(
            "Standalone activity is disabled".into(),
        ));
    }
    if activity_id.is_empty() {
        return Err(invalid("activity ID is required"));
    }
    let execution = WorkflowExecution {
        workflow_id: workflow_id.to_string(),
        run_id: run_id.to_string(),
    };
    Ok((execution, ActivityTarget::Id(activity_id.to_string())))
}

/// The run the older forms (`PauseActivity`, ...) name: their `execution`, which must have a
/// workflow id.
fn requested_execution(
    execution: Option<&WorkflowExecution>,
) -> Result<WorkflowExecution, ServiceError> {
    let execution = execution.cloned().unwrap_or_default();
    ExecutionChecks::workflow_id(&execution.workflow_id).check()?;
    Ok(execution)
}

/// The activities an older form's `activity` oneof names: by id, by type or, where the request
/// has such a variant (`$all`), every pending activity. The oneof's type must be in scope as
/// `Activity`.
macro_rules! requested_target {
    ($activity:expr $(, $all:ident)?) => {
        match $activity {
            Some(Activity::Id(id)) => Ok(ActivityTarget::Id(id)),
            Some(Activity::Type(t)) => Ok(ActivityTarget::Type(t)),
            $(Some(Activity::$all(_)) => Ok(ActivityTarget::All),)?
            None => Err(invalid(TARGET_NOT_SET)),
        }
    };
}

fn check_lengths(activity: &ActivityTarget, identity: &str) -> Result<(), ServiceError> {
    let mut checked = vec![("identity", identity)];
    match activity {
        ActivityTarget::Id(id) => checked.push(("activity ID", id.as_str())),
        ActivityTarget::Type(t) => checked.push(("activity type", t.as_str())),
        ActivityTarget::All => {}
    }
    checked
        .into_iter()
        .try_for_each(|(what, value)| check_length(what, value))
}

fn jitter(d: Option<&prost_wkt_types::Duration>) -> Result<Jitter, ServiceError> {
    if let Some(why) = time::invalid_duration(d) {
        return Err(invalid(format!("invalid jitter: {why}")));
    }
    Ok(Jitter {
        max_ms: time::duration_ms(d),
        seed: uuid::Uuid::new_v4().as_u64_pair().0,
    })
}

/// What ResetActivity or ResetActivityExecution `$request` asks of the activities it names
/// (the two requests name these fields alike).
macro_rules! reset_request {
    ($request:expr) => {
        jitter($request.jitter.as_ref()).map(|jitter| ResetRequest {
            reset_heartbeat: $request.reset_heartbeat,
            keep_paused: $request.keep_paused,
            jitter,
            restore_original_options: $request.restore_original_options,
        })
    };
}

/// The options an activity was scheduled with, from its ActivityTaskScheduled event.
fn scheduled_options(entry: &RunEntry, scheduled_event_id: i64) -> Option<ActivityOptions> {
    match entry.events.get(scheduled_event_id) {
        Ok(Some(HistoryEvent {
            attributes: Some(Attributes::ActivityTaskScheduledEventAttributes(a)),
            ..
        })) => Some(ActivityOptions {
            task_queue: a.task_queue,
            schedule_to_close_timeout: a.schedule_to_close_timeout,
            schedule_to_start_timeout: a.schedule_to_start_timeout,
            start_to_close_timeout: a.start_to_close_timeout,
            heartbeat_timeout: a.heartbeat_timeout,
            retry_policy: a.retry_policy,
            priority: a.priority,
            ..Default::default()
        }),
        _ => None,
    }
}

impl Frontend {
    async fn activity_op<R: Send + 'static>(
        &self,
        namespace: &str,
        execution: &WorkflowExecution,
        op: impl FnOnce(
            &RunEntry,
            &mut sundial_engine::Transition<'_>,
        ) -> Result<R, sundial_engine::EngineError>,
    ) -> Result<R, ServiceError> {
        let handle = self
            .run_by_id(namespace, &execution.workflow_id, &execution.run_id)
            .await?;
        self.history.transition_with(&handle, op, |_, r| r).await
    }

    async fn pause(
        &self,
        namespace: &str,
        execution: WorkflowExecution,
        target: ActivityTarget,
        request: PauseRequest,
    ) -> Result<(), ServiceError> {
        check_lengths(&target, &request.identity)?;
        let limit =
            usize::try_from(self.history.limits.blob_size_limit_bytes).unwrap_or(usize::MAX);
        if request.reason.len() > limit {
            return Err(invalid("reason exceeds length limit"));
        }
        self.activity_op(namespace, &execution, |_, t| {
            t.pause_activities(&target, &request)
        })
        .await
    }

    async fn unpause(
        &self,
        namespace: &str,
        execution: WorkflowExecution,
        target: ActivityTarget,
        identity: &str,
        request: UnpauseRequest,
    ) -> Result<(), ServiceError> {
        check_lengths(&target, identity)?;
        self.activity_op(namespace, &execution, |_, t| {
            t.unpause_activities(&target, &request)
        })
        .await
    }

    async fn reset(
        &self,
        namespace: &str,
        execution: WorkflowExecution,
        target: ActivityTarget,
        identity: &str,
        request: ResetRequest,
    ) -> Result<(), ServiceError> {
        check_lengths(&target, identity)?;
        self.activity_op(namespace, &execution, |entry, t| {
            t.reset_activities(&target, &request, &|id: i64| scheduled_options(entry, id))
        })
        .await
    }

    async fn update_options(
        &self,
        namespace: &str,
        execution: WorkflowExecution,
        target: ActivityTarget,
        identity: &str,
        request: UpdateOptionsRequest,
    ) -> Result<ActivityOptions, ServiceError> {
        check_lengths(&target, identity)?;
        self.activity_op(namespace, &execution, |entry, t| {
            t.update_activity_options(&target, &request, &|id: i64| scheduled_options(entry, id))
        })
        .await
    }

    pub(super) async fn pause_activity_rpc(
        &self,
        req: PauseActivityRequest,
    ) -> Result<PauseActivityResponse, ServiceError> {
        use pause_activity_request::Activity;
        let execution = requested_execution(req.execution.as_ref())?;
        let target = requested_target!(req.activity)?;
        let request = PauseRequest {
            identity: req.identity,
            reason: req.reason,
            request_id: req.request_id,
        };
        self.pause(&req.namespace, execution, target, request)
            .await?;
        Ok(PauseActivityResponse {})
    }

    pub(super) async fn pause_activity_execution_rpc(
        &self,
        req: PauseActivityExecutionRequest,
    ) -> Result<PauseActivityExecutionResponse, ServiceError> {
        let (execution, target) =
            execution_target(&req.workflow_id, &req.run_id, &req.activity_id)?;
        let request_id = if req.request_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            req.request_id
        };
        let request = PauseRequest {
            identity: req.identity,
            reason: req.reason,
            request_id,
        };
        self.pause(&req.namespace, execution, target, request)
            .await?;
        Ok(PauseActivityExecutionResponse {})
    }

    pub(super) async fn unpause_activity_rpc(
        &self,
        req: UnpauseActivityRequest,
    ) -> Result<UnpauseActivityResponse, ServiceError> {
        use unpause_activity_request::Activity;
        let execution = requested_execution(req.execution.as_ref())?;
        let target = requested_target!(req.activity, UnpauseAll)?;
        let request = UnpauseRequest {
            reset_attempts: req.reset_attempts,
            reset_heartbeat: req.reset_heartbeat,
            jitter: jitter(req.jitter.as_ref())?,
        };
        self.unpause(&req.namespace, execution, target, &req.identity, request)
            .await?;
        Ok(UnpauseActivityResponse {})
    }

    pub(super) async fn unpause_activity_execution_rpc(
        &self,
        req: UnpauseActivityExecutionRequest,
    ) -> Result<UnpauseActivityExecutionResponse, ServiceError> {
        let (execution, target) =
            execution_target(&req.workflow_id, &req.run_id, &req.activity_id)?;
        let request = UnpauseRequest {
            reset_attempts: false,
            reset_heartbeat: false,
            jitter: jitter(req.jitter.as_ref())?,
        };
        self.unpause(&req.namespace, execution, target, &req.identity, request)
            .await?;
        Ok(UnpauseActivityExecutionResponse {})
    }

    pub(super) async fn reset_activity_rpc(
        &self,
        req: ResetActivityRequest,
    ) -> Result<ResetActivityResponse, ServiceError> {
        use reset_activity_request::Activity;
        let execution = requested_execution(req.execution.as_ref())?;
        let target = requested_target!(req.activity, MatchAll)?;
        let request = reset_request!(req)?;
        self.reset(&req.namespace, execution, target, &req.identity, request)
            .await?;
        Ok(ResetActivityResponse {})
    }

    pub(super) async fn reset_activity_execution_rpc(
        &self,
        req: ResetActivityExecutionRequest,
    ) -> Result<ResetActivityExecutionResponse, ServiceError> {
        let (execution, target) =
            execution_target(&req.workflow_id, &req.run_id, &req.activity_id)?;
        let request = reset_request!(req)?;
        self.reset(&req.namespace, execution, target, &req.identity, request)
            .await?;
        Ok(ResetActivityExecutionResponse {})
    }

    pub(super) async fn update_activity_options_rpc(
        &self,
        req: UpdateActivityOptionsRequest,
    ) -> Result<UpdateActivityOptionsResponse, ServiceError> {
        use update_activity_options_request::Activity;
        let execution = requested_execution(req.execution.as_ref())?;
        let target = requested_target!(req.activity, MatchAll)?;
        if !req.restore_original && req.activity_options.is_some() && req.update_mask.is_none() {
            return Err(invalid("UpdateMask is not provided"));
        }
        let request = UpdateOptionsRequest {
            options: req.activity_options,
            paths: req.update_mask.map(|m| m.paths).unwrap_or_default(),
            restore_original: req.restore_original,
        };
        let options = self
            .update_options(&req.namespace, execution, target, &req.identity, request)
            .await?;
        Ok(UpdateActivityOptionsResponse {
            activity_options: Some(options),
        })
    }

    pub(super) async fn update_activity_execution_options_rpc(
        &self,
        req: UpdateActivityExecutionOptionsRequest,
    ) -> Result<UpdateActivityExecutionOptionsResponse, ServiceError> {
        let (execution, target) =
            execution_target(&req.workflow_id, &req.run_id, &req.activity_id)?;
        let paths = req
            .update_mask
            .as_ref()
            .map(|m| m.paths.clone())
            .unwrap_or_default();
        if !paths.is_empty() && req.restore_original {
            return Err(invalid("Both UpdateMask and RestoreOriginal are provided"));
        }
        if !req.restore_original {
            if req.activity_options.is_none() {
                return Err(invalid("ActivityOptions are not provided"));
            }
            if req.update_mask.is_none() {
                return Err(invalid("UpdateMask is not provided"));
            }
            if paths.is_empty() {
                return Err(invalid("UpdateMask must specify at least one path"));
            }
            if let Some(path) = paths
                .iter()
                .find(|p| !SUPPORTED_PATHS.contains(&camel_path(p).as_str()))
            {
                return Err(invalid(format!("unsupported update_mask path: {path:?}")));
            }
        }
        let request = UpdateOptionsRequest {
            options: req.activity_options,
            paths,
            restore_original: req.restore_original,
        };
        let options = self
            .update_options(&req.namespace, execution, target, &req.identity, request)
            .await?;
        Ok(UpdateActivityExecutionOptionsResponse {
            activity_options: Some(options),
        })
    }
}
