"""Authorization table: two client certificates (CN client-a, CN client-b), two namespaces
(ns-a, ns-b). client-a may use and administer ns-a; client-b may use ns-b but not administer
it; ops administers everything; stranger (a valid certificate) has no grant. Each row of the
table is one RPC kind; every refused call must answer PermissionDenied and change nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio import workflow
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.namespace.v1 import UpdateNamespaceInfo
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.batch.v1 import BatchOperationTermination
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import (
    DescribeBatchOperationRequest,
    DescribeNamespaceRequest,
    PauseActivityRequest,
    ResetActivityRequest,
    UnpauseActivityRequest,
    UpdateActivityOptionsRequest,
    ListBatchOperationsRequest,
    ResetWorkflowExecutionRequest,
    StartBatchOperationRequest,
    StopBatchOperationRequest,
    GetSystemInfoRequest,
    ListWorkflowExecutionsRequest,
    PollActivityTaskQueueRequest,
    RegisterNamespaceRequest,
    UpdateNamespaceRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

with workflow.unsafe.imports_passed_through():
    from conftest import free_port
    from tlskit import ConfiguredSundial, Pki, tls_config, write_config


@workflow.defn(name="Waiter")
class Waiter:
    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


class World:
    def __init__(self, tmp) -> None:
        self.pki = Pki(tmp / "pki", "authz")
        server = self.pki.issue("sundial-server", server=True, file_stem="server")
        self.certs = {
            name: self.pki.issue(name, server=False) for name in ["client-a", "client-b", "ops", "stranger"]
        }
        port = free_port()
        db = tmp / "sundial.db"
        config = write_config(
            tmp / "sundial.toml",
            port=port,
            db=db,
            tls={"cert": server.cert, "key": server.key, "client_ca": self.pki.ca_path},
            grants=[
                {"identity": "client-a", "namespaces": ["ns-a"], "admin": True},
                {"identity": "client-b", "namespaces": ["ns-b"], "admin": False},
                {"identity": "ops", "namespaces": ["*"], "admin": True},
            ],
            namespaces=[{"name": "ns-a"}, {"name": "ns-b"}],
        )
        self.server = ConfiguredSundial(
            config, port=port, db=db, ready_tls=tls_config(self.pki.ca_path, self.certs["ops"])
        )

    async def client(self, who: str, namespace: str) -> Client:
        return await Client.connect(
            self.server.address, namespace=namespace, tls=tls_config(self.pki.ca_path, self.certs[who])
        )


@pytest.fixture(scope="module")
async def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("authz"))
    await w.server.start()
    try:
        yield w
    finally:
        w.server.kill()


async def refused_at_connect(world, who: str, namespace: str) -> bool:
    """An identity without any grant cannot even connect: Client.connect calls GetSystemInfo,
    which needs a grant."""
    try:
        await world.client(who, namespace)
    except RuntimeError as err:
        assert "PermissionDenied" in str(err), err
        return True
    return False


async def denied(call) -> bool:
    try:
        await call
    except RPCError as err:
        assert err.status == RPCStatusCode.PERMISSION_DENIED, f"expected PermissionDenied, got {err.status}: {err}"
        return True
    return False


# (who, namespace, allowed) for the namespaced rows.
MEMBERSHIP = [
    ("client-a", "ns-a", True),
    ("client-a", "ns-b", False),
    ("client-b", "ns-b", True),
    ("client-b", "ns-a", False),
    ("ops", "ns-a", True),
    ("stranger", "ns-a", False),
]


@pytest.mark.parametrize("who,namespace,allowed", MEMBERSHIP)
async def test_start_workflow(world, who, namespace, allowed):
    if who == "stranger":
        assert await refused_at_connect(world, who, namespace)
        return
    client = await world.client(who, namespace)
    wf_id = f"authz-{uuid.uuid4()}"
    start = client.start_workflow("Waiter", id=wf_id, task_queue="authz-none")
    if allowed:
        handle = await start
        await handle.terminate()
    else:
        assert await denied(start)
        # Nothing was started.
        ops = await world.client("ops", namespace)
        with pytest.raises(RPCError) as err:
            await ops.get_workflow_handle(wf_id).describe()
        assert err.value.status == RPCStatusCode.NOT_FOUND


@pytest.mark.parametrize("who,namespace,allowed", MEMBERSHIP)
async def test_describe_namespace_list_and_poll(world, who, namespace, allowed):
    if who == "stranger":
        assert await refused_at_connect(world, who, namespace)
        return
    client = await world.client(who, namespace)
    svc = client.workflow_service
    calls = [
        svc.describe_namespace(DescribeNamespaceRequest(namespace=namespace)),
        svc.list_workflow_executions(ListWorkflowExecutionsRequest(namespace=namespace)),
        svc.poll_activity_task_queue(
            PollActivityTaskQueueRequest(namespace=namespace, task_queue=TaskQueue(name="authz-empty")),
            timeout=timedelta(seconds=2),
        ),
        client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace)),
    ]
    for call in calls:
        assert await denied(call) == (not allowed)


async def test_signal_and_terminate_in_a_foreign_namespace_change_nothing(world):
    owner = await world.client("client-b", "ns-b")
    handle = await owner.start_workflow("Waiter", id=f"authz-{uuid.uuid4()}", task_queue="authz-none")
    intruder = await world.client("client-a", "ns-b")
    foreign = intruder.get_workflow_handle(handle.id)
    assert await denied(foreign.signal("poke", "x"))
    assert await denied(foreign.terminate())
    assert await denied(foreign.cancel())
    assert await denied(foreign.describe())
    desc = await handle.describe()
    assert desc.status.name == "RUNNING"
    history = await handle.fetch_history()
    assert [e.event_type for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")] == []
    await handle.terminate()


async def test_activity_operations_in_a_foreign_namespace_are_denied(world):
    owner = await world.client("client-b", "ns-b")
    handle = await owner.start_workflow("Waiter", id=f"authz-{uuid.uuid4()}", task_queue="authz-none")
    execution = WorkflowExecution(workflow_id=handle.id)
    intruder = (await world.client("client-a", "ns-b")).workflow_service
    assert await denied(intruder.pause_activity(PauseActivityRequest(namespace="ns-b", execution=execution, id="a")))
    assert await denied(
        intruder.unpause_activity(UnpauseActivityRequest(namespace="ns-b", execution=execution, id="a"))
    )
    assert await denied(intruder.reset_activity(ResetActivityRequest(namespace="ns-b", execution=execution, id="a")))
    assert await denied(
        intruder.update_activity_options(
            UpdateActivityOptionsRequest(namespace="ns-b", execution=execution, id="a", activity_options={})
        )
    )
    # The owner gets past authorization (and is told there is no such activity).
    with pytest.raises(RPCError) as err:
        await owner.workflow_service.pause_activity(PauseActivityRequest(namespace="ns-b", execution=execution, id="a"))
    assert err.value.status == RPCStatusCode.NOT_FOUND
    await handle.terminate()


async def test_cluster_reads_need_any_grant(world):
    for who, allowed in [("client-a", True), ("client-b", True), ("stranger", False)]:
        client_ns = "ns-a" if who != "client-b" else "ns-b"
        if allowed:
            client = await world.client(who, client_ns)
            info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
            assert info.server_version
        else:
            assert await refused_at_connect(world, who, client_ns)


@pytest.mark.parametrize(
    "who,allowed", [("client-a", False), ("client-b", False), ("stranger", False), ("ops", True)]
)
async def test_register_namespace_needs_admin_on_it(world, who, allowed):
    if who == "stranger":
        # Cannot even connect (GetSystemInfo is refused); covered above.
        return
    client = await world.client(who, "ns-a" if who != "client-b" else "ns-b")
    name = f"ns-new-{uuid.uuid4().hex[:8]}"
    call = client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace=name, workflow_execution_retention_period=Duration(seconds=86400))
    )
    assert await denied(call) == (not allowed)
    ops = await world.client("ops", "ns-a")
    exists = True
    try:
        await ops.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=name))
    except RPCError as err:
        assert err.status == RPCStatusCode.NOT_FOUND
        exists = False
    assert exists == allowed


@pytest.mark.parametrize("who,namespace,allowed", [
    ("client-a", "ns-a", True),   # admin of ns-a
    ("client-a", "ns-b", False),  # not its namespace
    ("client-b", "ns-b", False),  # member, not admin
])
async def test_update_namespace_and_search_attributes_need_admin(world, who, namespace, allowed):
    client = await world.client(who, namespace)
    ops = await world.client("ops", namespace)
    description = f"updated by {who} {uuid.uuid4().hex[:6]}"
    update = client.workflow_service.update_namespace(
        UpdateNamespaceRequest(namespace=namespace, update_info=UpdateNamespaceInfo(description=description))
    )
    assert await denied(update) == (not allowed)
    after = await ops.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
    assert (after.namespace_info.description == description) == allowed

    attribute = f"AuthzAttr{uuid.uuid4().hex[:8]}"
    add = client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=namespace,
            search_attributes={attribute: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD},
        )
    )
    assert await denied(add) == (not allowed)
    listed = await ops.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    assert (attribute in listed.custom_attributes) == allowed


async def test_reset_and_batch_operations_in_a_foreign_namespace_change_nothing(world):
    owner = await world.client("client-b", "ns-b")
    handle = await owner.start_workflow("Waiter", id=f"authz-{uuid.uuid4()}", task_queue="authz-none")
    intruder = (await world.client("client-a", "ns-b")).workflow_service
    job_id = str(uuid.uuid4())
    calls = [
        intruder.reset_workflow_execution(ResetWorkflowExecutionRequest(
            namespace="ns-b", workflow_execution=WorkflowExecution(workflow_id=handle.id),
            reason="intrude", workflow_task_finish_event_id=3, request_id=str(uuid.uuid4()))),
        intruder.start_batch_operation(StartBatchOperationRequest(
            namespace="ns-b", job_id=job_id, reason="intrude", visibility_query="TaskQueue='authz-none'",
            termination_operation=BatchOperationTermination())),
        intruder.describe_batch_operation(DescribeBatchOperationRequest(namespace="ns-b", job_id=job_id)),
        intruder.list_batch_operations(ListBatchOperationsRequest(namespace="ns-b")),
        intruder.stop_batch_operation(StopBatchOperationRequest(namespace="ns-b", job_id=job_id, reason="x")),
    ]
    for call in calls:
        assert await denied(call)
    desc = await handle.describe()
    assert desc.status.name == "RUNNING"
    listed = await owner.workflow_service.list_batch_operations(ListBatchOperationsRequest(namespace="ns-b"))
    assert job_id not in [j.job_id for j in listed.operation_info]
    await handle.terminate()
