"""Limits with Temporal's semantics, made small through dynamic configuration: a workflow whose
history outgrows `limit.historyCount.error` is terminated; a payload over
`limit.blobSize.error` is refused."""

import asyncio

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker


# Unsandboxed: CPython 3.11.7's ast module can fail the SDK sandbox's validation with
# "AST constructor recursion depth mismatch" once many test modules are loaded.
@workflow.defn(sandboxed=False)
class SignalSink:
    def __init__(self) -> None:
        self.count = 0

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.count >= 1000)
        return self.count

    @workflow.signal
    def poke(self) -> None:
        self.count += 1


async def test_history_count_and_blob_size_limits(sundial_factory, tmp_path, new_id):
    server = sundial_factory(
        tmp_path / "limits.db",
        extra_args=[
            "--dynamic-config-value", "limit.historyCount.error=30",
            "--dynamic-config-value", "limit.blobSize.error=1000",
        ],
    )
    await server.start()
    client = await Client.connect(server.address)
    task_queue = new_id("limits-tq")
    async with Worker(client, task_queue=task_queue, workflows=[SignalSink]):
        handle = await client.start_workflow(SignalSink.run, id=new_id("sink"), task_queue=task_queue)
        for _ in range(40):
            try:
                await handle.signal(SignalSink.poke)
            except RPCError:
                break  # the run was closed by the limit
            await asyncio.sleep(0.02)
        for _ in range(50):
            desc = await handle.describe()
            if desc.status != WorkflowExecutionStatus.RUNNING:
                break
            await asyncio.sleep(0.1)
        assert desc.status == WorkflowExecutionStatus.TERMINATED
        history = await handle.fetch_history()
        last = history.events[-1]
        assert last.workflow_execution_terminated_event_attributes.reason == (
            "Workflow history count exceeds limit."
        )
        assert len(history.events) <= 35

        with pytest.raises(RPCError) as err:
            await client.start_workflow(
                "SignalSink", "x" * 2000, id=new_id("big"), task_queue=task_queue
            )
        assert err.value.status == RPCStatusCode.INVALID_ARGUMENT
        assert "Blob data size exceeds limit." in err.value.message
