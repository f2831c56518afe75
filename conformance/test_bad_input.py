"""Bad requests must be rejected with the same gRPC status codes the reference
Temporal server uses, with a non-empty message.

Reference messages (Temporal server 1.32 dev server) are kept next to each case
for comparison; only the status code and a non-empty message are asserted.
"""

import asyncio
import uuid
from datetime import timedelta

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload, Payloads, WorkflowExecution, WorkflowType
from temporalio.api.errordetails.v1 import WorkflowExecutionAlreadyStartedFailure
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeWorkflowExecutionRequest,
    RecordActivityTaskHeartbeatRequest,
    RespondActivityTaskCompletedRequest,
    RespondWorkflowTaskCompletedRequest,
    StartWorkflowExecutionRequest,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

INVALID = RPCStatusCode.INVALID_ARGUMENT
NOT_FOUND = RPCStatusCode.NOT_FOUND
BLOB_LIMIT = 2 * 1024 * 1024  # Temporal's default blob size limit (2 MiB)


def start_request(**overrides) -> StartWorkflowExecutionRequest:
    fields = dict(
        namespace="default",
        workflow_id=f"bad-input-{uuid.uuid4()}",
        workflow_type=WorkflowType(name="NeverRunWorkflow"),
        task_queue=TaskQueue(name=f"bad-input-tq-{uuid.uuid4()}"),
        request_id=str(uuid.uuid4()),
    )
    fields.update(overrides)
    return StartWorkflowExecutionRequest(**fields)


def big_payloads(size: int) -> Payloads:
    return Payloads(payloads=[Payload(metadata={"encoding": b"binary/plain"}, data=b"x" * size)])


# (case id, rpc name, request factory, expected status, reference message)
CASES = [
    ("start-empty-workflow-id", "start_workflow_execution",
     lambda: start_request(workflow_id=""), INVALID,
     "WorkflowId is not set on request."),
    ("start-empty-task-queue", "start_workflow_execution",
     lambda: start_request(task_queue=TaskQueue(name="")), INVALID,
     "missing task queue name"),
    ("start-missing-task-queue", "start_workflow_execution",
     lambda: StartWorkflowExecutionRequest(
         namespace="default", workflow_id=f"bad-{uuid.uuid4()}",
         workflow_type=WorkflowType(name="NeverRunWorkflow"), request_id=str(uuid.uuid4())),
     INVALID, "taskQueue is not set"),
    ("start-empty-workflow-type", "start_workflow_execution",
     lambda: start_request(workflow_type=WorkflowType(name="")), INVALID,
     "WorkflowType is not set on request."),
    ("start-unknown-namespace", "start_workflow_execution",
     lambda: start_request(namespace=f"no-such-namespace-{uuid.uuid4().hex}"), NOT_FOUND,
     "Namespace no-such-namespace-<hex> is not found."),
    ("start-negative-execution-timeout", "start_workflow_execution",
     lambda: start_request(workflow_execution_timeout=Duration(seconds=-1)), INVALID,
     "An invalid WorkflowExecutionTimeoutSeconds is set on request. cause: negative duration"),
    ("start-negative-run-timeout", "start_workflow_execution",
     lambda: start_request(workflow_run_timeout=Duration(seconds=-5)), INVALID,
     "An invalid WorkflowRunTimeoutSeconds is set on request. cause: negative duration"),
    ("start-negative-task-timeout", "start_workflow_execution",
     lambda: start_request(workflow_task_timeout=Duration(seconds=-1)), INVALID,
     "An invalid WorkflowTaskTimeoutSeconds is set on request. cause: negative duration"),
    ("start-oversized-input", "start_workflow_execution",
     lambda: start_request(input=big_payloads(BLOB_LIMIT + 512 * 1024)), INVALID,
     "Blob data size exceeds limit."),
    ("activity-completed-malformed-token", "respond_activity_task_completed",
     lambda: RespondActivityTaskCompletedRequest(
         namespace="default", task_token=b"definitely-not-a-task-token", identity="conformance"),
     INVALID, "Error deserializing task token."),
    ("activity-completed-empty-token", "respond_activity_task_completed",
     lambda: RespondActivityTaskCompletedRequest(namespace="default", task_token=b"", identity="conformance"),
     INVALID, "Task token not set on request."),
    ("activity-heartbeat-malformed-token", "record_activity_task_heartbeat",
     lambda: RecordActivityTaskHeartbeatRequest(
         namespace="default", task_token=b"definitely-not-a-task-token", identity="conformance"),
     INVALID, "Error deserializing task token."),
    ("workflow-task-completed-malformed-token", "respond_workflow_task_completed",
     lambda: RespondWorkflowTaskCompletedRequest(
         namespace="default", task_token=b"definitely-not-a-task-token", identity="conformance"),
     INVALID, "Error deserializing task token."),
    ("describe-unknown-workflow", "describe_workflow_execution",
     lambda: DescribeWorkflowExecutionRequest(
         namespace="default", execution=WorkflowExecution(workflow_id=f"missing-{uuid.uuid4()}")),
     NOT_FOUND, "workflow not found for ID: missing-<uuid>"),
]


