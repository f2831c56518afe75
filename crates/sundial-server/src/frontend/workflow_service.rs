//! `temporal.api.workflowservice.v1.WorkflowService`: the RPCs of the server foundation.
//! RPCs not listed here answer Unimplemented through the generated default stubs.

use super::{ExecutionChecks, HISTORY_LONG_POLL, long_poll_wait};
use crate::error::ServiceError;
use crate::history::History;
use crate::matching::{QueueKey, TaskKind};
use crate::namespaces::Namespaces;
use crate::responses;
use crate::run::RunHandle;
use crate::tokens::{HistoryPageToken, TaskToken};
use std::sync::Arc;
use sundial_engine::api::{
    command::v1::Command,
    common::v1::{Payloads, WorkflowExecution},
    enums::v1::HistoryEventFilterType,
    history::v1::History as HistoryProto,
    workflowservice::v1::{get_system_info_response::Capabilities, *},
};
use sundial_engine::{ActivityRef, EngineError, Poller, Signal, Transition, WorkflowTaskRef};
use sundial_proto::workflowservice::workflow_service_server::WorkflowService;
use tonic::{Request, Response, Status};

type Reply<T> = Result<Response<T>, Status>;

/// The version reported by GetSystemInfo: the reference server release whose API we follow.
pub const SERVER_VERSION: &str = "1.32.0";
/// Most events in one history page.
const MAX_HISTORY_PAGE: usize = 1000;

pub struct Frontend {
    /// Batch operation jobs (`crate::batch`).
    pub batches: Arc<crate::batch::Batcher>,
    pub history: Arc<History>,
    pub namespaces: Arc<Namespaces>,
    pub queries: super::queries::Queries,
    pub schedules: Arc<crate::scheduler::Scheduler>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The authorization table (None: every client may do everything); commands towards
    /// other namespaces are checked against it.
    pub authorization: Option<Arc<crate::authz::Policy>>,
    /// Dynamic configuration of the frontend.
    pub settings: crate::FrontendSettings,
    /// The registered Nexus endpoints (`crate::nexus_endpoints`).
    pub nexus_endpoints: Arc<crate::nexus_endpoints::NexusEndpoints>,
}

impl Frontend {
    /// A namespace as served: its capabilities include what this server's configuration
    /// switches on (`worker_poll_complete_on_shutdown`).
    fn served(&self, mut ns: DescribeNamespaceResponse) -> DescribeNamespaceResponse {
        if let Some(info) = ns.namespace_info.as_mut() {
            info.capabilities
                .get_or_insert_with(Default::default)
                .worker_poll_complete_on_shutdown = self.settings.cancel_worker_polls_on_shutdown;
        }
        ns
    }
}

fn payload_size(p: Option<&Payloads>) -> usize {
    p.map_or(0, |p| {
        p.payloads
            .iter()
            .map(|x| x.data.len() + x.metadata.values().map(|v| v.len()).sum::<usize>())
            .sum()
    })
}

fn decode_token(bytes: &[u8], activity: bool) -> Result<TaskToken, ServiceError> {
    if bytes.is_empty() {
        return Err(ServiceError::InvalidArgument(
            "Task token not set on request.".into(),
        ));
    }
    match TaskToken::decode_bytes(bytes) {
        Some(token) if token.is_activity == activity => Ok(token),
        _ => Err(ServiceError::InvalidArgument(
            "Error deserializing task token.".into(),
        )),
    }
}

/// The worker a poll comes from, as the task's started event records it (a new request id
/// for each task it is handed).
fn poller(
    identity: &str,
    deployment: Option<&sundial_engine::api::deployment::v1::WorkerDeploymentOptions>,
    capabilities: Option<&sundial_engine::api::common::v1::WorkerVersionCapabilities>,
) -> Poller {
    Poller {
        identity: identity.to_string(),
        request_id: uuid::Uuid::new_v4().to_string(),
        build_id: build_id(deployment, capabilities),
    }
}

/// The build id a worker reports when polling (deployment options first, then the older
/// version capabilities).
#[allow(deprecated)]
fn build_id(
    deployment: Option<&sundial_engine::api::deployment::v1::WorkerDeploymentOptions>,
    capabilities: Option<&sundial_engine::api::common::v1::WorkerVersionCapabilities>,
) -> String {
    deployment
        .map(|d| d.build_id.clone())
        .filter(|b| !b.is_empty())
        .or_else(|| capabilities.map(|c| c.build_id.clone()))
        .unwrap_or_default()
}

fn activity_ref(token: &TaskToken) -> ActivityRef {
    ActivityRef {
        scheduled_event_id: token.scheduled_event_id,
        attempt: token.seq_or_attempt as i32,
    }
}

/// An activity named by its run and its activity id, as the `...ById` RPCs name it (rather
/// than by a task token).
struct ActivityById<'a> {
    namespace: &'a str,
    workflow_id: &'a str,
    run_id: &'a str,
    activity_id: &'a str,
}

impl<'a> ActivityById<'a> {
    fn of(
        namespace: &'a str,
        workflow_id: &'a str,
        run_id: &'a str,
        activity_id: &'a str,
    ) -> ActivityById<'a> {
        ActivityById {
            namespace,
            workflow_id,
            run_id,
            activity_id,
        }
    }
}

/// Resolves an activity id to its pending attempt (completion by id matches any attempt).
fn by_id(t: &Transition<'_>, activity_id: &str) -> Result<ActivityRef, EngineError> {
    t.state
        .activity_by_id(activity_id)
        .map(|a| ActivityRef {
            scheduled_event_id: a.scheduled_event_id,
            attempt: 0,
        })
        .ok_or_else(|| EngineError::NotFound("Activity task not found.".into()))
}

