"""Faults: clients that give up mid-request, crashes at the worst moment, storage that fails,
two servers on one file. Every test drives a real Sundial process through the official SDK."""

import asyncio
import os
import subprocess
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity, workflow
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.enums.v1 import UpdateWorkflowExecutionLifecycleStage
from temporalio.api.update.v1 import Input as UpdateInput
from temporalio.api.update.v1 import Meta as UpdateMeta
from temporalio.api.update.v1 import Request as UpdateRequest
from temporalio.api.update.v1 import WaitPolicy
from temporalio.api.workflowservice.v1 import (
    GetWorkflowExecutionHistoryRequest,
    PollWorkflowTaskQueueRequest,
    RespondWorkflowTaskCompletedRequest,
    UpdateWorkflowExecutionRequest,
)
from temporalio.client import Client, RPCError, RPCStatusCode
from temporalio.common import RetryPolicy
from temporalio.worker import Worker


def _needs_own_server(external_address):
    if external_address:
        pytest.skip("needs a server process managed by the suite (SUNDIAL_ADDRESS is set)")


@workflow.defn
class CountingWorkflow:
    """Counts signals until told to stop."""

    def __init__(self) -> None:
        self.count = 0
        self.done = False

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.done)
        return self.count

    @workflow.signal
    async def bump(self) -> None:
        self.count += 1

    @workflow.signal
    async def stop(self) -> None:
        self.done = True

    @workflow.query
    def seen(self) -> int:
        return self.count


async def _history(client: Client, workflow_id: str) -> list[tuple[int, int]]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return [(e.event_id, e.event_type) for e in history.events]