@pytest.mark.parametrize(
    "rpc,make_request,expected,reference_message",
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
async def test_bad_request_rejected(client, rpc, make_request, expected, reference_message):
    with pytest.raises(RPCError) as info:
        await getattr(client.workflow_service, rpc)(make_request(), timeout=timedelta(seconds=10))
    err = info.value
    assert err.status == expected, f"got {err.status.name}: {err.message!r} (reference: {reference_message!r})"
    assert err.message.strip(), "error message must not be empty"


async def test_payload_just_under_limit_is_accepted(client):
    """The limit is on the blob, not a generic message cap: 1.5 MiB must be accepted."""
    req = start_request(input=big_payloads(BLOB_LIMIT - 512 * 1024))
    resp = await client.workflow_service.start_workflow_execution(req, timeout=timedelta(seconds=10))
    assert resp.run_id
    await client.get_workflow_handle(req.workflow_id).terminate("bad-input test cleanup")


@workflow.defn
class NeverRunWorkflow:
    @workflow.run
    async def run(self) -> None:
        raise RuntimeError("never executed: no worker polls these queues")


async def test_duplicate_start_is_already_exists(client, task_queue, new_id):
    wf_id = new_id("dup")
    handle = await client.start_workflow(NeverRunWorkflow.run, id=wf_id, task_queue=task_queue)
    try:
        with pytest.raises(WorkflowAlreadyStartedError) as info:
            await client.start_workflow(NeverRunWorkflow.run, id=wf_id, task_queue=task_queue)
        assert info.value.workflow_id == wf_id
        assert info.value.workflow_type == "NeverRunWorkflow"

        # the raw RPC: ALREADY_EXISTS with a WorkflowExecutionAlreadyStartedFailure detail
        req = start_request(workflow_id=wf_id, task_queue=TaskQueue(name=task_queue))
        with pytest.raises(RPCError) as raw:
            await client.workflow_service.start_workflow_execution(req)
        assert raw.value.status == RPCStatusCode.ALREADY_EXISTS
        assert raw.value.message.strip()
        details = raw.value.grpc_status.details
        assert len(details) == 1
        failure = WorkflowExecutionAlreadyStartedFailure()
        assert details[0].Unpack(failure)
        assert failure.run_id == handle.first_execution_run_id

        # re-sending the *same* request id is idempotent: returns the existing run
        first = start_request(workflow_id=new_id("idem"), task_queue=TaskQueue(name=task_queue))
        r1 = await client.workflow_service.start_workflow_execution(first)
        r2 = await client.workflow_service.start_workflow_execution(first)
        assert r1.run_id == r2.run_id
        await client.get_workflow_handle(first.workflow_id).terminate("bad-input test cleanup")
    finally:
        await handle.terminate("bad-input test cleanup")


# --- a well-formed task token that is no longer valid


_token: "asyncio.Future[bytes]"


@activity.defn
async def complete_later() -> str:
    _token.set_result(activity.info().task_token)
    activity.raise_complete_async()


@workflow.defn
class AsyncCompletionWorkflow:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(complete_later, start_to_close_timeout=timedelta(seconds=30))


async def test_stale_task_token_is_not_found(client, task_queue, new_id):
    global _token
    _token = asyncio.get_running_loop().create_future()
    async with Worker(
        client, task_queue=task_queue, workflows=[AsyncCompletionWorkflow], activities=[complete_later]
    ):
        handle = await client.start_workflow(
            AsyncCompletionWorkflow.run, id=new_id("async-complete"), task_queue=task_queue
        )
        token = await asyncio.wait_for(_token, 15)
        await client.get_async_activity_handle(task_token=token).complete("done externally")
        assert await asyncio.wait_for(handle.result(), 15) == "done externally"

    # the activity is closed now: completing or heartbeating it again is NOT_FOUND
    for rpc, req in [
        ("respond_activity_task_completed",
         RespondActivityTaskCompletedRequest(namespace="default", task_token=token, identity="conformance")),
        ("record_activity_task_heartbeat",
         RecordActivityTaskHeartbeatRequest(namespace="default", task_token=token, identity="conformance")),
    ]:
        with pytest.raises(RPCError) as info:
            await getattr(client.workflow_service, rpc)(req)
        assert info.value.status == RPCStatusCode.NOT_FOUND, f"{rpc}: {info.value.status.name} {info.value.message!r}"
        assert info.value.message.strip()
