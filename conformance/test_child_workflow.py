"""Child Workflow: execute/start child workflows, signal and cancel a child,
child failure propagation, parent close policies, duplicate child ids, and
signalling/cancelling an external workflow."""

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import List

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import (
    EventType,
    ParentClosePolicy as ApiParentClosePolicy,
    SignalExternalWorkflowExecutionFailedCause,
    StartChildWorkflowExecutionFailedCause,
)
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    RetryState,
    WorkflowAlreadyStartedError,
)
from temporalio.worker import Worker
from temporalio.workflow import ParentClosePolicy


@dataclass
class ComposeGreetingInput:
    greeting: str
    name: str


@workflow.defn
class ComposeGreetingWorkflow:
    """Child workflow that composes a greeting message."""

    @workflow.run
    async def run(self, input: ComposeGreetingInput) -> str:
        return f"{input.greeting}, {input.name}!"


@workflow.defn
class GreetingWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        greeting = await workflow.execute_child_workflow(
            ComposeGreetingWorkflow.run,
            ComposeGreetingInput("Hello", name),
            id=f"{workflow.info().workflow_id}/child",
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
        # the parent uses the child's result
        return greeting.upper()


@workflow.defn
class WaitingChildWorkflow:
    """Returns once it got a greeting by signal (or ``finish``)."""

    def __init__(self) -> None:
        self._greeting = ""

    @workflow.run
    async def run(self, name: str) -> str:
        await workflow.wait_condition(lambda: self._greeting != "")
        return f"{self._greeting}, {name}!"

    @workflow.signal
    def set_greeting(self, greeting: str) -> None:
        self._greeting = greeting


@workflow.defn
class AdvancedParentWorkflow:
    @workflow.run
    async def run(self, name: str) -> List[str]:
        handle = await workflow.start_child_workflow(
            WaitingChildWorkflow.run, name, id=f"{workflow.info().workflow_id}/child"
        )
        await handle.signal(WaitingChildWorkflow.set_greeting, "Hi")
        return [handle.id, handle.first_execution_run_id or "", await handle]


@workflow.defn
class SleepingChildWorkflow:
    @workflow.run
    async def run(self) -> str:
        await asyncio.sleep(60)
        return "slept"


@workflow.defn
class CancelChildParentWorkflow:
    @workflow.run
    async def run(self) -> str:
        handle = await workflow.start_child_workflow(
            SleepingChildWorkflow.run, id=f"{workflow.info().workflow_id}/child"
        )
        handle.cancel()
        try:
            await handle
        except ChildWorkflowError as err:
            return f"child {type(err.cause).__name__}"
        return "child was not cancelled"


@workflow.defn
class FailingChildWorkflow:
    @workflow.run
    async def run(self) -> str:
        raise ApplicationError("child exploded", "some detail", type="ChildBoom", non_retryable=True)


@workflow.defn
class FailingParentWorkflow:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_child_workflow(
            FailingChildWorkflow.run, id=f"{workflow.info().workflow_id}/child"
        )


@workflow.defn
class ClosePolicyParentWorkflow:
    @workflow.run
    async def run(self, policy: str) -> str:
        handle = await workflow.start_child_workflow(
            WaitingChildWorkflow.run,
            "abandoned" if policy == "ABANDON" else "child",
            id=f"{workflow.info().workflow_id}/child",
            parent_close_policy=ParentClosePolicy[policy],
        )
        # complete while the child is still running
        return handle.id


@workflow.defn
class DuplicateChildParentWorkflow:
    @workflow.run
    async def run(self) -> str:
        child_id = f"{workflow.info().workflow_id}/child"
        first = await workflow.start_child_workflow(WaitingChildWorkflow.run, "first", id=child_id)
        try:
            await workflow.start_child_workflow(WaitingChildWorkflow.run, "second", id=child_id)
            outcome = "second child started"
        except WorkflowAlreadyStartedError as err:
            outcome = f"already started: {err.workflow_id} {err.workflow_type}"
        await first.signal(WaitingChildWorkflow.set_greeting, "Hey")
        return f"{outcome} | {await first}"


@workflow.defn
class SignalExternalWorkflow:
    @workflow.run
    async def run(self, target_id: str) -> str:
        await workflow.get_external_workflow_handle(target_id).signal(
            WaitingChildWorkflow.set_greeting, "Howdy"
        )
        try:
            await workflow.get_external_workflow_handle(f"{target_id}-missing").signal(
                WaitingChildWorkflow.set_greeting, "nobody"
            )
            missing = "signalled a missing workflow"
        except ApplicationError as err:
            missing = f"{err.type}: {err.message}"
        return missing


@workflow.defn
class CancelExternalWorkflow:
    @workflow.run
    async def run(self, target_id: str) -> str:
        await workflow.get_external_workflow_handle(target_id).cancel()
        return "cancel requested"


WORKFLOWS = [
    ComposeGreetingWorkflow,
    GreetingWorkflow,
    WaitingChildWorkflow,
    AdvancedParentWorkflow,
    SleepingChildWorkflow,
    CancelChildParentWorkflow,
    FailingChildWorkflow,
    FailingParentWorkflow,
    ClosePolicyParentWorkflow,
    DuplicateChildParentWorkflow,
    SignalExternalWorkflow,
    CancelExternalWorkflow,
]


@pytest.fixture(scope="module")
async def task_queue():
    return f"tq-child-workflows-{uuid.uuid4()}"


@pytest.fixture(scope="module")
async def worker(client, task_queue):
    # one worker for the module: validating a dozen sandboxed workflows per test is slow
    async with Worker(client, task_queue=task_queue, workflows=WORKFLOWS):
        yield


def _events(history, event_type: int):
    return [e for e in history.events if e.event_type == event_type]


async def _wait_status(handle, status, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        desc = await handle.describe()
        if desc.status == status:
            return desc
        assert time.monotonic() < deadline, f"{handle.id}: status {desc.status}, wanted {status}"
        await asyncio.sleep(0.1)


async def test_execute_child_workflow_result_used_by_parent(client, worker, task_queue, new_id, history_types):
    wf_id = new_id("greeting")
    handle = await client.start_workflow(GreetingWorkflow.run, "World", id=wf_id, task_queue=task_queue)
    assert await asyncio.wait_for(handle.result(), 10) == "HELLO, WORLD!"

    types = await history_types(handle)
    assert types == [
        "WORKFLOW_EXECUTION_STARTED",
        "WORKFLOW_TASK_SCHEDULED",
        "WORKFLOW_TASK_STARTED",
        "WORKFLOW_TASK_COMPLETED",
        "START_CHILD_WORKFLOW_EXECUTION_INITIATED",
        "CHILD_WORKFLOW_EXECUTION_STARTED",
        "WORKFLOW_TASK_SCHEDULED",
        "WORKFLOW_TASK_STARTED",
        "WORKFLOW_TASK_COMPLETED",
        "CHILD_WORKFLOW_EXECUTION_COMPLETED",
        "WORKFLOW_TASK_SCHEDULED",
        "WORKFLOW_TASK_STARTED",
        "WORKFLOW_TASK_COMPLETED",
        "WORKFLOW_EXECUTION_COMPLETED",
    ]
    history = await handle.fetch_history()
    (initiated,) = _events(history, EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED)
    init = initiated.start_child_workflow_execution_initiated_event_attributes
    assert init.workflow_id == f"{wf_id}/child"
    assert init.workflow_type.name == "ComposeGreetingWorkflow"
    assert init.task_queue.name == task_queue
    assert init.parent_close_policy == ApiParentClosePolicy.PARENT_CLOSE_POLICY_ABANDON
    (started,) = _events(history, EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED)
    st = started.child_workflow_execution_started_event_attributes
    assert st.initiated_event_id == initiated.event_id
    assert st.workflow_execution.workflow_id == f"{wf_id}/child"
    (completed,) = _events(history, EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED)
    done = completed.child_workflow_execution_completed_event_attributes
    assert done.initiated_event_id == initiated.event_id
    assert done.started_event_id == started.event_id
    assert done.workflow_execution.run_id == st.workflow_execution.run_id
    assert client.data_converter.payload_converter.from_payloads(done.result.payloads, [str]) == ["Hello, World!"]

    # the child knows its parent
    child = client.get_workflow_handle(f"{wf_id}/child")
    desc = await child.describe()
    assert desc.status == WorkflowExecutionStatus.COMPLETED
    assert desc.run_id == st.workflow_execution.run_id
    assert desc.parent_id == wf_id
    assert desc.parent_run_id == handle.result_run_id
    assert desc.root_id == wf_id
    assert desc.root_run_id == handle.result_run_id
    child_history = await child.fetch_history()
    cst = child_history.events[0].workflow_execution_started_event_attributes
    assert cst.parent_workflow_namespace == "default"
    assert cst.parent_workflow_execution.workflow_id == wf_id
    assert cst.parent_workflow_execution.run_id == handle.result_run_id
    assert cst.parent_initiated_event_id == initiated.event_id
    assert cst.root_workflow_execution.workflow_id == wf_id
    assert await child.result() == "Hello, World!"


async def test_start_child_workflow_handle_signal(client, worker, task_queue, new_id, history_types):
    wf_id = new_id("advanced")
    handle = await client.start_workflow(AdvancedParentWorkflow.run, "Ada", id=wf_id, task_queue=task_queue)
    child_id, child_run_id, greeting = await asyncio.wait_for(handle.result(), 10)
    assert (child_id, greeting) == (f"{wf_id}/child", "Hi, Ada!")
    child = client.get_workflow_handle(child_id)
    assert (await child.describe()).run_id == child_run_id

    types = await history_types(handle)
    assert "SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED" in types
    assert "EXTERNAL_WORKFLOW_EXECUTION_SIGNALED" in types
    assert types.index("CHILD_WORKFLOW_EXECUTION_STARTED") < types.index(
        "SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED"
    ) < types.index("EXTERNAL_WORKFLOW_EXECUTION_SIGNALED") < types.index("CHILD_WORKFLOW_EXECUTION_COMPLETED")
    history = await handle.fetch_history()
    (sig,) = _events(history, EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED)
    attrs = sig.signal_external_workflow_execution_initiated_event_attributes
    assert attrs.signal_name == "set_greeting"
    assert attrs.workflow_execution.workflow_id == child_id
    assert attrs.child_workflow_only is True

    child_history = await child.fetch_history()
    (signaled,) = _events(child_history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
    s = signaled.workflow_execution_signaled_event_attributes
    assert s.signal_name == "set_greeting"
    assert s.external_workflow_execution.workflow_id == wf_id


async def test_cancel_child_workflow(client, worker, task_queue, new_id, history_types):
    wf_id = new_id("cancel-child")
    handle = await client.start_workflow(CancelChildParentWorkflow.run, id=wf_id, task_queue=task_queue)
    assert await asyncio.wait_for(handle.result(), 10) == "child CancelledError"

    child = client.get_workflow_handle(f"{wf_id}/child")
    assert (await child.describe()).status == WorkflowExecutionStatus.CANCELED
    types = await history_types(handle)
    interesting = [t for t in types if not t.startswith("WORKFLOW_TASK_")]
    assert interesting == [
        "WORKFLOW_EXECUTION_STARTED",
        "START_CHILD_WORKFLOW_EXECUTION_INITIATED",
        "CHILD_WORKFLOW_EXECUTION_STARTED",
        "REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED",
        "EXTERNAL_WORKFLOW_EXECUTION_CANCEL_REQUESTED",
        "CHILD_WORKFLOW_EXECUTION_CANCELED",
        "WORKFLOW_EXECUTION_COMPLETED",
    ]
    child_types = await history_types(child)
    assert "WORKFLOW_EXECUTION_CANCEL_REQUESTED" in child_types
    assert child_types[-1] == "WORKFLOW_EXECUTION_CANCELED"
    child_history = await child.fetch_history()
    (req,) = _events(child_history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED)
    assert req.workflow_execution_cancel_requested_event_attributes.external_workflow_execution.workflow_id == wf_id


async def test_child_failure_propagates(client, worker, task_queue, new_id):
    wf_id = new_id("failing-parent")
    handle = await client.start_workflow(FailingParentWorkflow.run, id=wf_id, task_queue=task_queue)
    with pytest.raises(WorkflowFailureError) as exc_info:
        await asyncio.wait_for(handle.result(), 10)
    child_err = exc_info.value.cause
    assert isinstance(child_err, ChildWorkflowError), repr(child_err)
    assert child_err.workflow_type == "FailingChildWorkflow"
    assert child_err.workflow_id == f"{wf_id}/child"
    assert child_err.namespace == "default"
    assert child_err.retry_state == RetryState.RETRY_POLICY_NOT_SET
    app_err = child_err.cause
    assert isinstance(app_err, ApplicationError), repr(app_err)
    assert (app_err.type, app_err.message, list(app_err.details)) == ("ChildBoom", "child exploded", ["some detail"])

    history = await handle.fetch_history()
    (failed,) = _events(history, EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED)
    attrs = failed.child_workflow_execution_failed_event_attributes
    assert attrs.failure.application_failure_info.type == "ChildBoom"
    assert attrs.workflow_type.name == "FailingChildWorkflow"
    child = client.get_workflow_handle(f"{wf_id}/child")
    assert (await child.describe()).status == WorkflowExecutionStatus.FAILED


async def test_parent_close_policy_terminate(client, worker, task_queue, new_id):
    wf_id = new_id("pcp-terminate")
    handle = await client.start_workflow(ClosePolicyParentWorkflow.run, "TERMINATE", id=wf_id, task_queue=task_queue)
    child_id = await asyncio.wait_for(handle.result(), 10)
    child = client.get_workflow_handle(child_id)
    await _wait_status(child, WorkflowExecutionStatus.TERMINATED)
    history = await child.fetch_history()
    last = history.events[-1]
    assert last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED
    attrs = last.workflow_execution_terminated_event_attributes
    assert (attrs.reason, attrs.identity) == ("by parent close policy", "history-service")
    with pytest.raises(WorkflowFailureError):
        await child.result()


async def test_parent_close_policy_request_cancel(client, worker, task_queue, new_id):
    wf_id = new_id("pcp-cancel")
    handle = await client.start_workflow(
        ClosePolicyParentWorkflow.run, "REQUEST_CANCEL", id=wf_id, task_queue=task_queue
    )
    child_id = await asyncio.wait_for(handle.result(), 10)
    child = client.get_workflow_handle(child_id)
    await _wait_status(child, WorkflowExecutionStatus.CANCELED)
    history = await child.fetch_history()
    (req,) = _events(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED)
    attrs = req.workflow_execution_cancel_requested_event_attributes
    # requested on behalf of the closed parent run
    assert attrs.external_workflow_execution.workflow_id == wf_id
    assert attrs.external_workflow_execution.run_id == handle.result_run_id
    assert attrs.identity == "history-service"
    assert attrs.cause == ""
    assert history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED
    # the parent had already completed: nothing about the cancel in its history
    parent_types = [e.event_type for e in (await handle.fetch_history()).events]
    assert parent_types[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    assert EventType.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED not in parent_types


async def test_parent_close_policy_abandon(client, worker, task_queue, new_id):
    wf_id = new_id("pcp-abandon")
    handle = await client.start_workflow(ClosePolicyParentWorkflow.run, "ABANDON", id=wf_id, task_queue=task_queue)
    child_id = await asyncio.wait_for(handle.result(), 10)
    child = client.get_workflow_handle(child_id)
    await asyncio.sleep(1.0)
    desc = await child.describe()
    assert desc.status == WorkflowExecutionStatus.RUNNING
    assert desc.parent_id == wf_id
    # still a working workflow: finish it with a signal
    await child.signal(WaitingChildWorkflow.set_greeting, "Bye")
    assert await asyncio.wait_for(child.result(), 10) == "Bye, abandoned!"
    types = [e.event_type for e in (await child.fetch_history()).events]
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED not in types


async def test_duplicate_child_id(client, worker, task_queue, new_id):
    wf_id = new_id("dup-child")
    handle = await client.start_workflow(DuplicateChildParentWorkflow.run, id=wf_id, task_queue=task_queue)
    result = await asyncio.wait_for(handle.result(), 10)
    assert result == f"already started: {wf_id}/child WaitingChildWorkflow | Hey, first!"
    history = await handle.fetch_history()
    (failed,) = _events(history, EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED)
    attrs = failed.start_child_workflow_execution_failed_event_attributes
    assert attrs.cause == StartChildWorkflowExecutionFailedCause.START_CHILD_WORKFLOW_EXECUTION_FAILED_CAUSE_WORKFLOW_ALREADY_EXISTS
    assert attrs.workflow_id == f"{wf_id}/child"
    assert attrs.workflow_type.name == "WaitingChildWorkflow"
    initiated = _events(history, EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED)
    assert len(initiated) == 2
    assert attrs.initiated_event_id == initiated[1].event_id
    assert len(_events(history, EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED)) == 1


async def test_signal_and_cancel_external_workflow(client, worker, task_queue, new_id, history_types):
    # signal: an independent (non-child) workflow waits for a greeting
    target = await client.start_workflow(
        WaitingChildWorkflow.run, "Grace", id=new_id("ext-target"), task_queue=task_queue
    )
    signaler = await client.start_workflow(
        SignalExternalWorkflow.run, target.id, id=new_id("ext-signaler"), task_queue=task_queue
    )
    missing = await asyncio.wait_for(signaler.result(), 10)
    assert await asyncio.wait_for(target.result(), 10) == "Howdy, Grace!"
    # signalling a workflow that does not exist fails inside the workflow
    assert missing == "ExternalWorkflowExecutionNotFound: Unable to signal external workflow because it was not found"

    history = await signaler.fetch_history()
    initiated = _events(history, EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED)
    assert len(initiated) == 2
    assert initiated[0].signal_external_workflow_execution_initiated_event_attributes.child_workflow_only is False
    (signaled,) = _events(history, EventType.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED)
    assert signaled.external_workflow_execution_signaled_event_attributes.initiated_event_id == initiated[0].event_id
    (failed,) = _events(history, EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED)
    fattrs = failed.signal_external_workflow_execution_failed_event_attributes
    assert fattrs.cause == (
        SignalExternalWorkflowExecutionFailedCause.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED_CAUSE_EXTERNAL_WORKFLOW_EXECUTION_NOT_FOUND
    )
    assert fattrs.initiated_event_id == initiated[1].event_id
    target_history = await target.fetch_history()
    (sig,) = _events(target_history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
    assert sig.workflow_execution_signaled_event_attributes.external_workflow_execution.workflow_id == signaler.id

    # cancel: an independent sleeping workflow is cancelled by another workflow
    sleeper = await client.start_workflow(
        SleepingChildWorkflow.run, id=new_id("ext-sleeper"), task_queue=task_queue
    )
    canceler = await client.start_workflow(
        CancelExternalWorkflow.run, sleeper.id, id=new_id("ext-canceler"), task_queue=task_queue
    )
    assert await asyncio.wait_for(canceler.result(), 10) == "cancel requested"
    with pytest.raises(WorkflowFailureError) as exc_info:
        await asyncio.wait_for(sleeper.result(), 10)
    assert isinstance(exc_info.value.cause, CancelledError)
    canceler_types = await history_types(canceler)
    assert [t for t in canceler_types if not t.startswith("WORKFLOW_TASK_")] == [
        "WORKFLOW_EXECUTION_STARTED",
        "REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED",
        "EXTERNAL_WORKFLOW_EXECUTION_CANCEL_REQUESTED",
        "WORKFLOW_EXECUTION_COMPLETED",
    ]
    sleeper_history = await sleeper.fetch_history()
    (req,) = _events(sleeper_history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED)
    rattrs = req.workflow_execution_cancel_requested_event_attributes
    assert rattrs.external_workflow_execution.workflow_id == canceler.id
    canceler_history = await canceler.fetch_history()
    (init,) = _events(canceler_history, EventType.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED)
    assert rattrs.external_initiated_event_id == init.event_id
    assert init.request_cancel_external_workflow_execution_initiated_event_attributes.child_workflow_only is False
