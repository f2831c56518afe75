"""The Nexus endpoint registry through the OperatorService (Create/Update/Delete/Get/List
NexusEndpoint): the reference server's answers, codes and messages, and (on Sundial) that the
registry is durable across restarts and upgrades.

Endpoints are cluster-wide: every test names its endpoints with a prefix of its own and looks
only at those, since the same server keeps the other tests' endpoints."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.nexus.v1 import Endpoint, EndpointSpec, EndpointTarget
from temporalio.api.operatorservice.v1 import (
    CreateNexusEndpointRequest,
    DeleteNexusEndpointRequest,
    GetNexusEndpointRequest,
    ListNexusEndpointsRequest,
    UpdateNexusEndpointRequest,
)
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

INVALID = RPCStatusCode.INVALID_ARGUMENT
NOT_FOUND = RPCStatusCode.NOT_FOUND
ALREADY_EXISTS = RPCStatusCode.ALREADY_EXISTS
FAILED_PRECONDITION = RPCStatusCode.FAILED_PRECONDITION

NAME_REGEX_ISSUE = 'endpoint name must match the regex: "^[a-zA-Z][a-zA-Z0-9\\\\-]*[a-zA-Z0-9]$"'
SCHEMA_2_FIXTURE = Path(__file__).resolve().parent / "data" / "sqlite-schema-2.db"


def prefix() -> str:
    """A name prefix of this test's own (names are letters, digits and hyphens)."""
    return "nx-" + uuid.uuid4().hex[:12]


def worker(namespace: str = "default", task_queue: str = "nexus-tq") -> EndpointTarget:
    return EndpointTarget(worker=EndpointTarget.Worker(namespace=namespace, task_queue=task_queue))


def external(url: str) -> EndpointTarget:
    return EndpointTarget(external=EndpointTarget.External(url=url))


def spec(name: str, target: EndpointTarget | None = None, description: Payload | None = None) -> EndpointSpec:
    result = EndpointSpec(name=name)
    if target is not None:
        result.target.CopyFrom(target)
    if description is not None:
        result.description.CopyFrom(description)
    return result


async def create(client: Client, name: str, target: EndpointTarget | None = None, **kwargs) -> Endpoint:
    response = await client.operator_service.create_nexus_endpoint(
        CreateNexusEndpointRequest(spec=spec(name, target if target is not None else worker(), **kwargs))
    )
    return response.endpoint


async def refused(call) -> RPCError:
    with pytest.raises(RPCError) as info:
        await call
    return info.value


async def refused_create(client: Client, endpoint_spec: EndpointSpec) -> RPCError:
    return await refused(
        client.operator_service.create_nexus_endpoint(CreateNexusEndpointRequest(spec=endpoint_spec))
    )


async def get(client: Client, endpoint_id: str) -> Endpoint:
    response = await client.operator_service.get_nexus_endpoint(GetNexusEndpointRequest(id=endpoint_id))
    return response.endpoint


async def all_endpoints(client: Client, page_size: int = 0) -> list[Endpoint]:
    """Every endpoint of the server, page by page."""
    endpoints: list[Endpoint] = []
    token = b""
    for _ in range(10_000):
        page = await client.operator_service.list_nexus_endpoints(
            ListNexusEndpointsRequest(page_size=page_size, next_page_token=token)
        )
        endpoints.extend(page.endpoints)
        token = page.next_page_token
        if not token:
            return endpoints
    raise AssertionError("the list never ended")


