"""Temporal's HTTP/JSON API (``--http-port``), driven with plain HTTP requests.

The expected bodies below were taken from the reference dev server (``temporal server
start-dev`` 1.9.1, server 1.32.0): the same test runs against it with
``SUNDIAL_ADDRESS=127.0.0.1:7234 SUNDIAL_HTTP_ADDRESS=127.0.0.1:7244`` (its gRPC and HTTP
ports). Values that differ from run to run (run ids, times, tokens) are checked for shape
only. Queries and updates are answered by a Python SDK worker on the gRPC port.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, List

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from conftest import SundialProcess, _MANAGED, free_port

NS = "/api/v1/namespaces/default"
RUNNING = "WORKFLOW_EXECUTION_STATUS_RUNNING"


@workflow.defn(sandboxed=False)
class HttpTarget:
    """Collects numbers from its input, signals and updates until told to finish."""

    def __init__(self) -> None:
        self.values: List[int] = []
        self.done = False

    @workflow.run
    async def run(self, first: int) -> List[int]:
        self.values.append(first)
        await workflow.wait_condition(lambda: self.done)
        return self.values

    @workflow.signal
    def add(self, value: int) -> None:
        self.values.append(value)

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query
    def values_so_far(self) -> List[int]:
        return self.values

    @workflow.update
    def add_and_get(self, value: int) -> List[int]:
        self.values.append(value)
        return self.values

    @add_and_get.validator
    def check(self, value: int) -> None:
        if value < 0:
            raise ValueError("negative values are refused")


@pytest.fixture(scope="module")
async def servers(tmp_path_factory):
    """(gRPC address, HTTP base URL) of a server with the HTTP API on."""
    external_http = os.environ.get("SUNDIAL_HTTP_ADDRESS")
    if external_http:
        yield os.environ["SUNDIAL_ADDRESS"], f"http://{external_http}"
        return
    workdir = tmp_path_factory.mktemp("sundial-http")
    http_port = free_port()
    server = SundialProcess(
        workdir / "sundial.db",
        log_path=workdir / "sundial.log",
        extra_args=["--http-port", str(http_port)],
    )
    _MANAGED.append(server)
    await server.start()
    try:
        yield server.address, f"http://127.0.0.1:{http_port}"
    finally:
        server.stop()
        _MANAGED.remove(server)


@pytest.fixture(scope="module")
async def http_client(servers) -> Client:
    return await Client.connect(servers[0], namespace="default")


@pytest.fixture(scope="module")
def base(servers) -> str:
    return servers[1]


@pytest.fixture(scope="module")
async def worker_queue(http_client):
    queue = f"tq-http-{uuid.uuid4()}"
    async with Worker(http_client, task_queue=queue, workflows=[HttpTarget]):
        yield queue


def _call(base: str, method: str, path: str, body: Any = None, raw: bytes | None = None):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


async def call(base: str, method: str, path: str, body: Any = None, raw: bytes | None = None):
    """(HTTP status, decoded JSON body); off the event loop so that the worker keeps running."""
    return await asyncio.to_thread(_call, base, method, path, body, raw)


def q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def start_body(task_queue: str, workflow_type: str = "HttpTarget", **extra) -> dict:
    return {
        "workflowType": {"name": workflow_type},
        "taskQueue": {"name": task_queue},
        "requestId": str(uuid.uuid4()),
        **extra,
    }


async def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_unknown_paths_and_methods(base):
    assert await call(base, "GET", "/api/v1/nope") == (404, {"code": 5, "message": "Not Found"})
    assert await call(base, "PUT", f"{NS}/workflows/x") == (
        501,
        {"code": 12, "message": "Method Not Allowed"},
    )
    assert await call(base, "DELETE", NS) == (501, {"code": 12, "message": "Method Not Allowed"})


async def test_namespaces(base):
    status, body = await call(base, "GET", NS)
    assert status == 200
    assert body["namespaceInfo"]["name"] == "default"
    assert body["namespaceInfo"]["state"] == "NAMESPACE_STATE_REGISTERED"
    assert body["config"]["workflowExecutionRetentionTtl"] == "86400s"
    # The bindings without the /api/v1 prefix are served as well.
    status, listed = await call(base, "GET", "/cluster/namespaces")
    assert status == 200
    assert "default" in [n["namespaceInfo"]["name"] for n in listed["namespaces"]]
    assert await call(base, "GET", "/api/v1/namespaces/no-such-ns") == (
        404,
        {
            "code": 5,
            "message": "Namespace no-such-ns is not found.",
            "details": [
                {
                    "@type": "type.googleapis.com/temporal.api.errordetails.v1.NamespaceNotFoundFailure",
                    "namespace": "no-such-ns",
                }
            ],
        },
    )
    status, info = await call(base, "GET", "/api/v1/system-info")
    assert status == 200 and info["capabilities"]["signalAndQueryHeader"] is True


async def test_bad_requests_answer_invalid_argument(base):
    status, body = await call(base, "POST", f"{NS}/workflows/bad", raw=b"{bad")
    assert status == 400 and body["code"] == 3 and body["message"]
    status, body = await call(
        base, "POST", f"{NS}/workflows/bad", {"bogus": 1, "workflowType": {"name": "x"}}
    )
    assert status == 400 and body["code"] == 3 and "bogus" in body["message"]
    status, body = await call(base, "GET", f"{NS}/workflows?pageSize=abc")
    assert status == 400 and body["code"] == 3


async def test_start_describe_history_terminate(base, new_id):
    wf, queue = new_id("http-wf"), new_id("tq-nobody")
    status, started = await call(
        base,
        "POST",
        f"{NS}/workflows/{q(wf)}",
        # proto field names are accepted beside the JSON names
        start_body(queue, input=["hello", {"a": 1}], memo={"fields": {"m": "x"}}, workflow_id="ignored"),
    )
    assert status == 200, started
    assert started["started"] is True and len(started["runId"]) == 36
    run_id = started["runId"]

    status, described = await call(base, "GET", f"{NS}/workflows/{q(wf)}")
    assert status == 200, described
    info = described["workflowExecutionInfo"]
    assert info["execution"] == {"workflowId": wf, "runId": run_id}
    assert info["type"] == {"name": "HttpTarget"}
    assert info["status"] == RUNNING
    assert info["historyLength"] == "2"
    assert info["memo"] == {"fields": {"m": "x"}}
    assert info["taskQueue"] == queue
    assert described["executionConfig"]["taskQueue"] == {
        "name": queue,
        "kind": "TASK_QUEUE_KIND_NORMAL",
    }
    assert described["executionConfig"]["defaultWorkflowTaskTimeout"] == "10s"
    assert described["pendingWorkflowTask"]["state"] == "PENDING_WORKFLOW_TASK_STATE_SCHEDULED"

    status, history = await call(base, "GET", f"{NS}/workflows/{q(wf)}/history")
    assert status == 200, history
    first, second = history["history"]["events"]
    assert first["eventId"] == "1"
    assert first["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED"
    attrs = first["workflowExecutionStartedEventAttributes"]
    assert attrs["workflowType"] == {"name": "HttpTarget"}
    assert attrs["taskQueue"] == {"name": queue, "kind": "TASK_QUEUE_KIND_NORMAL"}
    assert attrs["input"] == ["hello", {"a": 1}]
    assert attrs["memo"] == {"fields": {"m": "x"}}
    assert attrs["workflowTaskTimeout"] == "10s"
    assert attrs["attempt"] == 1
    assert attrs["originalExecutionRunId"] == run_id
    assert second["eventId"] == "2"
    assert second["eventType"] == "EVENT_TYPE_WORKFLOW_TASK_SCHEDULED"
    assert second["workflowTaskScheduledEventAttributes"] == {
        "taskQueue": {"name": queue, "kind": "TASK_QUEUE_KIND_NORMAL"},
        "startToCloseTimeout": "10s",
        "attempt": 1,
    }

    # The path's workflow id wins over the body's, as on the reference.
    assert await call(
        base,
        "POST",
        f"{NS}/workflows/{q(wf)}/terminate",
        {"reason": "enough", "details": ["why"], "workflowExecution": {"workflowId": "other"}},
    ) == (200, {})
    status, described = await call(base, "GET", f"{NS}/workflows/{q(wf)}?execution.runId={run_id}")
    assert described["workflowExecutionInfo"]["status"] == "WORKFLOW_EXECUTION_STATUS_TERMINATED"
    status, history = await call(base, "GET", f"{NS}/workflows/{q(wf)}/history")
    last = history["history"]["events"][-1]
    assert last["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED"
    assert last["workflowExecutionTerminatedEventAttributes"]["reason"] == "enough"
    assert last["workflowExecutionTerminatedEventAttributes"]["details"] == ["why"]
    assert await call(base, "POST", f"{NS}/workflows/{q(wf)}/terminate", {}) == (
        404,
        {
            "code": 5,
            "message": "workflow execution already completed",
            "details": [{"@type": "type.googleapis.com/temporal.api.errordetails.v1.NotFoundFailure"}],
        },
    )


async def test_not_found_names_the_workflow(base, new_id):
    wf = new_id("missing")
    status, body = await call(base, "GET", f"{NS}/workflows/{q(wf)}")
    assert (status, body) == (
        404,
        {
            "code": 5,
            "message": f"workflow not found for ID: {wf}",
            "details": [{"@type": "type.googleapis.com/temporal.api.errordetails.v1.NotFoundFailure"}],
        },
    )


async def test_payload_shorthand_and_canonical_payloads(base, new_id):
    wf = new_id("http-payloads")
    binary = {"metadata": {"encoding": b64("binary/plain")}, "data": "AAEC"}
    typed = {"metadata": {"encoding": b64("json/plain"), "type": b64("Keyword")}, "data": b64('"k"')}
    status, _ = await call(
        base,
        "POST",
        f"{NS}/workflows/{q(wf)}",
        start_body(
            new_id("tq-nobody"),
            input={"payloads": [binary, "str"]},
            memo={
                "fields": {
                    "typed": typed,
                    "proto": {"_protoMessageType": "foo.Bar", "z": 1, "a": "<&>"},
                    "sorted": {"metadata": {"encoding": b64("json/plain")}, "data": b64('{"z":1,"a":2}')},
                    "nothing": None,
                }
            },
        ),
    )
    assert status == 200
    _, history = await call(base, "GET", f"{NS}/workflows/{q(wf)}/history")
    attrs = history["history"]["events"][0]["workflowExecutionStartedEventAttributes"]
    # Not every payload has a shorthand: the list stays canonical, each payload in its best form.
    assert attrs["input"] == {"payloads": [binary, "str"]}
    fields = attrs["memo"]["fields"]
    assert fields["typed"] == typed
    assert fields["proto"] == {"_protoMessageType": "foo.Bar", "a": "<&>", "z": 1}
    assert fields["sorted"] == {"a": 2, "z": 1}
    await call(base, "POST", f"{NS}/workflows/{q(wf)}/terminate", {})


async def signal(base, wf: str, name: str, body: dict) -> bool:
    """Signals; the reply is empty but for an optional link to the signal's event (the
    reference gives one)."""
    status, reply = await call(base, "POST", f"{NS}/workflows/{q(wf)}/signal/{name}", body)
    assert status == 200, reply
    assert set(reply) <= {"link"}, reply
    if "link" in reply:
        assert reply["link"]["workflowEvent"]["workflowId"] == wf
    return True


async def test_signal_query_update(base, http_client, worker_queue, new_id):
    wf = new_id("http-sqs")
    status, started = await call(
        base, "POST", f"{NS}/workflows/{q(wf)}", start_body(worker_queue, input=[1])
    )
    assert status == 200, started

    def query_until(expected):
        async def queried():
            status, body = await call(
                base, "POST", f"{NS}/workflows/{q(wf)}/query/values_so_far", {"query": {}}
            )
            assert status == 200, body
            return body if body["queryResult"] == [expected] else None

        return wait_for(queried, what=f"the query to answer {expected}")

    # The first workflow task has run once the query sees the input.
    assert await query_until([1]) == {"queryResult": [[1]]}
    assert await signal(base, wf, "add", {"input": [2]})
    assert await query_until([1, 2]) == {"queryResult": [[1, 2]]}

    status, unknown = await call(
        base, "POST", f"{NS}/workflows/{q(wf)}/query/no_such_query", {"query": {}}
    )
    assert status == 400 and unknown["code"] == 3, unknown

    update = {
        "request": {"meta": {"updateId": "u-1"}, "input": {"args": [3]}},
        "waitPolicy": {"lifecycleStage": "UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_COMPLETED"},
    }
    status, updated = await call(base, "POST", f"{NS}/workflows/{q(wf)}/update/add_and_get", update)
    assert status == 200, updated
    assert updated["outcome"] == {"success": [[1, 2, 3]]}
    assert updated["stage"] == "UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_COMPLETED"
    assert updated["updateRef"]["updateId"] == "u-1"
    assert updated["updateRef"]["workflowExecution"]["workflowId"] == wf

    rejected = {
        "request": {"meta": {"updateId": "u-2"}, "input": {"args": [-1]}},
        "waitPolicy": {"lifecycleStage": "UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_COMPLETED"},
    }
    status, body = await call(base, "POST", f"{NS}/workflows/{q(wf)}/update/add_and_get", rejected)
    assert status == 200, body
    failure = body["outcome"]["failure"]
    assert failure["message"] == "negative values are refused"
    assert failure["applicationFailureInfo"]["type"] == "ValueError"

    assert await signal(base, wf, "finish", {})
    handle = http_client.get_workflow_handle(wf)
    assert await handle.result() == [1, 2, 3]
    _, described = await call(base, "GET", f"{NS}/workflows/{q(wf)}")
    assert described["workflowExecutionInfo"]["status"] == "WORKFLOW_EXECUTION_STATUS_COMPLETED"
    _, history = await call(base, "GET", f"{NS}/workflows/{q(wf)}/history")
    signals = [
        e["workflowExecutionSignaledEventAttributes"]
        for e in history["history"]["events"]
        if e["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED"
    ]
    assert [s["signalName"] for s in signals] == ["add", "finish"]
    assert signals[0]["input"] == [2]
    completed = history["history"]["events"][-1]
    assert completed["workflowExecutionCompletedEventAttributes"]["result"] == [[1, 2, 3]]


async def test_cancel_and_signal_with_start(base, new_id):
    wf, queue = new_id("http-sws"), new_id("tq-nobody")
    status, body = await call(
        base,
        "POST",
        f"{NS}/workflows/{q(wf)}/signal-with-start/go",
        {**start_body(queue), "signalInput": ["now"]},
    )
    assert status == 200 and body["started"] is True, body
    assert await call(base, "POST", f"{NS}/workflows/{q(wf)}/cancel", {"reason": "stop"}) == (200, {})
    _, history = await call(base, "GET", f"{NS}/workflows/{q(wf)}/history")
    types = [e["eventType"] for e in history["history"]["events"]]
    assert types[:2] == [
        "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
        "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED",
    ]
    assert "EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED" in types
    assert history["history"]["events"][1]["workflowExecutionSignaledEventAttributes"]["input"] == ["now"]
    await call(base, "POST", f"{NS}/workflows/{q(wf)}/terminate", {})


async def test_list_and_count_with_a_query(base, new_id):
    workflow_type = "HttpListed" + uuid.uuid4().hex[:8]
    queue = new_id("tq-nobody")
    ids = [new_id("http-list") for _ in range(3)]
    for wf in ids:
        status, _ = await call(base, "POST", f"{NS}/workflows/{q(wf)}", start_body(queue, workflow_type))
        assert status == 200
    await call(base, "POST", f"{NS}/workflows/{q(ids[0])}/terminate", {})
    query = q(f'WorkflowType="{workflow_type}"')

    async def listed():
        status, body = await call(base, "GET", f"{NS}/workflows?query={query}")
        assert status == 200, body
        return body if len(body.get("executions", [])) == 3 else None

    body = await wait_for(listed, what="three listed workflows")
    assert sorted(e["execution"]["workflowId"] for e in body["executions"]) == sorted(ids)
    assert all(e["type"] == {"name": workflow_type} for e in body["executions"])
    assert all(e["taskQueue"] == queue for e in body["executions"])

    # Paging: one at a time, then the rest with the token.
    status, page = await call(base, "GET", f"{NS}/workflows?query={query}&pageSize=1")
    assert status == 200 and len(page["executions"]) == 1 and page["nextPageToken"]
    status, rest = await call(
        base, "GET", f"{NS}/workflows?query={query}&page_size=5&nextPageToken={q(page['nextPageToken'])}"
    )
    assert status == 200 and len(rest["executions"]) == 2

    running = q(f'WorkflowType="{workflow_type}" AND ExecutionStatus="Running"')

    async def counted():
        _, body = await call(base, "GET", f"{NS}/workflow-count?query={running}")
        return body if body == {"count": "2"} else None

    assert await wait_for(counted, what="the count") == {"count": "2"}
    _, grouped = await call(
        base, "GET", f"{NS}/workflow-count?query={q(f'WorkflowType={chr(34)}{workflow_type}{chr(34)} GROUP BY ExecutionStatus')}"
    )
    assert grouped["count"] == "3"
    groups = {
        base64.b64decode(g["groupValues"][0]["data"]).decode(): g["count"] for g in grouped["groups"]
    }
    assert groups == {'"Running"': "2", '"Terminated"': "1"}
    assert grouped["groups"][0]["groupValues"][0]["metadata"] == {
        "encoding": b64("json/plain"),
        "type": b64("Keyword"),
    }
    for wf in ids[1:]:
        await call(base, "POST", f"{NS}/workflows/{q(wf)}/terminate", {})


async def test_schedules(base, new_id):
    sid = new_id("http-sched")
    schedule = {
        "spec": {"interval": [{"interval": "3600s"}]},
        "action": {
            "startWorkflow": {
                "workflowId": "sched-wf",
                "workflowType": {"name": "W"},
                "taskQueue": {"name": "t"},
                "input": [1],
            }
        },
        "state": {"paused": True, "notes": "n"},
    }
    status, created = await call(
        base, "POST", f"{NS}/schedules/{q(sid)}", {"schedule": schedule, "requestId": "r"}
    )
    assert status == 200 and created["conflictToken"], created
    status, described = await call(base, "GET", f"{NS}/schedules/{q(sid)}")
    assert status == 200, described
    assert described["schedule"] == {
        "spec": {"interval": [{"interval": "3600s"}]},
        "action": {
            "startWorkflow": {
                "workflowId": "sched-wf",
                "workflowType": {"name": "W"},
                "taskQueue": {"name": "t", "kind": "TASK_QUEUE_KIND_NORMAL"},
                "input": [1],
            }
        },
        "policies": {"overlapPolicy": "SCHEDULE_OVERLAP_POLICY_SKIP", "catchupWindow": "31536000s"},
        "state": {"notes": "n", "paused": True},
    }
    assert len(described["info"]["futureActionTimes"]) == 10
    assert described["conflictToken"]

    async def listed():
        _, body = await call(base, "GET", f"{NS}/schedules")
        return [s for s in body.get("schedules", []) if s["scheduleId"] == sid]

    (entry,) = await wait_for(listed, what="the schedule in the list")
    assert entry["info"]["spec"] == {"interval": [{"interval": "3600s"}]}
    assert entry["info"]["workflowType"] == {"name": "W"}
    assert entry["info"]["paused"] is True and entry["info"]["notes"] == "n"

    status, times = await call(
        base,
        "GET",
        f"{NS}/schedules/{q(sid)}/matching-times?startTime=2026-01-01T00:00:00Z&endTime=2026-01-01T03:00:00Z",
    )
    assert (status, times) == (
        200,
        {"startTime": ["2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z", "2026-01-01T03:00:00Z"]},
    )

    assert await call(base, "POST", f"{NS}/schedules/{q(sid)}/patch", {"patch": {"unpause": "go"}}) == (200, {})
    _, described = await call(base, "GET", f"{NS}/schedules/{q(sid)}")
    assert described["schedule"]["state"] == {"notes": "go"}
    assert await call(base, "DELETE", f"{NS}/schedules/{q(sid)}") == (200, {})
    assert await call(base, "GET", f"{NS}/schedules/{q(sid)}") == (
        404,
        {
            "code": 5,
            "message": "schedule not found",
            "details": [{"@type": "type.googleapis.com/temporal.api.errordetails.v1.NotFoundFailure"}],
        },
    )


async def test_search_attributes_and_task_queue(base, worker_queue):
    status, body = await call(base, "GET", "/api/v1/namespaces/default/search-attributes")
    assert status == 200, body
    assert body["systemAttributes"]["WorkflowType"] == "INDEXED_VALUE_TYPE_KEYWORD"
    assert body["systemAttributes"]["StartTime"] == "INDEXED_VALUE_TYPE_DATETIME"

    async def pollers():
        _, described = await call(base, "GET", f"{NS}/task-queues/{q(worker_queue)}")
        return described.get("pollers")

    found = await wait_for(pollers, what="the worker's pollers")
    assert all("identity" in p and "lastAccessTime" in p for p in found)


def _https_get(url: str, context) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, context=context, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


async def test_https_with_client_certificates_and_authorization(tmp_path):
    """With TLS, the HTTP API asks for the same client certificates as gRPC, and the
    authorization table applies to its calls exactly as to gRPC's."""
    import ssl

    from tlskit import ConfiguredSundial, Pki, tls_config, write_config

    if os.environ.get("SUNDIAL_HTTP_ADDRESS"):
        pytest.skip("needs a Sundial process of its own")
    pki = Pki(tmp_path / "pki", "http")
    server = pki.issue("sundial-server", server=True, file_stem="server")
    alice = pki.issue("alice", server=False)
    ops = pki.issue("ops", server=False)
    port, http_port = free_port(), free_port()
    config = write_config(
        tmp_path / "sundial.toml",
        port=port,
        db=tmp_path / "sundial.db",
        http_port=http_port,
        tls={"cert": server.cert, "key": server.key, "client_ca": pki.ca_path},
        grants=[
            {"identity": "alice", "namespaces": ["ns-a"]},
            {"identity": "ops", "namespaces": ["*"], "admin": True},
        ],
        namespaces=[{"name": "ns-a"}, {"name": "ns-b"}],
    )
    process = ConfiguredSundial(
        config, port=port, db=tmp_path / "sundial.db", ready_tls=tls_config(pki.ca_path, ops)
    )
    _MANAGED.append(process)
    await process.start()
    try:
        def context(client):
            ctx = ssl.create_default_context(cafile=str(pki.ca_path))
            if client is not None:
                ctx.load_cert_chain(str(client.cert), str(client.key))
            return ctx

        base = f"https://127.0.0.1:{http_port}/api/v1/namespaces"
        status, body = await asyncio.to_thread(_https_get, f"{base}/ns-a", context(alice))
        assert status == 200 and body["namespaceInfo"]["name"] == "ns-a"
        assert await asyncio.to_thread(_https_get, f"{base}/ns-b", context(alice)) == (
            403,
            {"code": 7, "message": "Request unauthorized."},
        )
        status, body = await asyncio.to_thread(_https_get, f"{base}/ns-b", context(ops))
        assert status == 200 and body["namespaceInfo"]["name"] == "ns-b"
        # Without a client certificate the handshake itself is refused.
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            await asyncio.to_thread(_https_get, f"{base}/ns-a", context(None))
    finally:
        process.kill()
        _MANAGED.remove(process)
