"""Seed pattern "Custom Metrics" (one fix: the SDK names the integer counter
``create_counter``, not ``create_counter_int``): a worker whose SDK runtime exports Prometheus metrics, with
an activity interceptor that records a schedule-to-start histogram and an execution counter.
The test scrapes the worker's endpoint for the custom metrics, and Sundial's own `/metrics`
endpoint (``--metrics-port``) to check that the server-side counters moved."""

from __future__ import annotations

import asyncio
import re
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)

with workflow.unsafe.imports_passed_through():
    from conftest import SundialProcess, free_port


# --- the seed pattern -----------------------------------------------------------------------

class CustomMetricsInterceptor(Interceptor):
    """Interceptor to add custom metrics collection."""

    def intercept_activity(
        self, next: ActivityInboundInterceptor
    ) -> ActivityInboundInterceptor:
        return ActivityMetricsInterceptor(next)


class ActivityMetricsInterceptor(ActivityInboundInterceptor):
    """Captures activity scheduling and execution metrics."""

    async def execute_activity(self, input: ExecuteActivityInput):
        # Calculate schedule-to-start latency
        schedule_to_start = (
            activity.info().started_time -
            activity.info().current_attempt_scheduled_time
        )

        # Create custom histogram metric
        meter = activity.metric_meter()
        latency_histogram = meter.create_histogram_timedelta(
            "activity_schedule_to_start_latency",
            description="Time between activity scheduling and start",
            unit="duration",
        )

        # Record metric with labels
        latency_histogram.record(
            schedule_to_start,
            {
                "workflow_type": activity.info().workflow_type,
                "activity_type": activity.info().activity_type,
            }
        )

        # Create business metrics (the seed says `create_counter_int`; the SDK's integer
        # counter is `create_counter`)
        counter = meter.create_counter(
            "activity_executions_total",
            description="Total number of activity executions",
        )
        counter.add(1, {"status": "started"})

        try:
            result = await self.next.execute_activity(input)
            counter.add(1, {"status": "completed"})
            return result
        except Exception as e:
            counter.add(1, {"status": "failed"})
            raise


@activity.defn
def my_activity(name: str) -> str:
    return f"Hello, {name}!"


@workflow.defn
class MyWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            my_activity, name, start_to_close_timeout=timedelta(seconds=10)
        )


# --- the test -------------------------------------------------------------------------------

class MetricsSundial(SundialProcess):
    """A start-dev server with its Prometheus endpoint on."""

    def __init__(self, *args, metrics_port: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.metrics_port = metrics_port

    def command(self) -> list[str]:
        return super().command() + ["--metrics-port", str(self.metrics_port)]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(m.group(4))
    return total


@pytest.fixture
async def metrics_server(tmp_path):
    server = MetricsSundial(tmp_path / "sundial.db", metrics_port=free_port())
    await server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_custom_metrics_pattern_and_server_metrics(metrics_server):
    before = scrape(metrics_server.metrics_port)
    worker_port = free_port()
    runtime = Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{worker_port}"))
    )
    client = await Client.connect(metrics_server.address, runtime=runtime)
    task_queue = f"metrics-task-queue-{uuid.uuid4()}"
    runs = 3
    async with Worker(
        client,
        task_queue=task_queue,
        interceptors=[CustomMetricsInterceptor()],
        workflows=[MyWorkflow],
        activities=[my_activity],
        activity_executor=ThreadPoolExecutor(2),
    ):
        for i in range(runs):
            result = await client.execute_workflow(
                MyWorkflow.run, f"metrics-{i}", id=f"metrics-{uuid.uuid4()}", task_queue=task_queue
            )
            assert result == f"Hello, metrics-{i}!"

        # Worker side: the interceptor's metrics, exported by the SDK runtime.
        worker = ""
        for _ in range(50):
            worker = scrape(worker_port)
            if value(worker, "activity_executions_total", status="completed") >= runs:
                break
            await asyncio.sleep(0.2)
        assert value(worker, "activity_executions_total", status="started") == runs
        assert value(worker, "activity_executions_total", status="completed") == runs
        assert value(worker, "activity_executions_total", status="failed") == 0
        assert value(
            worker, "activity_schedule_to_start_latency_count",
            workflow_type="MyWorkflow", activity_type="my_activity",
        ) == runs

    # Server side: Sundial's own counters moved.
    after = scrape(metrics_server.metrics_port)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("sundial_workflows_started_total") >= runs
    assert moved("sundial_workflows_closed_total", status="completed") >= runs
    assert moved("sundial_rpc_requests_total", rpc="StartWorkflowExecution", status="OK") >= runs
    assert moved("sundial_rpc_requests_total", rpc="RespondActivityTaskCompleted", status="OK") >= runs
    assert moved("sundial_rpc_latency_seconds_count", rpc="StartWorkflowExecution", status="OK") >= runs
    assert moved("sundial_task_schedule_to_start_seconds_count", kind="activity") >= runs
    assert moved("sundial_task_schedule_to_start_seconds_count", kind="workflow") >= 1
    assert moved("sundial_persistence_commit_seconds_count") >= runs
    assert moved("sundial_persistence_commit_batch_size_sum") >= runs * 3
    # Gauges are present (their values depend on the moment).
    for gauge in ["sundial_long_polls_waiting", "sundial_timers_pending"]:
        assert re.search(rf"^{gauge}", after, re.M), gauge
