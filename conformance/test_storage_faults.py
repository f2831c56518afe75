"""A disk that loses writes: fsync fails (EIO) under a real Sundial process, through a preload
library (conformance/native/fail_fsync.c) that makes fsync/fdatasync fail while a trigger file
exists. Pages written before a failed fsync may be gone, so the store must stop for good:
health NOT_SERVING, every later write Unavailable (even once fsync works again), nothing
installed in memory that the disk may not hold; a restart re-reads the file and carries on."""

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest
from temporalio.client import Client, RPCError, RPCStatusCode
from temporalio.worker import Worker

NATIVE = Path(__file__).parent / "native"


@workflow.defn
class TallyWorkflow:
    def __init__(self) -> None:
        self.count = 0

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.count >= 3)
        return self.count

    @workflow.signal
    async def bump(self) -> None:
        self.count += 1

    @workflow.query
    def seen(self) -> int:
        return self.count


def _build_preload(out_dir: Path) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.fail("a C compiler (cc or gcc) is needed to build the fsync fault library")
    lib = out_dir / "libfailfsync.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(lib), str(NATIVE / "fail_fsync.c"), "-ldl"],
        check=True,
    )
    return lib


def _signal(wf_id: str, request_id: str) -> SignalWorkflowExecutionRequest:
    return SignalWorkflowExecutionRequest(
        namespace="default",
        workflow_execution=WorkflowExecution(workflow_id=wf_id),
        signal_name="bump",
        identity="storage-fault-test",
        request_id=request_id,
    )


@pytest.mark.sqlite_only
async def test_a_failed_fsync_stops_writes_until_a_restart(
    external_address, sundial_factory, tmp_path, new_id
):
    if external_address:
        pytest.skip("needs a server process managed by the suite (SUNDIAL_ADDRESS is set)")
    trigger = tmp_path / "fail-fsync-now"
    server = sundial_factory(
        tmp_path / "fsync.db",
        env={
            "LD_PRELOAD": str(_build_preload(tmp_path)),
            "SUNDIAL_TEST_FAIL_FSYNC": str(trigger),
        },
    )
    await server.start()
    client = await Client.connect(server.address)
    tq = new_id("fsync-tq")
    wf_id = new_id("fsync")
    async with Worker(client, task_queue=tq, workflows=[TallyWorkflow]):
        handle = await client.start_workflow(TallyWorkflow.run, id=wf_id, task_queue=tq)
        await client.workflow_service.signal_workflow_execution(_signal(wf_id, "first"))
        assert await handle.query(TallyWorkflow.seen) == 1
        assert await client.service_client.check_health()

        trigger.touch()
        with pytest.raises(RPCError) as failed:
            await client.workflow_service.signal_workflow_execution(
                _signal(wf_id, "during-failure"), retry=False
            )
        assert failed.value.status == RPCStatusCode.UNAVAILABLE, failed.value
        assert not await client.service_client.check_health()
        # Memory did not run ahead of a disk that may not hold the signal.
        assert await handle.query(TallyWorkflow.seen) == 1

        # fsync works again, but what was written before the failure cannot be trusted:
        # the store stays stopped until a restart re-reads the file.
        trigger.unlink()
        with pytest.raises(RPCError) as still:
            await client.workflow_service.signal_workflow_execution(
                _signal(wf_id, "after-failure"), retry=False
            )
        assert still.value.status == RPCStatusCode.UNAVAILABLE, still.value
        with pytest.raises(RPCError):
            await client.start_workflow(TallyWorkflow.run, id=new_id("refused"), task_queue=tq)
        assert not await client.service_client.check_health()

    server.kill()
    await server.start()
    client = await Client.connect(server.address)
    assert await client.service_client.check_health()
    async with Worker(client, task_queue=tq, workflows=[TallyWorkflow]):
        # The client retries the signals that got Unavailable, with their request ids: each
        # is delivered once whether or not its write survived the failed fsync.
        for request_id in ["during-failure", "during-failure", "after-failure"]:
            await client.workflow_service.signal_workflow_execution(_signal(wf_id, request_id))
        assert await client.get_workflow_handle(wf_id).result() == 3
    history = await client.get_workflow_handle(wf_id).fetch_history()
    ids = [e.event_id for e in history.events]
    assert ids == list(range(1, len(ids) + 1)), "event ids must be dense and unique"