async def test_an_endpoint_is_created_read_listed_updated_and_deleted(client):
    name = prefix()
    description = Payload(metadata={"encoding": b"json/plain"}, data=b'"my endpoint"')
    created = await create(client, name, worker(task_queue="nexus-a"), description=description)
    assert created.version == 1
    assert uuid.UUID(created.id).version == 4 and str(uuid.UUID(created.id)) == created.id
    assert created.url_prefix == f"/nexus/endpoints/{created.id}/services"
    assert created.spec.name == name
    assert created.spec.description == description
    assert created.spec.target.worker.namespace == "default"
    assert created.spec.target.worker.task_queue == "nexus-a"
    assert created.HasField("created_time") and created.created_time.seconds > 0
    assert not created.HasField("last_modified_time")

    assert await get(client, created.id) == created
    listed = await client.operator_service.list_nexus_endpoints(ListNexusEndpointsRequest(name=name))
    assert list(listed.endpoints) == [created] and not listed.next_page_token
    assert created in await all_endpoints(client)

    updated = (
        await client.operator_service.update_nexus_endpoint(
            UpdateNexusEndpointRequest(id=created.id, version=1, spec=spec(name, external("https://nexus.example/x")))
        )
    ).endpoint
    assert (updated.id, updated.version, updated.url_prefix) == (created.id, 2, created.url_prefix)
    assert updated.spec.target.external.url == "https://nexus.example/x"
    assert not updated.spec.HasField("description")
    assert updated.HasField("last_modified_time")
    assert await get(client, created.id) == updated

    # A rename: found by its new name only.
    renamed = (
        await client.operator_service.update_nexus_endpoint(
            UpdateNexusEndpointRequest(id=created.id, version=2, spec=spec(name + "-renamed", worker()))
        )
    ).endpoint
    assert renamed.version == 3
    by_new = await client.operator_service.list_nexus_endpoints(ListNexusEndpointsRequest(name=name + "-renamed"))
    assert [e.id for e in by_new.endpoints] == [created.id]
    by_old = await client.operator_service.list_nexus_endpoints(ListNexusEndpointsRequest(name=name))
    assert list(by_old.endpoints) == []

    await client.operator_service.delete_nexus_endpoint(DeleteNexusEndpointRequest(id=created.id, version=3))
    error = await refused(get(client, created.id))
    assert error.status == NOT_FOUND
    assert error.message == f"Nexus endpoint with ID `{created.id}` not found"
    assert created.id not in [e.id for e in await all_endpoints(client)]
    error = await refused(
        client.operator_service.delete_nexus_endpoint(DeleteNexusEndpointRequest(id=created.id, version=3))
    )
    assert (error.status, error.message) == (NOT_FOUND, f"error deleting nexus endpoint with ID: {created.id}")


async def test_names_must_be_valid_and_unique(client):
    name = prefix()
    for good in [name + "-A-1", name + "--x9"]:
        assert (await create(client, good)).spec.name == good
    for bad in ["a", "1abc", "a_b", "a-", "-a", "a b", "a.b", "é", "_x"]:
        error = await refused_create(client, spec(bad, worker()))
        assert (error.status, error.message) == (INVALID, NAME_REGEX_ISSUE), bad
    error = await refused_create(client, spec("", worker()))
    assert (error.status, error.message) == (INVALID, "endpoint name not set")
    longest = "x" + uuid.uuid4().hex + "x" * 167
    assert len(longest) == 200
    assert (await create(client, longest)).spec.name == longest
    error = await refused_create(client, spec(longest + "x", worker()))
    assert (error.status, error.message) == (INVALID, "endpoint name exceeds length limit of 200")
    error = await refused_create(client, spec(longest + "-", worker()))
    assert error.message == f"endpoint name exceeds length limit of 200, {NAME_REGEX_ISSUE}"

    error = await refused_create(client, spec(name + "-A-1", external("http://x")))
    assert error.status == ALREADY_EXISTS
    assert error.message == f"error creating Nexus endpoint. Endpoint with name {name}-A-1 already registered"