/// The namespaces other than `own` that a workflow task's commands reach (children, external
/// signals and cancellation requests).
#[allow(deprecated)] // `namespace` on these commands: deprecated, still how a target is named
fn foreign_namespaces<'a>(commands: &'a [Command], own: &str) -> Vec<&'a str> {
    use sundial_engine::api::command::v1::command::Attributes as Cmd;
    let mut out: Vec<&str> = Vec::new();
    for command in commands {
        let target = match &command.attributes {
            Some(Cmd::StartChildWorkflowExecutionCommandAttributes(a)) => a.namespace.as_str(),
            Some(Cmd::SignalExternalWorkflowExecutionCommandAttributes(a)) => a.namespace.as_str(),
            Some(Cmd::RequestCancelExternalWorkflowExecutionCommandAttributes(a)) => {
                a.namespace.as_str()
            }
            _ => continue,
        };
        if !target.is_empty() && target != own && !out.contains(&target) {
            out.push(target);
        }
    }
    out
}

/// What a poll does with a task it tried to start: a started task (`Some`) and a stale one
/// (`None`, or NotFound) are taken from the lease; on any other error the lease is dropped, so
/// the task goes back to its queue, and the error is the poll's.
pub(super) fn settle<T>(
    lease: crate::matching::Lease,
    started: Result<Option<T>, ServiceError>,
) -> Result<Option<T>, ServiceError> {
    match started {
        Ok(found) => {
            lease.take();
            Ok(found)
        }
        Err(ServiceError::NotFound(_)) => {
            lease.take();
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn queue_name(
    tq: Option<&sundial_engine::api::taskqueue::v1::TaskQueue>,
) -> Result<String, ServiceError> {
    match tq.map(|q| q.name.as_str()) {
        Some(name) if name.len() > sundial_engine::validate::MAX_ID_LENGTH => Err(
            ServiceError::InvalidArgument("TaskQueue length exceeds limit.".into()),
        ),
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(ServiceError::InvalidArgument(
            "TaskQueue is not set on request.".into(),
        )),
    }
}

impl Frontend {
    /// Refuses a payload field larger than the configured blob size limit (Temporal's
    /// default 2 MiB), with the reference server's message.
    pub(super) fn check_blob(&self, p: Option<&Payloads>) -> Result<(), ServiceError> {
        let limit =
            usize::try_from(self.history.limits.blob_size_limit_bytes).unwrap_or(usize::MAX);
        if payload_size(p) > limit {
            return Err(ServiceError::InvalidArgument(
                "Blob data size exceeds limit.".into(),
            ));
        }
        Ok(())
    }

    /// The frontend's checks of what any start carries (a client start, signal-with-start,
    /// update-with-start, a schedule's action), after its namespace: the input's size, then
    /// the search attributes against the namespace's registry (stamped with their types, as
    /// they are stored). The rest of a start request is checked on the one start path
    /// (`sundial_engine::start::validate_start`).
    pub(super) fn check_start_input(
        &self,
        namespace: &str,
        input: Option<&Payloads>,
        search_attributes: Option<&mut sundial_engine::api::common::v1::SearchAttributes>,
    ) -> Result<(), ServiceError> {
        self.check_blob(input)?;
        self.history
            .visibility
            .validate(namespace, search_attributes)
    }

    async fn run_by_token(&self, token: &TaskToken) -> Result<Arc<RunHandle>, ServiceError> {
        self.namespaces.check(&token.namespace)?;
        self.history
            .handle(&token.namespace, &token.workflow_id, Some(&token.run_id))
            .await
    }

    pub(super) async fn run_by_id(
        &self,
        namespace: &str,
        workflow_id: &str,
        run_id: &str,
    ) -> Result<Arc<RunHandle>, ServiceError> {
        self.namespaces.check(namespace)?;
        ExecutionChecks::workflow_id(workflow_id).check()?;
        self.history
            .handle(namespace, workflow_id, Some(run_id))
            .await
    }

    /// The run a request names by its `WorkflowExecution` (an empty run id: the current run;
    /// none at all is refused for its missing workflow id, as an empty one is).
    pub(super) async fn run_of(
        &self,
        namespace: &str,
        execution: Option<&WorkflowExecution>,
    ) -> Result<Arc<RunHandle>, ServiceError> {
        let (workflow_id, run_id) =
            execution.map_or(("", ""), |e| (e.workflow_id.as_str(), e.run_id.as_str()));
        self.run_by_id(namespace, workflow_id, run_id).await
    }

    /// Runs `op` in one transition on the activity attempt a task token names.
    async fn on_activity_by_token<R: Send + 'static>(
        &self,
        token: &TaskToken,
        op: impl FnOnce(&mut Transition<'_>, ActivityRef) -> Result<R, EngineError>,
    ) -> Result<R, ServiceError> {
        let handle = self.run_by_token(token).await?;
        self.run_op(handle, |t| op(t, activity_ref(token))).await
    }

    /// Runs `op` in one transition on the pending activity `activity` names (whatever its
    /// attempt: completion by id matches any).
    async fn on_activity_by_id<R: Send + 'static>(
        &self,
        activity: ActivityById<'_>,
        op: impl FnOnce(&mut Transition<'_>, ActivityRef) -> Result<R, EngineError>,
    ) -> Result<R, ServiceError> {
        let handle = self
            .run_by_id(activity.namespace, activity.workflow_id, activity.run_id)
            .await?;
        self.run_op(handle, |t| {
            let attempt = by_id(t, activity.activity_id)?;
            op(t, attempt)
        })
        .await
    }

    /// The queue a poll names, once its namespace is checked.
    pub(super) fn polled_queue(
        &self,
        namespace: &str,
        task_queue: Option<&sundial_engine::api::taskqueue::v1::TaskQueue>,
        kind: TaskKind,
    ) -> Result<QueueKey, ServiceError> {
        self.namespaces.check(namespace)?;
        Ok(QueueKey {
            namespace: namespace.to_string(),
            name: queue_name(task_queue)?,
            kind,
        })
    }

    /// The next task on `key` for a poller, waited for until `until` at the latest (None: no
    /// task came by then).
    pub(super) async fn next_task_until(
        &self,
        key: &QueueKey,
        identity: &str,
        worker_instance_key: &str,
        until: tokio::time::Instant,
    ) -> Option<(Arc<RunHandle>, crate::matching::Lease)> {
        let remaining = until.saturating_duration_since(tokio::time::Instant::now());
        self.history
            .next_task(key.clone(), identity, worker_instance_key, remaining)
            .await
    }

    /// A versioned worker's poll makes its deployment version present in the queue.
    fn note_version(
        &self,
        key: &QueueKey,
        deployment: Option<&sundial_engine::api::deployment::v1::WorkerDeploymentOptions>,
    ) {
        use sundial_engine::api::enums::v1::WorkerVersioningMode;
        if let Some(d) = deployment
            && d.worker_versioning_mode == WorkerVersioningMode::Versioned as i32
        {
            self.history.matching().note_version(
                key,
                &d.deployment_name,
                &d.build_id,
                self.history.now_ms(),
            );
        }
    }

    /// Runs one transition on a run and returns the operation's result as the reply.
    async fn run_op<R: Send + 'static>(
        &self,
        handle: Arc<RunHandle>,
        op: impl FnOnce(&mut Transition<'_>) -> Result<R, EngineError>,
    ) -> Result<R, ServiceError> {
        self.history.transition(&handle, op, |_, r| r).await
    }

    /// PollWorkflowTaskQueue: the next workflow task (or query task) on the queue, empty when
    /// none came within `wait`; a task handed out counts in the schedule-to-start metrics.
    #[allow(deprecated)] // worker_version_capabilities: older SDKs report build ids there
    async fn poll_workflow_task(
        &self,
        req: PollWorkflowTaskQueueRequest,
        wait: std::time::Duration,
    ) -> Result<PollWorkflowTaskQueueResponse, ServiceError> {
        let key = self.polled_queue(&req.namespace, req.task_queue.as_ref(), TaskKind::Workflow)?;
        self.note_version(&key, req.deployment_options.as_ref());
        let until = tokio::time::Instant::now() + wait;
        let task = loop {
            let Some((handle, lease)) = self
                .next_task_until(&key, &req.identity, &req.worker_instance_key, until)
                .await
            else {
                break PollWorkflowTaskQueueResponse::default();
            };
            if lease.task().query {
                let task = lease.take();
                let query_id = task.seq_or_attempt as u64;
                let Some(query) = self.queries.query_of(query_id) else {
                    continue;
                };
                let response = self
                    .history
                    .read(&handle, |entry| {
                        responses::query_task(entry, query_id, query)
                    })
                    .await??;
                break response;
            }
            let task = lease.task();
            let wt = WorkflowTaskRef {
                scheduled_event_id: task.scheduled_event_id,
                seq: task.seq_or_attempt,
            };
            let poller = poller(
                &req.identity,
                req.deployment_options.as_ref(),
                req.worker_version_capabilities.as_ref(),
            );
            let result = self
                .history
                .transition(
                    &handle,
                    |t| t.start_workflow_task(wt, &poller),
                    |entry, ()| responses::workflow_task(entry),
                )
                .await
                .and_then(|task| task);
            if let Some(mut response) = settle(lease, result)? {
                response.queries = self.queries.buffered_for(&handle.run_id);
                break response;
            }
        };
        self.metrics.workflow_task_started(&task);
        Ok(task)
    }

    /// PollActivityTaskQueue: the next activity task on the queue, empty when none came within
    /// `wait`; a task handed out counts in the schedule-to-start metrics.
    #[allow(deprecated)] // worker_version_capabilities: older SDKs report build ids there
    async fn poll_activity_task(
        &self,
        req: PollActivityTaskQueueRequest,
        wait: std::time::Duration,
    ) -> Result<PollActivityTaskQueueResponse, ServiceError> {
        let key = self.polled_queue(&req.namespace, req.task_queue.as_ref(), TaskKind::Activity)?;
        let until = tokio::time::Instant::now() + wait;
        let task = loop {
            let Some((handle, lease)) = self
                .next_task_until(&key, &req.identity, &req.worker_instance_key, until)
                .await
            else {
                break PollActivityTaskQueueResponse::default();
            };
            let task = lease.task();
            let activity = ActivityRef {
                scheduled_event_id: task.scheduled_event_id,
                attempt: task.seq_or_attempt as i32,
            };
            let poller = poller(
                &req.identity,
                req.deployment_options.as_ref(),
                req.worker_version_capabilities.as_ref(),
            );
            let result = self
                .history
                .transition(
                    &handle,
                    |t| {
                        t.check_activity_queue(activity.scheduled_event_id, &key.name)?;
                        t.start_activity(activity, &poller)
                    },
                    move |entry, _| responses::activity_task(entry, activity.scheduled_event_id),
                )
                .await;
            if let Some(response) = settle(lease, result)? {
                break response;
            }
        };
        self.metrics.activity_task_started(&task);
        Ok(task)
    }

    /// Commands towards other namespaces: the namespace must exist (the reference server
    /// answers NotFound and records nothing, so the task times out and is retried), and when
    /// authorization is configured and cross-namespace commands are enabled, the worker
    /// completing the task must hold a grant on it, as it would to call that namespace
    /// itself (PermissionDenied, nothing recorded). Whether such commands are allowed at all
    /// (`system.enableCrossNamespaceCommands`) is the engine's check.
    fn check_foreign_namespaces(
        &self,
        req: &RespondWorkflowTaskCompletedRequest,
        own: &str,
        identity: Option<&crate::peer::PeerIdentity>,
    ) -> Result<(), ServiceError> {
        for namespace in foreign_namespaces(&req.commands, own) {
            self.namespaces.check(namespace)?;
            if let Some(policy) = &self.authorization
                && self.history.limits.cross_namespace_commands
                && !policy.allows(identity, crate::authz::Access::Namespace, namespace)
            {
                return Err(ServiceError::PermissionDenied);
            }
        }
        Ok(())
    }

    async fn complete_workflow_task(
        &self,
        req: RespondWorkflowTaskCompletedRequest,
        identity: Option<&crate::peer::PeerIdentity>,
    ) -> Result<RespondWorkflowTaskCompletedResponse, ServiceError> {
        let token = decode_token(&req.task_token, false)?;
        let handle = self.run_by_token(&token).await?;
        self.check_foreign_namespaces(&req, &token.namespace, identity)?;
        let wt = WorkflowTaskRef {
            scheduled_event_id: token.scheduled_event_id,
            seq: token.seq_or_attempt,
        };
        // Answers to the queries the task carried reflect the events it was handed: they
        // are delivered first, before its completion wakes the queries still waiting. A
        // completion of a task that is no longer the run's (timed out, say) is refused and its
        // answers dropped, as on the reference: the queries stay buffered for a task that
        // completes.
        if !req.query_results.is_empty()
            && self
                .history
                .read(&handle, |e| e.state.check_started_workflow_task(wt).is_ok())
                .await?
        {
            self.queries.answer_buffered(&token, &req.query_results);
        }
        let endpoints = self.nexus_endpoint_targets(&req.commands);
        let poller = Poller {
            identity: req.identity.clone(),
            request_id: "request-from-RespondWorkflowTaskCompleted".into(),
            build_id: build_id(req.deployment_options.as_ref(), None),
        };
        let (outcome, inline, eager) = self
            .history
            .transition(
                &handle,
                |t| t.respond_workflow_task_completed(wt, &req, endpoints, &poller),
                |entry, completion| {
                    let outcome = completion.outcome;
                    entry.updates.lock().apply(&outcome.updates);
                    let activities: Vec<_> = completion
                        .eager_activities
                        .iter()
                        .filter_map(|id| responses::activity_task(entry, *id))
                        .collect();
                    (
                        outcome,
                        if completion.inline_task {
                            responses::workflow_task(entry)
                        } else {
                            Ok(None)
                        },
                        activities,
                    )
                },
            )
            .await?;
        let mut inline = inline?;
        if let Some(task) = inline.as_mut() {
            task.queries = self.queries.buffered_for(&handle.run_id);
        }
        if !outcome.updates.is_empty() {
            handle.notify();
        }
        if let Some(message) = outcome.rejected {
            return Err(ServiceError::InvalidArgument(message));
        }
        Ok(RespondWorkflowTaskCompletedResponse {
            workflow_task: inline,
            activity_tasks: eager,
            reset_history_event_id: outcome.reset_history_event_id,
        })
    }

    async fn get_history(
        &self,
        req: GetWorkflowExecutionHistoryRequest,
    ) -> Result<GetWorkflowExecutionHistoryResponse, ServiceError> {
        self.namespaces.check(&req.namespace)?;
        let execution = req.execution.clone().unwrap_or_default();
        ExecutionChecks::workflow_id(&execution.workflow_id).check()?;
        let page_token = if req.next_page_token.is_empty() {
            None
        } else {
            Some(
                HistoryPageToken::decode_bytes(&req.next_page_token).ok_or_else(|| {
                    ServiceError::InvalidArgument("Invalid NextPageToken.".into())
                })?,
            )
        };
        let run_id = page_token
            .as_ref()
            .map(|t| t.run_id.clone())
            .unwrap_or(execution.run_id.clone());
        let handle = self
            .history
            .handle(&req.namespace, &execution.workflow_id, Some(&run_id))
            .await?;
        let from = page_token.as_ref().map_or(1, |t| t.next_event_id);
        let close_only = req.history_event_filter_type == HistoryEventFilterType::CloseEvent as i32;
        let page_size = match req.maximum_page_size {
            n if n > 0 => (n as usize).min(MAX_HISTORY_PAGE),
            _ => MAX_HISTORY_PAGE,
        };
        let token_from = |next_event_id: i64| {
            HistoryPageToken {
                run_id: handle.run_id.clone(),
                next_event_id,
            }
            .encode_bytes()
        };
        let reply = |events, next_page_token| GetWorkflowExecutionHistoryResponse {
            history: Some(HistoryProto { events }),
            next_page_token,
            ..Default::default()
        };
        let until = tokio::time::Instant::now() + HISTORY_LONG_POLL;
        let mut progress = handle.subscribe();
        loop {
            let page = self
                .history
                .read(&handle, |entry| {
                    let st = &entry.state;
                    if close_only {
                        if !st.is_running() {
                            let close = entry.events.get(st.close_event_id)?;
                            return Ok::<_, ServiceError>(Some((
                                close.into_iter().collect(),
                                None,
                            )));
                        }
                        return Ok((!req.wait_new_event).then(|| (Vec::new(), None)));
                    }
                    // Only committed events: a client is never shown history a crash could
                    // take back (a started workflow task waits for the next commit).
                    let committed = entry.committed_next_event_id();
                    let last = from.saturating_add(page_size as i64 - 1).min(committed - 1);
                    let events = entry.events.decode_range(from, last)?;
                    if let Some(last) = events.last().map(|e| e.event_id) {
                        let more = last + 1 < committed || (req.wait_new_event && st.is_running());
                        return Ok(Some((events, more.then(|| token_from(last + 1)))));
                    }
                    Ok((!st.is_running() || !req.wait_new_event).then(|| (Vec::new(), None)))
                })
                .await??;
            if let Some((events, token)) = page {
                return Ok(reply(events, token.unwrap_or_default()));
            }
            match tokio::time::timeout_at(until, progress.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Ok(reply(Vec::new(), token_from(from))),
            }
        }
    }
}

/// Implements a tonic service trait for [`Frontend`], writing out the RPCs that only hand the
/// request's message to an inherent method and wrap what it returns:
///
/// - under `forward`, `rpc(Request) -> Response => method;` calls
///   `self.method(message).await`, where `method` is
///   `async fn(&self, Request) -> Result<Response, ServiceError>`;
/// - under `forward_with_long_poll`, the same with a second argument, the time the call may
///   wait ([`long_poll_wait`] of the request's gRPC deadline).
///
/// What follows the two lists is copied into the impl as it is: the RPCs written by hand.
/// The macro wraps the whole impl block, attributes included, so that `#[tonic::async_trait]`
/// sees ordinary `async fn`s once it has expanded. The generated methods name `Request`,
/// `Response`, `Reply` and `long_poll_wait` as this module imports them. rustfmt leaves the
/// body of the invocation alone: keep the hand-written RPCs as it would format them.
macro_rules! forwarding_service {
    (
        $(#[$attribute:meta])*
        impl $service:ident for $frontend:ty {
            forward {
                $($rpc:ident($request:ty) -> $response:ty => $method:ident;)*
            }
            forward_with_long_poll {
                $($poll_rpc:ident($poll_request:ty) -> $poll_response:ty => $poll_method:ident;)*
            }
            $($handwritten:tt)*
        }
    ) => {
        $(#[$attribute])*
        impl $service for $frontend {
            $(
                async fn $rpc(&self, request: Request<$request>) -> Reply<$response> {
                    Ok(Response::new(self.$method(request.into_inner()).await?))
                }
            )*
            $(
                async fn $poll_rpc(&self, request: Request<$poll_request>) -> Reply<$poll_response> {
                    let wait = long_poll_wait(&request);
                    Ok(Response::new(self.$poll_method(request.into_inner(), wait).await?))
                }
            )*
            $($handwritten)*
        }
    };
}

forwarding_service! {
    #[tonic::async_trait]
    impl WorkflowService for Frontend {
        forward {
            // History and visibility (`visibility_service`).
            get_workflow_execution_history(GetWorkflowExecutionHistoryRequest) -> GetWorkflowExecutionHistoryResponse => get_history;
            list_workflow_executions(ListWorkflowExecutionsRequest) -> ListWorkflowExecutionsResponse => list_workflows;
            scan_workflow_executions(ScanWorkflowExecutionsRequest) -> ScanWorkflowExecutionsResponse => scan_workflows;
            count_workflow_executions(CountWorkflowExecutionsRequest) -> CountWorkflowExecutionsResponse => count_workflows;
            list_open_workflow_executions(ListOpenWorkflowExecutionsRequest) -> ListOpenWorkflowExecutionsResponse => list_open;
            list_closed_workflow_executions(ListClosedWorkflowExecutionsRequest) -> ListClosedWorkflowExecutionsResponse => list_closed;
            delete_workflow_execution(DeleteWorkflowExecutionRequest) -> DeleteWorkflowExecutionResponse => delete_workflow;
            get_workflow_execution_history_reverse(GetWorkflowExecutionHistoryReverseRequest) -> GetWorkflowExecutionHistoryReverseResponse => history_reverse;

            // Operator changes to a run (`reset_service`, `workflow_options_service`).
            reset_workflow_execution(ResetWorkflowExecutionRequest) -> ResetWorkflowExecutionResponse => reset_workflow_execution_rpc;
            update_workflow_execution_options(UpdateWorkflowExecutionOptionsRequest) -> UpdateWorkflowExecutionOptionsResponse => update_workflow_execution_options_rpc;

            // Schedules (`schedule_service`).
            create_schedule(CreateScheduleRequest) -> CreateScheduleResponse => create_schedule_rpc;
            describe_schedule(DescribeScheduleRequest) -> DescribeScheduleResponse => describe_schedule_rpc;
            update_schedule(UpdateScheduleRequest) -> UpdateScheduleResponse => update_schedule_rpc;
            patch_schedule(PatchScheduleRequest) -> PatchScheduleResponse => patch_schedule_rpc;
            delete_schedule(DeleteScheduleRequest) -> DeleteScheduleResponse => delete_schedule_rpc;
            list_schedule_matching_times(ListScheduleMatchingTimesRequest) -> ListScheduleMatchingTimesResponse => list_schedule_matching_times_rpc;
            list_schedules(ListSchedulesRequest) -> ListSchedulesResponse => list_schedules_rpc;
            count_schedules(CountSchedulesRequest) -> CountSchedulesResponse => count_schedules_rpc;

            // Operator actions on pending activities (`activity_ops_service`).
            pause_activity(PauseActivityRequest) -> PauseActivityResponse => pause_activity_rpc;
            pause_activity_execution(PauseActivityExecutionRequest) -> PauseActivityExecutionResponse => pause_activity_execution_rpc;
            unpause_activity(UnpauseActivityRequest) -> UnpauseActivityResponse => unpause_activity_rpc;
            unpause_activity_execution(UnpauseActivityExecutionRequest) -> UnpauseActivityExecutionResponse => unpause_activity_execution_rpc;
            reset_activity(ResetActivityRequest) -> ResetActivityResponse => reset_activity_rpc;
            reset_activity_execution(ResetActivityExecutionRequest) -> ResetActivityExecutionResponse => reset_activity_execution_rpc;
            update_activity_options(UpdateActivityOptionsRequest) -> UpdateActivityOptionsResponse => update_activity_options_rpc;
            update_activity_execution_options(UpdateActivityExecutionOptionsRequest) -> UpdateActivityExecutionOptionsResponse => update_activity_execution_options_rpc;

            // Nexus tasks (`nexus_service`).
            respond_nexus_task_completed(RespondNexusTaskCompletedRequest) -> RespondNexusTaskCompletedResponse => respond_nexus_completed;
            respond_nexus_task_failed(RespondNexusTaskFailedRequest) -> RespondNexusTaskFailedResponse => respond_nexus_failed;

            // Batch operations (`batch_service`).
            start_batch_operation(StartBatchOperationRequest) -> StartBatchOperationResponse => start_batch_operation_rpc;
            describe_batch_operation(DescribeBatchOperationRequest) -> DescribeBatchOperationResponse => describe_batch_operation_rpc;
            list_batch_operations(ListBatchOperationsRequest) -> ListBatchOperationsResponse => list_batch_operations_rpc;
            stop_batch_operation(StopBatchOperationRequest) -> StopBatchOperationResponse => stop_batch_operation_rpc;
        }
        forward_with_long_poll {
            // Task queue polls (this module).
            poll_workflow_task_queue(PollWorkflowTaskQueueRequest) -> PollWorkflowTaskQueueResponse => poll_workflow_task;
            poll_activity_task_queue(PollActivityTaskQueueRequest) -> PollActivityTaskQueueResponse => poll_activity_task;
            poll_nexus_task_queue(PollNexusTaskQueueRequest) -> PollNexusTaskQueueResponse => poll_nexus_task;

            // Updates (`update_service`): each may wait for the update to reach a stage.
            update_workflow_execution(UpdateWorkflowExecutionRequest) -> UpdateWorkflowExecutionResponse => update;
            poll_workflow_execution_update(PollWorkflowExecutionUpdateRequest) -> PollWorkflowExecutionUpdateResponse => poll_update;
            execute_multi_operation(ExecuteMultiOperationRequest) -> ExecuteMultiOperationResponse => update_with_start;
        }

        async fn register_namespace(
            &self,
            request: Request<RegisterNamespaceRequest>,
        ) -> Reply<RegisterNamespaceResponse> {
            self.namespaces.register(request.into_inner()).await?;
            Ok(Response::new(RegisterNamespaceResponse {}))
        }

        async fn describe_namespace(
            &self,
            request: Request<DescribeNamespaceRequest>,
        ) -> Reply<DescribeNamespaceResponse> {
            let req = request.into_inner();
            let found = if !req.namespace.is_empty() {
                self.namespaces.get(&req.namespace)
            } else if !req.id.is_empty() {
                self.namespaces
                    .list()
                    .into_iter()
                    .find(|n| n.namespace_info.as_ref().is_some_and(|i| i.id == req.id))
            } else {
                return Err(
                    ServiceError::InvalidArgument("Namespace not set on request.".into()).into(),
                );
            };
            let name = if req.namespace.is_empty() {
                req.id
            } else {
                req.namespace
            };
            Ok(Response::new(self.served(
                found.ok_or(ServiceError::NamespaceNotFound(name))?,
            )))
        }

        async fn list_namespaces(
            &self,
            _request: Request<ListNamespacesRequest>,
        ) -> Reply<ListNamespacesResponse> {
            Ok(Response::new(ListNamespacesResponse {
                namespaces: (self.namespaces.list().into_iter())
                    .map(|ns| self.served(ns))
                    .collect(),
                next_page_token: Vec::new(),
            }))
        }

        async fn update_namespace(
            &self,
            request: Request<UpdateNamespaceRequest>,
        ) -> Reply<UpdateNamespaceResponse> {
            let ns = self.served(self.namespaces.update(request.into_inner()).await?);
            Ok(Response::new(UpdateNamespaceResponse {
                namespace_info: ns.namespace_info,
                config: ns.config,
                replication_config: ns.replication_config,
                failover_version: ns.failover_version,
                is_global_namespace: ns.is_global_namespace,
            }))
        }

        async fn get_system_info(
            &self,
            _request: Request<GetSystemInfoRequest>,
        ) -> Reply<GetSystemInfoResponse> {
            Ok(Response::new(GetSystemInfoResponse {
                server_version: SERVER_VERSION.into(),
                capabilities: Some(Capabilities {
                    signal_and_query_header: true,
                    internal_error_differentiation: true,
                    activity_failure_include_heartbeat: true,
                    supports_schedules: true,
                    encoded_failure_attributes: true,
                    // As the reference reports it: SDKs then send their build id with polls
                    // and completions, which the task events record (`worker_version`) and
                    // `workflow.info().get_current_build_id()` reads back on replay.
                    build_id_based_versioning: true,
                    upsert_memo: false,
                    eager_workflow_start: true,
                    sdk_metadata: true,
                    count_group_by_execution_status: false,
                    nexus: true,
                    ..Default::default()
                }),
            }))
        }

        async fn start_workflow_execution(
            &self,
            request: Request<StartWorkflowExecutionRequest>,
        ) -> Reply<StartWorkflowExecutionResponse> {
            let mut req = request.into_inner();
            self.namespaces.check(&req.namespace)?;
            self.check_start_input(
                &req.namespace,
                req.input.as_ref(),
                req.search_attributes.as_mut(),
            )?;
            let outcome = self.history.start_workflow(&req, None).await?;
            Ok(Response::new(StartWorkflowExecutionResponse {
                run_id: outcome.run_id,
                started: outcome.started,
                eager_workflow_task: outcome.eager_task,
                ..Default::default()
            }))
        }

        async fn respond_workflow_task_completed(
            &self,
            request: Request<RespondWorkflowTaskCompletedRequest>,
        ) -> Reply<RespondWorkflowTaskCompletedResponse> {
            let identity = request
                .extensions()
                .get::<crate::peer::ConnInfo>()
                .and_then(|c| c.identity.clone());
            let reply = self
                .complete_workflow_task(request.into_inner(), identity.as_deref())
                .await?;
            // Eagerly dispatched activities are started here rather than by a poll.
            for task in &reply.activity_tasks {
                self.metrics.activity_task_started(task);
            }
            Ok(Response::new(reply))
        }

        async fn respond_workflow_task_failed(
            &self,
            request: Request<RespondWorkflowTaskFailedRequest>,
        ) -> Reply<RespondWorkflowTaskFailedResponse> {
            let req = request.into_inner();
            let token = decode_token(&req.task_token, false)?;
            let handle = self.run_by_token(&token).await?;
            let wt = WorkflowTaskRef {
                scheduled_event_id: token.scheduled_event_id,
                seq: token.seq_or_attempt,
            };
            self.run_op(handle, |t| {
                t.fail_workflow_task(wt, req.cause, req.failure.clone(), &req.identity)
            })
            .await?;
            Ok(Response::new(RespondWorkflowTaskFailedResponse {}))
        }

        async fn record_activity_task_heartbeat(
            &self,
            request: Request<RecordActivityTaskHeartbeatRequest>,
        ) -> Reply<RecordActivityTaskHeartbeatResponse> {
            let req = request.into_inner();
            let token = decode_token(&req.task_token, true)?;
            self.check_blob(req.details.as_ref())?;
            let reply = self
                .on_activity_by_token(&token, |t, a| t.heartbeat_activity(a, req.details.clone()))
                .await?;
            Ok(Response::new(RecordActivityTaskHeartbeatResponse {
                cancel_requested: reply.cancel_requested,
                activity_paused: reply.activity_paused,
                activity_reset: reply.activity_reset,
            }))
        }

        async fn record_activity_task_heartbeat_by_id(
            &self,
            request: Request<RecordActivityTaskHeartbeatByIdRequest>,
        ) -> Reply<RecordActivityTaskHeartbeatByIdResponse> {
            let req = request.into_inner();
            self.check_blob(req.details.as_ref())?;
            let activity =
                ActivityById::of(&req.namespace, &req.workflow_id, &req.run_id, &req.activity_id);
            let reply = self
                .on_activity_by_id(activity, |t, a| t.heartbeat_activity(a, req.details.clone()))
                .await?;
            Ok(Response::new(RecordActivityTaskHeartbeatByIdResponse {
                cancel_requested: reply.cancel_requested,
                activity_paused: reply.activity_paused,
                activity_reset: reply.activity_reset,
            }))
        }

        async fn respond_activity_task_completed(
            &self,
            request: Request<RespondActivityTaskCompletedRequest>,
        ) -> Reply<RespondActivityTaskCompletedResponse> {
            let req = request.into_inner();
            let token = decode_token(&req.task_token, true)?;
            self.check_blob(req.result.as_ref())?;
            self.on_activity_by_token(&token, |t, a| {
                t.complete_activity(a, req.result.clone(), &req.identity)
            })
            .await?;
            Ok(Response::new(RespondActivityTaskCompletedResponse {}))
        }

        async fn respond_activity_task_completed_by_id(
            &self,
            request: Request<RespondActivityTaskCompletedByIdRequest>,
        ) -> Reply<RespondActivityTaskCompletedByIdResponse> {
            let req = request.into_inner();
            self.check_blob(req.result.as_ref())?;
            let activity =
                ActivityById::of(&req.namespace, &req.workflow_id, &req.run_id, &req.activity_id);
            self.on_activity_by_id(activity, |t, a| {
                t.complete_activity(a, req.result.clone(), &req.identity)
            })
            .await?;
            Ok(Response::new(RespondActivityTaskCompletedByIdResponse {}))
        }

        async fn respond_activity_task_failed(
            &self,
            request: Request<RespondActivityTaskFailedRequest>,
        ) -> Reply<RespondActivityTaskFailedResponse> {
            let req = request.into_inner();
            let token = decode_token(&req.task_token, true)?;
            let failure = req.failure.clone().unwrap_or_default();
            let details = req.last_heartbeat_details.clone();
            self.on_activity_by_token(&token, |t, a| {
                t.fail_activity(a, failure, details, &req.identity)
            })
            .await?;
            Ok(Response::new(RespondActivityTaskFailedResponse {
                failures: Vec::new(),
            }))
        }

        async fn respond_activity_task_failed_by_id(
            &self,
            request: Request<RespondActivityTaskFailedByIdRequest>,
        ) -> Reply<RespondActivityTaskFailedByIdResponse> {
            let req = request.into_inner();
            let failure = req.failure.clone().unwrap_or_default();
            let details = req.last_heartbeat_details.clone();
            let activity =
                ActivityById::of(&req.namespace, &req.workflow_id, &req.run_id, &req.activity_id);
            self.on_activity_by_id(activity, |t, a| {
                t.fail_activity(a, failure, details, &req.identity)
            })
            .await?;
            Ok(Response::new(RespondActivityTaskFailedByIdResponse {
                failures: Vec::new(),
            }))
        }

        async fn respond_activity_task_canceled(
            &self,
            request: Request<RespondActivityTaskCanceledRequest>,
        ) -> Reply<RespondActivityTaskCanceledResponse> {
            let req = request.into_inner();
            let token = decode_token(&req.task_token, true)?;
            self.on_activity_by_token(&token, |t, a| {
                t.cancel_activity(a, req.details.clone(), &req.identity)
            })
            .await?;
            Ok(Response::new(RespondActivityTaskCanceledResponse {}))
        }

        async fn respond_activity_task_canceled_by_id(
            &self,
            request: Request<RespondActivityTaskCanceledByIdRequest>,
        ) -> Reply<RespondActivityTaskCanceledByIdResponse> {
            let req = request.into_inner();
            let activity =
                ActivityById::of(&req.namespace, &req.workflow_id, &req.run_id, &req.activity_id);
            self.on_activity_by_id(activity, |t, a| {
                t.cancel_activity(a, req.details.clone(), &req.identity)
            })
            .await?;
            Ok(Response::new(RespondActivityTaskCanceledByIdResponse {}))
        }

        async fn describe_workflow_execution(
            &self,
            request: Request<DescribeWorkflowExecutionRequest>,
        ) -> Reply<DescribeWorkflowExecutionResponse> {
            let req = request.into_inner();
            let handle = self.run_of(&req.namespace, req.execution.as_ref()).await?;
            Ok(Response::new(
                self.history.read(&handle, responses::describe).await?,
            ))
        }

        async fn terminate_workflow_execution(
            &self,
            request: Request<TerminateWorkflowExecutionRequest>,
        ) -> Reply<TerminateWorkflowExecutionResponse> {
            let req = request.into_inner();
            let handle = self.run_of(&req.namespace, req.workflow_execution.as_ref()).await?;
            self.run_op(handle, |t| {
                t.terminate(&req.reason, req.details.clone(), &req.identity)
            })
            .await?;
            Ok(Response::new(TerminateWorkflowExecutionResponse {}))
        }

        async fn signal_workflow_execution(
            &self,
            request: Request<SignalWorkflowExecutionRequest>,
        ) -> Reply<SignalWorkflowExecutionResponse> {
            let req = request.into_inner();
            self.check_blob(req.input.as_ref())?;
            let handle = self.run_of(&req.namespace, req.workflow_execution.as_ref()).await?;
            let signal = Signal {
                name: req.signal_name,
                input: req.input,
                header: req.header,
                identity: req.identity,
                request_id: req.request_id,
                external: None,
            };
            self.run_op(handle, |t| t.signal(signal)).await?;
            Ok(Response::new(SignalWorkflowExecutionResponse::default()))
        }

        async fn signal_with_start_workflow_execution(
            &self,
            request: Request<SignalWithStartWorkflowExecutionRequest>,
        ) -> Reply<SignalWithStartWorkflowExecutionResponse> {
            let req = request.into_inner();
            self.namespaces.check(&req.namespace)?;
            self.check_blob(req.input.as_ref())?;
            self.check_blob(req.signal_input.as_ref())?;
            if req.signal_name.is_empty() {
                return Err(
                    ServiceError::InvalidArgument("SignalName is not set on request.".into()).into(),
                );
            }
            let signal = Signal {
                name: req.signal_name.clone(),
                input: req.signal_input.clone(),
                header: req.header.clone(),
                identity: req.identity.clone(),
                request_id: req.request_id.clone(),
                external: None,
            };
            let start = StartWorkflowExecutionRequest {
                namespace: req.namespace,
                workflow_id: req.workflow_id,
                workflow_type: req.workflow_type,
                task_queue: req.task_queue,
                input: req.input,
                workflow_execution_timeout: req.workflow_execution_timeout,
                workflow_run_timeout: req.workflow_run_timeout,
                workflow_task_timeout: req.workflow_task_timeout,
                identity: req.identity,
                request_id: req.request_id,
                workflow_id_reuse_policy: req.workflow_id_reuse_policy,
                workflow_id_conflict_policy: req.workflow_id_conflict_policy,
                retry_policy: req.retry_policy,
                cron_schedule: req.cron_schedule,
                memo: req.memo,
                search_attributes: req.search_attributes,
                header: req.header,
                workflow_start_delay: req.workflow_start_delay,
                user_metadata: req.user_metadata,
                priority: req.priority,
                ..Default::default()
            };
            let mut start = start;
            self.check_start_input(
                &start.namespace,
                start.input.as_ref(),
                start.search_attributes.as_mut(),
            )?;
            let outcome = self.history.start_workflow(&start, Some(signal)).await?;
            Ok(Response::new(SignalWithStartWorkflowExecutionResponse {
                run_id: outcome.run_id,
                started: outcome.started,
                ..Default::default()
            }))
        }

        async fn request_cancel_workflow_execution(
            &self,
            request: Request<RequestCancelWorkflowExecutionRequest>,
        ) -> Reply<RequestCancelWorkflowExecutionResponse> {
            let req = request.into_inner();
            let handle = self.run_of(&req.namespace, req.workflow_execution.as_ref()).await?;
            self.run_op(handle, |t| {
                t.client_request_cancel(&req.reason, &req.identity, &req.request_id)
            })
            .await?;
            Ok(Response::new(RequestCancelWorkflowExecutionResponse {}))
        }

        async fn query_workflow(
            &self,
            request: Request<QueryWorkflowRequest>,
        ) -> Reply<QueryWorkflowResponse> {
            let wait = super::wait_within_deadline(&request, std::time::Duration::from_millis(100));
            let req = request.into_inner();
            let handle = self.run_of(&req.namespace, req.execution.as_ref()).await?;
            let query = req.query.clone().unwrap_or_default();
            if query.query_type.is_empty() {
                return Err(
                    ServiceError::InvalidArgument("QueryType is not set on request.".into()).into(),
                );
            }
            if query.query_type.len() > sundial_engine::validate::MAX_ID_LENGTH {
                return Err(
                    ServiceError::InvalidArgument("QueryType length exceeds limit.".into()).into(),
                );
            }
            let (status, task_queue) = self
                .history
                .read(&handle, |e| (e.state.status, e.state.task_queue.clone()))
                .await?;
            if super::queries::rejects(req.query_reject_condition, status) {
                return Ok(Response::new(QueryWorkflowResponse {
                    query_rejected: Some(sundial_engine::api::query::v1::QueryRejected { status }),
                    ..Default::default()
                }));
            }
            let answer = self
                .queries
                .ask(&self.history, &handle, &task_queue, query, wait)
                .await?;
            Ok(Response::new(answer))
        }

        async fn respond_query_task_completed(
            &self,
            request: Request<RespondQueryTaskCompletedRequest>,
        ) -> Reply<RespondQueryTaskCompletedResponse> {
            let req = request.into_inner();
            let token = decode_token(&req.task_token, false)?;
            if token.query_id == 0 {
                return Err(ServiceError::InvalidArgument(
                    "Task token is not a query task token.".into(),
                )
                .into());
            }
            self.check_blob(req.query_result.as_ref())?;
            self.queries.answer(&token, req)?;
            Ok(Response::new(RespondQueryTaskCompletedResponse {}))
        }

        async fn get_search_attributes(
            &self,
            _request: Request<GetSearchAttributesRequest>,
        ) -> Reply<GetSearchAttributesResponse> {
            Ok(Response::new(GetSearchAttributesResponse {
                keys: self.search_attribute_keys("default"),
            }))
        }

        async fn describe_task_queue(
            &self,
            request: Request<DescribeTaskQueueRequest>,
        ) -> Reply<DescribeTaskQueueResponse> {
            Ok(Response::new(
                self.describe_task_queue(request.into_inner())?,
            ))
        }

        async fn get_cluster_info(
            &self,
            _request: Request<GetClusterInfoRequest>,
        ) -> Reply<GetClusterInfoResponse> {
            Ok(Response::new(GetClusterInfoResponse {
                server_version: SERVER_VERSION.into(),
                cluster_id: "sundial".into(),
                cluster_name: crate::namespaces::CLUSTER_NAME.into(),
                history_shard_count: 1,
                persistence_store: "sqlite".into(),
                visibility_store: "sqlite".into(),
                initial_failover_version: 1,
                failover_version_increment: 10,
                ..Default::default()
            }))
        }

        async fn shutdown_worker(
            &self,
            request: Request<ShutdownWorkerRequest>,
        ) -> Reply<ShutdownWorkerResponse> {
            let req = request.into_inner();
            self.namespaces.check(&req.namespace)?;
            if self.settings.cancel_worker_polls_on_shutdown {
                // As the reference: every poll of this worker instance completes, empty.
                let cancelled = self
                    .history
                    .matching()
                    .cancel_worker_polls(&req.namespace, &req.worker_instance_key);
                tracing::debug!(
                    worker_instance_key = %req.worker_instance_key,
                    cancelled,
                    "cancelled the outstanding polls of a worker that shut down"
                );
            }
            if !req.sticky_task_queue.is_empty() {
                self.history
                    .sticky_queue_gone(&req.namespace, &req.sticky_task_queue);
            }
            Ok(Response::new(ShutdownWorkerResponse {}))
        }

        async fn reset_sticky_task_queue(
            &self,
            request: Request<ResetStickyTaskQueueRequest>,
        ) -> Reply<ResetStickyTaskQueueResponse> {
            let req = request.into_inner();
            let handle = self.run_of(&req.namespace, req.execution.as_ref()).await?;
            self.run_op(handle, |t| {
                t.reset_stickiness();
                Ok(())
            })
            .await?;
            Ok(Response::new(ResetStickyTaskQueueResponse {}))
        }
    }
}