async def test_signals_abandoned_by_their_deadline_leave_memory_and_disk_equal(
    external_address, sundial_factory, tmp_path, new_id
):
    """Signals whose client deadline passes mid-commit: every later call works, no event id is
    written twice, and after kill -9 the history on disk is the one clients were shown."""
    _needs_own_server(external_address)
    server = sundial_factory(tmp_path / "abandon.db")
    await server.start()
    client = await Client.connect(server.address)
    tq = new_id("abandon-tq")
    wf_id = new_id("abandon")
    async with Worker(client, task_queue=tq, workflows=[CountingWorkflow]):
        handle = await client.start_workflow(CountingWorkflow.run, id=wf_id, task_queue=tq)
        abandoned = 0
        for _ in range(60):
            try:
                await handle.signal(CountingWorkflow.bump, rpc_timeout=timedelta(microseconds=300))
            except RPCError as e:
                assert e.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED), e
                abandoned += 1
        # Whatever was abandoned, the run takes more signals and answers queries.
        for _ in range(5):
            await handle.signal(CountingWorkflow.bump)
        seen = await handle.query(CountingWorkflow.seen)
        assert 5 <= seen <= 65
        shown = await _history(client, wf_id)
        ids = [i for i, _ in shown]
        assert ids == list(range(1, len(ids) + 1))
        signaled = sum(1 for _, t in shown if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
        assert signaled >= seen
    server.kill()
    await server.start()
    client = await Client.connect(server.address)
    on_disk = await _history(client, wf_id)
    assert on_disk[: len(shown)] == shown, "the history shown before the crash is on disk"
    async with Worker(client, task_queue=tq, workflows=[CountingWorkflow]):
        handle = client.get_workflow_handle(wf_id)
        await handle.signal(CountingWorkflow.stop)
        assert await asyncio.wait_for(handle.result(), 30) >= 5


_ATTEMPTS_FILE: dict[str, Path] = {}


@activity.defn
async def record_and_wait(marker_dir: str) -> str:
    """Records each execution of the attempt, then waits for a release file."""
    info = activity.info()
    Path(marker_dir, f"{info.attempt}-{uuid.uuid4()}").write_text("ran")
    release = Path(marker_dir, "release")
    while not release.exists():
        await asyncio.sleep(0.05)
        activity.heartbeat()
    return "released"


@workflow.defn
class OneAttemptWorkflow:
    @workflow.run
    async def run(self, marker_dir: str) -> str:
        return await workflow.execute_activity(
            record_and_wait,
            marker_dir,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


async def test_an_activity_with_one_attempt_runs_at_most_once_across_kill_9(
    external_address, sundial_factory, tmp_path, new_id
):
    """Polled (not eager) activity dispatch: the start is recorded before the worker gets the
    task, so after a crash the same attempt is not handed out again."""
    _needs_own_server(external_address)
    server = sundial_factory(tmp_path / "once.db")
    await server.start()
    client = await Client.connect(server.address)
    tq = new_id("once-tq")
    markers = tmp_path / "markers"
    markers.mkdir()
    async with Worker(
        client,
        task_queue=tq,
        workflows=[OneAttemptWorkflow],
        activities=[record_and_wait],
        disable_eager_activity_execution=True,
    ):
        handle = await client.start_workflow(
            OneAttemptWorkflow.run, str(markers), id=new_id("once"), task_queue=tq
        )
        deadline = time.monotonic() + 15
        while not list(markers.iterdir()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert list(markers.iterdir()), "the activity never started"
        server.kill()
        await server.start()
        # A second worker polls the restarted server; the first one still runs the attempt.
        client2 = await Client.connect(server.address)
        async with Worker(
            client2,
            task_queue=tq,
            workflows=[OneAttemptWorkflow],
            activities=[record_and_wait],
            disable_eager_activity_execution=True,
        ):
            await asyncio.sleep(3)
            runs = [p.name for p in markers.iterdir() if p.name != "release"]
            assert len(runs) == 1, f"attempt handed out twice: {runs}"
            (markers / "release").write_text("go")
            assert await asyncio.wait_for(client2.get_workflow_handle(handle.id).result(), 30) == "released"
    runs = [p.name for p in markers.iterdir() if p.name != "release"]
    assert len(runs) == 1, runs


def _poll(tq: str, identity: str) -> PollWorkflowTaskQueueRequest:
    return PollWorkflowTaskQueueRequest(
        namespace="default", task_queue=TaskQueue(name=tq), identity=identity
    )


async def _raw_history(client: Client, workflow_id: str):
    reply = await client.workflow_service.get_workflow_execution_history(
        GetWorkflowExecutionHistoryRequest(
            namespace="default", execution=WorkflowExecution(workflow_id=workflow_id)
        )
    )
    return list(reply.history.events)


async def test_a_workflow_task_started_before_a_crash_keeps_its_event_ids_and_its_worker(
    external_address, sundial_factory, tmp_path, new_id
):
    """The poll reply shows the worker a WorkflowTaskStarted event: after kill -9 that event is
    the one on disk (no later event takes its id), and the worker's token still completes the
    task, as on the reference server, which records the start before replying."""
    _needs_own_server(external_address)
    server = sundial_factory(tmp_path / "token.db")
    await server.start()
    client = await Client.connect(server.address)
    tq = new_id("token-tq")
    handle = await client.start_workflow("NobodyRunsThis", id=new_id("token"), task_queue=tq)
    poll = await client.workflow_service.poll_workflow_task_queue(_poll(tq, "before-crash"))
    assert poll.task_token
    shown = {e.event_id: (e.event_type, e.workflow_task_started_event_attributes.identity)
             for e in poll.history.events}
    assert shown[poll.started_event_id] == (EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, "before-crash")
    server.kill()
    await server.start()
    client = await Client.connect(server.address)
    # A signal after the restart (buffered while the task is out) takes a new id.
    await handle.signal("poke")
    # The worker that held the task before the crash completes it.
    await client.workflow_service.respond_workflow_task_completed(
        RespondWorkflowTaskCompletedRequest(
            namespace="default", task_token=poll.task_token, identity="before-crash"
        )
    )
    events = await _raw_history(client, handle.id)
    for event in events:
        if event.event_id in shown:
            assert (event.event_type, event.workflow_task_started_event_attributes.identity) == (
                shown[event.event_id]
            ), f"event {event.event_id} changed after the crash"
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    types = [e.event_type for e in events]
    assert types[len(shown):len(shown) + 2] == [
        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    ]
    # The signal that arrived meanwhile gets a new workflow task.
    again = await client.workflow_service.poll_workflow_task_queue(_poll(tq, "after-crash"))
    assert again.task_token and again.task_token != poll.task_token


async def test_a_speculative_workflow_task_token_from_before_a_crash_is_refused(
    external_address, sundial_factory, tmp_path, new_id
):
    """A workflow task that only carries an update is not recorded (nor on the reference
    server): a crash forgets it, and the token handed out before is refused with NotFound."""
    _needs_own_server(external_address)
    server = sundial_factory(tmp_path / "speculative.db")
    await server.start()
    client = await Client.connect(server.address)
    tq = new_id("spec-tq")
    handle = await client.start_workflow("NobodyRunsThis", id=new_id("spec"), task_queue=tq)
    first = await client.workflow_service.poll_workflow_task_queue(_poll(tq, "worker"))
    await client.workflow_service.respond_workflow_task_completed(
        RespondWorkflowTaskCompletedRequest(
            namespace="default", task_token=first.task_token, identity="worker"
        )
    )
    update = asyncio.create_task(
        client.workflow_service.update_workflow_execution(
            UpdateWorkflowExecutionRequest(
                namespace="default",
                workflow_execution=WorkflowExecution(workflow_id=handle.id),
                wait_policy=WaitPolicy(
                    lifecycle_stage=UpdateWorkflowExecutionLifecycleStage.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_ACCEPTED
                ),
                request=UpdateRequest(
                    meta=UpdateMeta(update_id="u1", identity="caller"),
                    input=UpdateInput(name="change"),
                ),
            )
        )
    )
    speculative = await client.workflow_service.poll_workflow_task_queue(_poll(tq, "worker"))
    assert [m.protocol_instance_id for m in speculative.messages] == ["u1"]
    server.kill()
    with pytest.raises(Exception):
        await update
    await server.start()
    client = await Client.connect(server.address)
    with pytest.raises(RPCError) as refused:
        await client.workflow_service.respond_workflow_task_completed(
            RespondWorkflowTaskCompletedRequest(
                namespace="default", task_token=speculative.task_token, identity="worker"
            )
        )
    assert refused.value.status == RPCStatusCode.NOT_FOUND
    # What was on disk is intact: started, first task scheduled/started/completed.
    types = [e.event_type for e in await _raw_history(client, handle.id)]
    assert types == [
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    ]


@pytest.mark.sqlite_only
async def test_a_second_server_on_the_same_database_refuses_to_start(
    external_address, sundial_factory, tmp_path
):
    _needs_own_server(external_address)
    db = tmp_path / "shared.db"
    first = sundial_factory(db)
    await first.start()
    second = subprocess.run(
        [*first.command()[:1], "server", "start-dev", "--db-filename", str(db), "--port", "0", "--headless"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert second.returncode != 0
    assert "in use by another process" in second.stderr + second.stdout
    # The first one is unaffected.
    client = await Client.connect(first.address)
    assert await client.service_client.check_health()


@workflow.defn
class ChainWorkflow:
    @workflow.run
    async def run(self, left: int) -> str:
        if left > 0:
            workflow.continue_as_new(left - 1)
        return "chain done"


async def test_starts_racing_continue_as_new_never_make_two_running_runs(client: Client, new_id):
    tq = new_id("race-tq")
    wf_id = new_id("race")
    async with Worker(client, task_queue=tq, workflows=[ChainWorkflow]):
        await client.start_workflow(ChainWorkflow.run, 40, id=wf_id, task_queue=tq)

        async def start_again() -> str:
            try:
                h = await client.start_workflow(ChainWorkflow.run, 0, id=wf_id, task_queue=tq)
                return h.result_run_id or "started"
            except Exception as e:  # AlreadyStarted while one runs
                return type(e).__name__

        outcomes = await asyncio.gather(*(start_again() for _ in range(60)))
        assert all(o for o in outcomes)
        # At every moment at most one run is running: count them now and after the chain ends.
        for _ in range(20):
            running = await client.count_workflows(
                f"WorkflowId = '{wf_id}' AND ExecutionStatus = 'Running'"
            )
            assert running.count <= 1
            await asyncio.sleep(0.05)


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode == 0


@pytest.mark.sqlite_only
async def test_a_full_disk_makes_health_not_serving_and_writes_unavailable_until_space_returns(
    external_address, sundial_factory, tmp_path, new_id
):
    _needs_own_server(external_address)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "small-disk"
    if not _mount_tmpfs(disk, "4m"):
        pytest.skip("this sandbox cannot mount a tmpfs")
    try:
        server = sundial_factory(disk / "full.db", log_path=tmp_path / "full.log")
        await server.start()
        client = await Client.connect(server.address)
        assert await client.service_client.check_health()
        filler = disk / "filler"
        # Fill the disk (the write stops with ENOSPC). Unbuffered: a buffered file would try
        # to write what it holds again when closed, and fail there.
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
        failures = 0
        for i in range(40):
            try:
                await client.start_workflow(
                    "Whatever", "x" * 20000, id=new_id(f"full{i}"), task_queue="full-tq"
                )
            except RPCError as e:
                assert e.status == RPCStatusCode.UNAVAILABLE, e
                failures += 1
                break
        assert failures == 1, "a full disk must fail writes"
        assert not await client.service_client.check_health()
        filler.unlink()
        handle = await client.start_workflow("Whatever", id=new_id("after"), task_queue="full-tq")
        assert await client.service_client.check_health()
        assert (await handle.describe()).status is not None
        server.kill()
    finally:
        subprocess.run(["umount", "-l", str(disk)])