async def test_targets_and_descriptions_are_checked(client):
    name = prefix()
    cases = [
        (CreateNexusEndpointRequest(), INVALID, "endpoint name not set, empty target variant"),
        (CreateNexusEndpointRequest(spec=spec(name)), INVALID, "empty target variant"),
        (CreateNexusEndpointRequest(spec=spec("a_b")), INVALID, f"{NAME_REGEX_ISSUE}, empty target variant"),
        (
            CreateNexusEndpointRequest(spec=spec(name, worker(namespace="no-such-namespace"))),
            FAILED_PRECONDITION,
            "could not verify namespace referenced by target exists: Namespace no-such-namespace is not found.",
        ),
        # A missing namespace is reported alone.
        (
            CreateNexusEndpointRequest(spec=spec("a_b", worker(namespace="no-such-namespace", task_queue=""))),
            FAILED_PRECONDITION,
            "could not verify namespace referenced by target exists: Namespace no-such-namespace is not found.",
        ),
        (
            CreateNexusEndpointRequest(spec=spec(name, EndpointTarget(worker=EndpointTarget.Worker()))),
            INVALID,
            'target namespace not set, invalid target task queue: "taskQueue is not set"',
        ),
        (
            CreateNexusEndpointRequest(spec=spec(name, worker(task_queue="q" * 1001))),
            INVALID,
            'invalid target task queue: "taskQueue length exceeds limit"',
        ),
        (
            CreateNexusEndpointRequest(spec=spec(name, worker(task_queue="/_sys/x"))),
            INVALID,
            'invalid target task queue: "task queue name cannot start with reserved prefix /_sys/"',
        ),
        (CreateNexusEndpointRequest(spec=spec(name, external(""))), INVALID, "empty target URL"),
        (
            CreateNexusEndpointRequest(spec=spec(name, external("ftp://x/y"))),
            INVALID,
            'invalid target URL scheme: "ftp", expected http or https',
        ),
        (
            CreateNexusEndpointRequest(spec=spec(name, external("not a url"))),
            INVALID,
            'invalid target URL scheme: "", expected http or https',
        ),
        (
            CreateNexusEndpointRequest(spec=spec(name, external(":foo"))),
            INVALID,
            'invalid target URL: parse ":foo": missing protocol scheme',
        ),
        (
            CreateNexusEndpointRequest(spec=spec(name, external("https://exa mple.com"))),
            INVALID,
            'invalid target URL: parse "https://exa mple.com": invalid character " " in host name',
        ),
        (
            CreateNexusEndpointRequest(spec=spec(name, external("http://x/%zz"))),
            INVALID,
            'invalid target URL: parse "http://x/%zz": invalid URL escape "%zz"',
        ),
        (
            CreateNexusEndpointRequest(spec=spec(name, external("http://" + "a" * 4090))),
            INVALID,
            "target URL length exceeds limit of 4096",
        ),
        (
            CreateNexusEndpointRequest(spec=spec(name, worker(), description=Payload(data=b"x" * 19997))),
            INVALID,
            "description size exceeds limit of 20000",
        ),
        (
            CreateNexusEndpointRequest(
                spec=spec("a_b", external("ftp://x"), description=Payload(data=b"x" * 20001))
            ),
            INVALID,
            f'{NAME_REGEX_ISSUE}, invalid target URL scheme: "ftp", expected http or https, '
            "description size exceeds limit of 20000",
        ),
    ]
    for request, status, message in cases:
        error = await refused(client.operator_service.create_nexus_endpoint(request))
        assert (error.status, error.message) == (status, message), request
    # At the limits.
    assert (await create(client, name + "-tq", worker(task_queue="q" * 1000))).spec.target.worker.task_queue
    assert (await create(client, name + "-url", external("http://" + "a" * 4089))).spec.target.external.url
    assert (await create(client, name + "-desc", description=Payload(data=b"x" * 19996))).spec.description.data
    for url in ["http://localhost:7243/p", "HTTP://x", "http:x"]:
        created = await create(client, f"{name}-u{uuid.uuid4().hex[:6]}", external(url))
        assert created.spec.target.external.url == url


async def test_updates_name_an_endpoint_and_its_version(client):
    name = prefix()
    created = await create(client, name)

    async def update(endpoint_id: str, version: int, endpoint_spec: EndpointSpec):
        return await client.operator_service.update_nexus_endpoint(
            UpdateNexusEndpointRequest(id=endpoint_id, version=version, spec=endpoint_spec)
        )

    missing = str(uuid.uuid4())
    for endpoint_id in [missing, "", "abc", created.id.upper()]:
        error = await refused(update(endpoint_id, 1, spec(name, worker())))
        assert error.status == NOT_FOUND
        assert error.message == f"error updating Nexus endpoint. endpoint ID {endpoint_id} not found"
    for version in [0, -1, 2, 5]:
        error = await refused(update(created.id, version, spec(name, worker())))
        assert error.status == FAILED_PRECONDITION
        assert error.message == f"nexus endpoint version mismatch. received: {version} expected 1"
    # The spec is checked first, as on create.
    error = await refused(update(missing, 7, spec("a_b", worker())))
    assert (error.status, error.message) == (INVALID, NAME_REGEX_ISSUE)
    error = await refused(update(created.id, 1, EndpointSpec()))
    assert (error.status, error.message) == (INVALID, "endpoint name not set, empty target variant")
    error = await refused(update(created.id, 1, spec(name, worker(namespace="no-such-namespace"))))
    assert error.status == FAILED_PRECONDITION
    assert (await get(client, created.id)) == created


