"""The Python SDK's test environment launches Sundial in place of Temporal's dev server."""

import os
import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker


@activity.defn
async def shout(text: str) -> str:
    return text.upper()


@workflow.defn
class ShoutWorkflow:
    @workflow.run
    async def run(self, text: str) -> str:
        return await workflow.execute_activity(shout, text, start_to_close_timeout=timedelta(seconds=5))


@pytest.mark.skipif(bool(os.environ.get("SUNDIAL_ADDRESS")), reason="needs the Sundial binary")
async def test_start_local_launches_sundial():
    from conftest import DEFAULT_BIN  # not at module level: the workflow sandbox re-imports this file

    binary = os.environ.get("SUNDIAL_BIN", str(DEFAULT_BIN))
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary, namespace="local-ns"
    ) as env:
        tq = f"start-local-{uuid.uuid4()}"
        async with Worker(env.client, task_queue=tq, workflows=[ShoutWorkflow], activities=[shout]):
            result = await env.client.execute_workflow(
                ShoutWorkflow.run, "sundial", id=f"wf-{uuid.uuid4()}", task_queue=tq
            )
        assert result == "SUNDIAL"
        assert env.client.namespace == "local-ns"
