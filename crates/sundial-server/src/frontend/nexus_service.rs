//! The Nexus RPCs of WorkflowService: PollNexusTaskQueue, RespondNexusTaskCompleted and
//! RespondNexusTaskFailed, and the endpoints a workflow task's commands name. The rules of an
//! operation's life are `sundial_engine::nexus`; this module only carries them out.

use super::workflow_service::{Frontend, settle};
use crate::error::ServiceError;
use crate::matching::TaskKind;
use crate::responses;
use crate::tokens::NexusTaskToken;
use sundial_engine::api::{
    command::v1::{Command, command::Attributes as Cmd},
    nexus::v1::{endpoint_target, response},
    workflowservice::v1::*,
};
use sundial_engine::nexus::{self, NexusEndpointTargets, NexusTarget, NexusTaskRef, StartAnswer};

/// What a worker is told when its Nexus task is no longer current (answered, timed out, or
/// its operation closed), as the reference server words it.
const TASK_GONE: &str = "Nexus task not found or already expired";

fn decode_nexus_token(bytes: &[u8]) -> Result<NexusTaskToken, ServiceError> {
    if bytes.is_empty() {
        return Err(ServiceError::InvalidArgument(
            "Task token not set on request.".into(),
        ));
    }
    NexusTaskToken::decode_bytes(bytes)
        .ok_or_else(|| ServiceError::InvalidArgument("Error deserializing task token.".into()))
}

fn task_ref(token: &NexusTaskToken) -> NexusTaskRef {
    NexusTaskRef {
        scheduled_event_id: token.scheduled_event_id,
        cancel: token.cancel,
        attempt: token.attempt,
    }
}

impl Frontend {
    /// The registered endpoints the ScheduleNexusOperation commands of a completion name
    /// (an endpoint not registered, or with no worker target, is left out: the engine refuses
    /// its command).
    pub(super) fn nexus_endpoint_targets(&self, commands: &[Command]) -> NexusEndpointTargets {
        let mut targets = NexusEndpointTargets::new();
        for command in commands {
            let Some(Cmd::ScheduleNexusOperationCommandAttributes(a)) = &command.attributes else {
                continue;
            };
            if targets.contains_key(&a.endpoint) {
                continue;
            }
            let Some(endpoint) = self.nexus_endpoints.by_name(&a.endpoint) else {
                continue;
            };
            let worker = endpoint
                .spec
                .as_ref()
                .and_then(|s| s.target.as_ref())
                .and_then(|t| match &t.variant {
                    Some(endpoint_target::Variant::Worker(w)) => Some(w.clone()),
                    _ => None,
                });
            if let Some(worker) = worker {
                targets.insert(
                    a.endpoint.clone(),
                    NexusTarget {
                        endpoint_id: endpoint.id.clone(),
                        namespace: worker.namespace,
                        task_queue: worker.task_queue,
                    },
                );
            }
        }
        targets
    }

    /// PollNexusTaskQueue: the next start or cancel request on the queue, empty when none
    /// came within `wait`.
    pub(super) async fn poll_nexus_task(
        &self,
        req: PollNexusTaskQueueRequest,
        wait: std::time::Duration,
    ) -> Result<PollNexusTaskQueueResponse, ServiceError> {
        let key = self.polled_queue(&req.namespace, req.task_queue.as_ref(), TaskKind::Nexus)?;
        let until = tokio::time::Instant::now() + wait;
        loop {
            let Some((handle, lease)) = self
                .next_task_until(&key, &req.identity, &req.worker_instance_key, until)
                .await
            else {
                return Ok(PollNexusTaskQueueResponse::default());
            };
            let queued = lease.task();
            let task = NexusTaskRef {
                scheduled_event_id: queued.scheduled_event_id,
                cancel: queued.nexus_cancel,
                attempt: i32::try_from(queued.seq_or_attempt).unwrap_or(0),
            };
            let now_ms = self.history.now_ms();
            let result = self
                .history
                .transition(
                    &handle,
                    |t| t.nexus_task_dispatched(task),
                    move |entry, ()| responses::nexus_task(entry, task, now_ms),
                )
                .await;
            if let Some(response) = settle(lease, result)? {
                return Ok(response);
            }
        }
    }

    /// The caller's run a Nexus task token names.
    async fn nexus_caller(
        &self,
        token: &NexusTaskToken,
    ) -> Result<std::sync::Arc<crate::run::RunHandle>, ServiceError> {
        match self
            .history
            .handle(&token.namespace, &token.workflow_id, Some(&token.run_id))
            .await
        {
            Err(ServiceError::NotFound(_)) => Err(ServiceError::NotFound(TASK_GONE.into())),
            other => other,
        }
    }

    /// RespondNexusTaskCompleted: a handler's answer to a start or a cancel request.
    pub(super) async fn respond_nexus_completed(
        &self,
        req: RespondNexusTaskCompletedRequest,
    ) -> Result<RespondNexusTaskCompletedResponse, ServiceError> {
        self.namespaces.check(&req.namespace)?;
        let token = decode_nexus_token(&req.task_token)?;
        let task = task_ref(&token);
        let handle = self.nexus_caller(&token).await?;
        match req.response.and_then(|r| r.variant) {
            Some(response::Variant::StartOperation(start)) => {
                let answer = nexus::start_answer(&start)?;
                if let StartAnswer::Completed(Some(payload)) = &answer {
                    self.check_blob(Some(&sundial_engine::api::common::v1::Payloads {
                        payloads: vec![payload.clone()],
                    }))?;
                }
                self.history
                    .transition(
                        &handle,
                        move |t| t.nexus_start_answered(task, answer),
                        |_, ()| (),
                    )
                    .await?;
            }
            Some(response::Variant::CancelOperation(_)) => {
                self.history
                    .transition(
                        &handle,
                        move |t| t.nexus_cancel_answered(task, Ok(())),
                        |_, ()| (),
                    )
                    .await?;
            }
            None => {
                return Err(ServiceError::InvalidArgument(
                    "Response is not set on request.".into(),
                ));
            }
        }
        Ok(RespondNexusTaskCompletedResponse {})
    }

    /// RespondNexusTaskFailed: the handler could not process a request.
    #[allow(deprecated)] // `error`: what workers without temporal failure responses send
    pub(super) async fn respond_nexus_failed(
        &self,
        req: RespondNexusTaskFailedRequest,
    ) -> Result<RespondNexusTaskFailedResponse, ServiceError> {
        self.namespaces.check(&req.namespace)?;
        let token = decode_nexus_token(&req.task_token)?;
        let task = task_ref(&token);
        let (failure, retryable) = nexus::handler_error(req.failure.as_ref(), req.error.as_ref())?;
        let handle = self.nexus_caller(&token).await?;
        self.history
            .transition(
                &handle,
                move |t| {
                    if task.cancel {
                        t.nexus_cancel_answered(task, Err((failure, retryable)))
                    } else {
                        t.nexus_start_answered(
                            task,
                            StartAnswer::HandlerError { failure, retryable },
                        )
                    }
                },
                |_, ()| (),
            )
            .await?;
        Ok(RespondNexusTaskFailedResponse {})
    }
}