async def test_deletes_and_gets_check_the_id(client):
    name = prefix()
    created = await create(client, name)
    delete = client.operator_service.delete_nexus_endpoint
    cases = [
        (DeleteNexusEndpointRequest(id="", version=1), INVALID, "endpoint ID not set"),
        (DeleteNexusEndpointRequest(id=created.id, version=0), INVALID, "endpoint version is non-positive"),
        (
            DeleteNexusEndpointRequest(id="abc", version=0),
            INVALID,
            'malformed endpoint ID: "invalid UUID length: 3", endpoint version is non-positive',
        ),
        (
            DeleteNexusEndpointRequest(id="zzzzzzzz" + created.id[8:], version=1),
            INVALID,
            'malformed endpoint ID: "invalid UUID format"',
        ),
        (
            DeleteNexusEndpointRequest(id=created.id.upper(), version=1),
            NOT_FOUND,
            f"error deleting nexus endpoint with ID: {created.id.upper()}",
        ),
    ]
    for request, status, message in cases:
        error = await refused(delete(request))
        assert (error.status, error.message) == (status, message), request

    for endpoint_id, message in [
        ("", "endpoint ID not set"),
        ("abc", 'malformed endpoint ID: "invalid UUID length: 3"'),
        ("zzzzzzzz" + created.id[8:], 'malformed endpoint ID: "invalid UUID format"'),
        ("urn:uuix:" + created.id, 'malformed endpoint ID: "invalid urn prefix: \\"urn:uuix:\\""'),
    ]:
        error = await refused(get(client, endpoint_id))
        assert (error.status, error.message) == (INVALID, message), endpoint_id
    # Get reads every form of UUID the reference parses.
    for form in [created.id.upper(), created.id.replace("-", ""), "{" + created.id + "}", "urn:uuid:" + created.id]:
        assert (await get(client, form)).spec.name == name, form
    assert await get(client, created.id) == created


async def test_lists_page_in_id_order(client):
    name = prefix()
    mine = {(await create(client, f"{name}-{i}")).id for i in range(5)}
    for page_size in [1, 2, 3, 0, 1000]:
        listed = await all_endpoints(client, page_size)
        ids = [e.id for e in listed]
        assert ids == sorted(ids), page_size
        assert len(ids) == len(set(ids)), page_size
        assert mine <= set(ids), page_size
    # A full page names the next (which may be empty).
    everything = await all_endpoints(client, 1000)
    first = await client.operator_service.list_nexus_endpoints(ListNexusEndpointsRequest(page_size=len(everything)))
    assert first.next_page_token
    rest = await client.operator_service.list_nexus_endpoints(
        ListNexusEndpointsRequest(page_size=len(everything), next_page_token=first.next_page_token)
    )
    assert list(rest.endpoints) == [] and not rest.next_page_token
    shorter = await client.operator_service.list_nexus_endpoints(
        ListNexusEndpointsRequest(page_size=len(everything) + 1)
    )
    assert not shorter.next_page_token

    for page_size, message in [(-1, "page_size is negative"), (1001, "page_size exceeds limit of 1000")]:
        error = await refused(
            client.operator_service.list_nexus_endpoints(ListNexusEndpointsRequest(page_size=page_size))
        )
        assert (error.status, error.message) == (INVALID, message)
    # With a name: that endpoint alone, whatever the page size and token say.
    by_name = await client.operator_service.list_nexus_endpoints(
        ListNexusEndpointsRequest(name=f"{name}-3", page_size=-1, next_page_token=b"garbage")
    )
    assert [e.spec.name for e in by_name.endpoints] == [f"{name}-3"] and not by_name.next_page_token
    for unknown in [f"{name}-9", "not_a_valid_name"]:
        none = await client.operator_service.list_nexus_endpoints(ListNexusEndpointsRequest(name=unknown))
        assert list(none.endpoints) == []
    # A page token is opaque; one the server did not write is refused.
    error = await refused(
        client.operator_service.list_nexus_endpoints(ListNexusEndpointsRequest(page_size=2, next_page_token=b"x"))
    )
    assert error.status in (INVALID, RPCStatusCode.INTERNAL)  # the reference answers Internal


