"""UpdateWorkflowExecutionOptions (`temporal workflow update-options`): the versioning
override as the reference server keeps it. Set through the CLI (pinned to a deployment
version a versioned worker polls the workflow's queue with, auto-upgrade, unset), shown by
DescribeWorkflowExecution (`versioning_info.versioning_override`, with the deprecated fields
filled in), written as WorkflowExecutionOptionsUpdated; bad requests and closed workflows are
refused with the reference server's errors; the batch form (`--query`) applies it to every
workflow the query finds.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from temporalio import workflow
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.deployment.v1 import WorkerDeploymentVersion as VersionProto
from temporalio.api.enums.v1 import EventType, VersioningBehavior as VersioningBehaviorProto
from temporalio.api.workflow.v1 import VersioningOverride, WorkflowExecutionOptions
from temporalio.api.workflowservice.v1 import UpdateWorkflowExecutionOptionsRequest
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkerDeploymentConfig

from test_cli import find_temporal_cli

DEPLOYMENT = "orders"
BUILD = "build-7"


@workflow.defn(sandboxed=False, versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class OptionsTarget:
    def __init__(self) -> None:
        self.done = False

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.done)
        return "done"


def cli(server_address: str, *args: str) -> subprocess.CompletedProcess:
    path = find_temporal_cli()
    if path is None:
        pytest.skip("no `temporal` CLI found")
    return subprocess.run(
        [path, *args, "--address", server_address, "--namespace", "default"],
        capture_output=True, text=True, timeout=60,
    )


def versioned_worker(client: Client, task_queue: str) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[OptionsTarget],
        workflow_runner=UnsandboxedWorkflowRunner(),
        deployment_config=WorkerDeploymentConfig(
            version=WorkerDeploymentVersion(DEPLOYMENT, BUILD), use_worker_versioning=True
        ),
    )


def override_of(server_address: str, wid: str) -> dict | None:
    out = cli(server_address, "workflow", "describe", "-w", wid, "--output", "json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)["workflowExecutionInfo"]
    return (info.get("versioningInfo") or {}).get("versioningOverride")


def options_events(server_address: str, wid: str) -> list[dict]:
    out = cli(server_address, "workflow", "show", "-w", wid, "--output", "json")
    assert out.returncode == 0, out.stderr
    return [e for e in json.loads(out.stdout)["events"] if e["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED"]


async def update_options(client: Client, wid: str, options: WorkflowExecutionOptions | None, paths: list[str] | None,
                         run_id: str = ""):
    req = UpdateWorkflowExecutionOptionsRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=wid, run_id=run_id),
        identity="options-test",
    )
    if options is not None:
        req.workflow_execution_options.CopyFrom(options)
    if paths is not None:
        req.update_mask.CopyFrom(FieldMask(paths=paths))
    return await client.workflow_service.update_workflow_execution_options(req)


async def refused(call) -> RPCError:
    with pytest.raises(RPCError) as err:
        await call
    return err.value


def pinned_flags(deployment: str = DEPLOYMENT, build: str = BUILD) -> list[str]:
    return [
        "--versioning-override-behavior", "pinned",
        "--versioning-override-deployment-name", deployment,
        "--versioning-override-build-id", build,
    ]


async def test_the_cli_pins_a_workflow_describe_shows_it_and_unspecified_removes_it(
    client: Client, server_address, task_queue
):
    wid = f"options-{uuid.uuid4()}"
    handle = await client.start_workflow(OptionsTarget.run, id=wid, task_queue=task_queue)

    # No worker of that version polled the queue: refused, as the reference server does.
    out = cli(server_address, "workflow", "update-options", "-w", wid, *pinned_flags())
    assert out.returncode != 0
    assert f"Pinned version '{DEPLOYMENT}:{BUILD}' is not present in task queue '{task_queue}' of type 'Workflow'" in out.stderr

    async with versioned_worker(client, task_queue):
        await asyncio.sleep(1.0)  # the worker's first polls reach the server
        out = cli(server_address, "workflow", "update-options", "-w", wid, *pinned_flags())
        assert out.returncode == 0, out.stderr
        assert override_of(server_address, wid) == {
            "pinned": {
                "behavior": "PINNED_OVERRIDE_BEHAVIOR_PINNED",
                "version": {"buildId": BUILD, "deploymentName": DEPLOYMENT},
            },
            "behavior": "VERSIONING_BEHAVIOR_PINNED",
            "pinnedVersion": f"{DEPLOYMENT}.{BUILD}",
        }
        events = options_events(server_address, wid)
        assert len(events) == 1
        assert events[0]["workerMayIgnore"] is True
        assert events[0]["workflowExecutionOptionsUpdatedEventAttributes"]["versioningOverride"] == {
            "pinned": {
                "behavior": "PINNED_OVERRIDE_BEHAVIOR_PINNED",
                "version": {"buildId": BUILD, "deploymentName": DEPLOYMENT},
            }
        }

        # The CLI sends the deprecated fields beside the current ones, so the same override
        # again differs from the kept one and is written again (as the reference does).
        assert cli(server_address, "workflow", "update-options", "-w", wid, *pinned_flags()).returncode == 0
        assert len(options_events(server_address, wid)) == 2
        # Pinned without a version keeps the version the workflow is pinned to; the result is
        # the kept override, so nothing is written.
        reply = await update_options(
            client, wid,
            WorkflowExecutionOptions(versioning_override=VersioningOverride(
                pinned=VersioningOverride.PinnedOverride(behavior=VersioningOverride.PINNED_OVERRIDE_BEHAVIOR_PINNED)
            )),
            ["versioning_override"],
        )
        assert reply.workflow_execution_options.versioning_override.pinned.version.build_id == BUILD
        assert len(options_events(server_address, wid)) == 2

        out = cli(server_address, "workflow", "update-options", "-w", wid,
                  "--versioning-override-behavior", "auto_upgrade")
        assert out.returncode == 0, out.stderr
        assert override_of(server_address, wid) == {"autoUpgrade": True, "behavior": "VERSIONING_BEHAVIOR_AUTO_UPGRADE"}

        out = cli(server_address, "workflow", "update-options", "-w", wid,
                  "--versioning-override-behavior", "unspecified")
        assert out.returncode == 0, out.stderr
        assert override_of(server_address, wid) is None
        events = options_events(server_address, wid)
        assert [e["workflowExecutionOptionsUpdatedEventAttributes"].get("unsetVersioningOverride") for e in events] == [
            None, None, None, True
        ]
        assert events[2]["workflowExecutionOptionsUpdatedEventAttributes"]["versioningOverride"] == {"autoUpgrade": True}
        await handle.signal(OptionsTarget.finish)
        assert await handle.result() == "done"


async def test_the_deprecated_form_is_kept_in_the_current_one(client: Client, server_address, task_queue):
    wid = f"options-old-{uuid.uuid4()}"
    await client.start_workflow(OptionsTarget.run, id=wid, task_queue=task_queue)
    old = VersioningOverride(behavior=VersioningBehaviorProto.VERSIONING_BEHAVIOR_AUTO_UPGRADE)
    reply = await update_options(client, wid, WorkflowExecutionOptions(versioning_override=old), ["versioning_override"])
    # The reply is the request's form; history and describe have the current one.
    assert reply.workflow_execution_options.versioning_override == old
    assert options_events(server_address, wid)[0]["workflowExecutionOptionsUpdatedEventAttributes"][
        "versioningOverride"] == {"autoUpgrade": True}
    assert override_of(server_address, wid) == {"autoUpgrade": True, "behavior": "VERSIONING_BEHAVIOR_AUTO_UPGRADE"}
    await client.get_workflow_handle(wid).terminate("done")


async def test_bad_requests_are_refused_with_the_reference_messages(client: Client, server_address, task_queue):
    wid = f"options-bad-{uuid.uuid4()}"
    await client.start_workflow(OptionsTarget.run, id=wid, task_queue=task_queue)
    auto = WorkflowExecutionOptions(versioning_override=VersioningOverride(auto_upgrade=True))
    cases = [
        (auto, None, RPCStatusCode.INVALID_ARGUMENT, "UpdateMask is required"),
        (None, ["versioning_override"], RPCStatusCode.INVALID_ARGUMENT, "WorkflowExecutionOptions is required"),
        (auto, ["versioningOverride"], RPCStatusCode.INVALID_ARGUMENT, 'invalid path "versioningOverride"'),
        (auto, ["versioning_override.auto_upgrade"], RPCStatusCode.INVALID_ARGUMENT,
         "versioning_override doesn't support partial updates"),
        (WorkflowExecutionOptions(versioning_override=VersioningOverride()), ["versioning_override"],
         RPCStatusCode.INVALID_ARGUMENT, "override behavior is required"),
        (WorkflowExecutionOptions(versioning_override=VersioningOverride(auto_upgrade=False)), ["versioning_override"],
         RPCStatusCode.INVALID_ARGUMENT, "auto-upgrade override must be true"),
        (WorkflowExecutionOptions(versioning_override=VersioningOverride(
            pinned=VersioningOverride.PinnedOverride(version=VersionProto(deployment_name="d", build_id="b")))),
         ["versioning_override"], RPCStatusCode.INVALID_ARGUMENT,
         "must specify pinned override behavior if override is pinned."),
        (WorkflowExecutionOptions(versioning_override=VersioningOverride(
            pinned=VersioningOverride.PinnedOverride(behavior=VersioningOverride.PINNED_OVERRIDE_BEHAVIOR_PINNED))),
         ["versioning_override"], RPCStatusCode.FAILED_PRECONDITION,
         f"must specify a specific pinned override version because workflow with id {wid} has behavior Unspecified"
         " and is not yet pinned to any version"),
        (WorkflowExecutionOptions(versioning_override=VersioningOverride(
            behavior=VersioningBehaviorProto.VERSIONING_BEHAVIOR_PINNED, pinned_version="nodot")),
         ["versioning_override"], RPCStatusCode.INVALID_ARGUMENT, 'invalid version string "nodot"'),
    ]
    for options, paths, status, message in cases:
        err = await refused(update_options(client, wid, options, paths))
        assert err.status == status, (message, err)
        assert message in err.message, (message, err.message)
    err = await refused(update_options(client, wid, auto, ["versioning_override"], run_id="not-a-uuid"))
    assert err.status == RPCStatusCode.INVALID_ARGUMENT and "RunId is not valid UUID." in err.message
    err = await refused(update_options(client, f"missing-{uuid.uuid4()}", auto, ["versioning_override"]))
    assert err.status == RPCStatusCode.NOT_FOUND
    # The CLI checks its own flags before calling.
    out = cli(server_address, "workflow", "update-options", "-w", wid, "--versioning-override-behavior", "pinned")
    assert out.returncode != 0 and "missing deployment name and/or build id" in out.stderr
    # Nothing of it reached history.
    assert options_events(server_address, wid) == []
    await client.get_workflow_handle(wid).terminate("done")


async def test_a_closed_workflow_is_refused(client: Client, server_address, task_queue):
    wid = f"options-closed-{uuid.uuid4()}"
    handle = await client.start_workflow(OptionsTarget.run, id=wid, task_queue=task_queue)
    await handle.terminate("closed")
    auto = WorkflowExecutionOptions(versioning_override=VersioningOverride(auto_upgrade=True))
    err = await refused(update_options(client, wid, auto, ["versioning_override"]))
    assert err.status == RPCStatusCode.NOT_FOUND
    assert err.message == "workflow execution already completed"
    out = cli(server_address, "workflow", "update-options", "-w", wid,
              "--versioning-override-behavior", "auto_upgrade")
    assert out.returncode != 0 and "workflow execution already completed" in out.stderr


async def test_a_reset_run_keeps_the_override_of_its_prefix(client: Client, server_address, task_queue):
    from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest

    wid = f"options-reset-{uuid.uuid4()}"
    await client.start_workflow(OptionsTarget.run, id=wid, task_queue=task_queue)
    auto = WorkflowExecutionOptions(versioning_override=VersioningOverride(auto_upgrade=True))
    await update_options(client, wid, auto, ["versioning_override"])
    # Events: started, task scheduled, options updated; cut after the task's Scheduled event.
    resp = await client.workflow_service.reset_workflow_execution(ResetWorkflowExecutionRequest(
        namespace=client.namespace, workflow_execution=WorkflowExecution(workflow_id=wid), reason="r",
        workflow_task_finish_event_id=3, request_id=str(uuid.uuid4()),
    ))
    history = (await client.get_workflow_handle(wid, run_id=resp.run_id).fetch_history()).events
    assert [e.event_type for e in history][:2] == [
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
    ]
    assert override_of(server_address, wid) is None  # the override came after the cut
    await client.get_workflow_handle(wid).terminate("done")


async def test_the_batch_form_updates_every_workflow_the_query_finds(client: Client, server_address, task_queue):
    prefix = f"options-batch-{uuid.uuid4().hex[:8]}"
    wids = [f"{prefix}-{i}" for i in range(3)]
    for wid in wids:
        await client.start_workflow(OptionsTarget.run, id=wid, task_queue=task_queue)
    query = " OR ".join(f'WorkflowId = "{w}"' for w in wids)

    async def visible() -> int:
        return (await client.count_workflows(query)).count

    for _ in range(100):
        if await visible() == 3:
            break
        await asyncio.sleep(0.1)
    out = cli(server_address, "workflow", "update-options", "--query", query, "--yes", "--reason", "batch",
              "--versioning-override-behavior", "auto_upgrade")
    assert out.returncode == 0, out.stderr
    for _ in range(100):
        if all(override_of(server_address, w) for w in wids):
            break
        await asyncio.sleep(0.2)
    for wid in wids:
        assert override_of(server_address, wid) == {"autoUpgrade": True, "behavior": "VERSIONING_BEHAVIOR_AUTO_UPGRADE"}
        await client.get_workflow_handle(wid).terminate("done")