async def test_sundial_keeps_names_unique_and_versions_checked(client, external_address):
    """Where the reference (1.32) lets its registry drift, Sundial does not: a rename to a name
    another endpoint holds is refused, a renamed endpoint's old name is free again, an update
    keeps the creation time, and a delete must name the current version."""
    if external_address:
        pytest.skip("Sundial's own rules (the reference accepts all of these)")
    name = prefix()
    first = await create(client, name + "-first")
    second = await create(client, name + "-second")
    error = await refused(
        client.operator_service.update_nexus_endpoint(
            UpdateNexusEndpointRequest(id=first.id, version=1, spec=spec(name + "-second", worker()))
        )
    )
    assert error.status == ALREADY_EXISTS
    assert error.message == f"error updating Nexus endpoint. Endpoint with name {name}-second already registered"
    renamed = (
        await client.operator_service.update_nexus_endpoint(
            UpdateNexusEndpointRequest(id=first.id, version=1, spec=spec(name + "-third", worker()))
        )
    ).endpoint
    assert renamed.created_time == first.created_time
    again = await create(client, name + "-first")
    assert again.id != first.id
    error = await refused(
        client.operator_service.delete_nexus_endpoint(DeleteNexusEndpointRequest(id=first.id, version=1))
    )
    assert (error.status, error.message) == (
        FAILED_PRECONDITION,
        "nexus endpoint version mismatch. received: 1 expected 2",
    )
    await client.operator_service.delete_nexus_endpoint(DeleteNexusEndpointRequest(id=first.id, version=2))
    error = await refused(
        client.operator_service.list_nexus_endpoints(ListNexusEndpointsRequest(next_page_token=b"garbage"))
    )
    assert (error.status, error.message) == (INVALID, "Invalid NextPageToken.")
    assert (await get(client, second.id)) == second


async def test_the_registry_survives_restarts(external_address, sundial_factory, tmp_path):
    if external_address:
        pytest.skip("restarts a server of its own")
    server = sundial_factory(tmp_path / "nexus.db", log_path=tmp_path / "nexus.log")
    await server.start()
    client = await Client.connect(server.address)
    name = prefix()
    kept = await create(client, name + "-kept", description=Payload(data=b'"kept"'))
    changed = await create(client, name + "-changed")
    changed = (
        await client.operator_service.update_nexus_endpoint(
            UpdateNexusEndpointRequest(id=changed.id, version=1, spec=spec(name + "-renamed", external("https://x/y")))
        )
    ).endpoint
    gone = await create(client, name + "-gone")
    await client.operator_service.delete_nexus_endpoint(DeleteNexusEndpointRequest(id=gone.id, version=1))

    await server.restart(hard=True)
    client = await Client.connect(server.address)
    assert await get(client, kept.id) == kept
    assert await get(client, changed.id) == changed
    assert (await refused(get(client, gone.id))).status == NOT_FOUND
    assert [e.id for e in await all_endpoints(client)] == sorted([kept.id, changed.id])
    by_name = await client.operator_service.list_nexus_endpoints(ListNexusEndpointsRequest(name=name + "-renamed"))
    assert list(by_name.endpoints) == [changed]
    # The names and versions hold after the restart too.
    assert (await refused(create(client, name + "-kept"))).status == ALREADY_EXISTS
    assert (await create(client, name + "-changed")).version == 1
    assert (await refused(create(client, name + "-renamed"))).status == ALREADY_EXISTS
    error = await refused(
        client.operator_service.update_nexus_endpoint(
            UpdateNexusEndpointRequest(id=changed.id, version=1, spec=spec(name + "-renamed", worker()))
        )
    )
    assert error.status == FAILED_PRECONDITION
    await server.restart()
    client = await Client.connect(server.address)
    assert len(await all_endpoints(client)) == 3
    server.stop()


@pytest.mark.sqlite_only
async def test_a_file_of_an_earlier_release_gains_the_registry(external_address, sundial_factory, tmp_path):
    if external_address:
        pytest.skip("opens a file of its own")
    db = tmp_path / "old.db"
    shutil.copy(SCHEMA_2_FIXTURE, db)
    server = sundial_factory(db, log_path=tmp_path / "old.log")
    await server.start()
    client = await Client.connect(server.address)
    created = await create(client, prefix())
    await server.restart()
    client = await Client.connect(server.address)
    assert await get(client, created.id) == created
    # The file's own data is still there (its running workflow: retention may have removed
    # the completed one, closed a day after the file was made).
    assert (await client.get_workflow_handle("waiting").describe()).status == WorkflowExecutionStatus.RUNNING
    server.stop()
