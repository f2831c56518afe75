"""The web UI in a real browser: Debian's chromium driven by playwright-core (ui/check_ui.mjs).

The test starts Sundial with its UI, runs workflows through the SDK (completed, failed,
running with a pending activity and a child, one to terminate, an encrypted one read through
a codec server, a schedule), lets the browser script check what a person sees and act (signal,
terminate, pause), then verifies those actions through the SDK. Screenshots of every page go
to ``conformance/ui/artifacts``.

Needs ``/usr/bin/chromium`` and ``conformance/ui/node_modules`` (``scripts/test.sh``
installs both); skipped without them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from google.protobuf import json_format
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payloads
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
    WorkflowExecutionStatus,
)
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    import temporalio.converter
    from conftest import _MANAGED, SundialProcess, free_port
    from test_encryption import SECRET, EncryptionCodec

UI_DIR = Path(__file__).resolve().parent / "ui"
ARTIFACTS = UI_DIR / "artifacts"

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists() or not (UI_DIR / "node_modules" / "playwright-core").exists(),
    reason="needs /usr/bin/chromium and conformance/ui/node_modules (scripts/test.sh installs them)",
)


@activity.defn
async def ui_greet(name: str) -> str:
    return f"Hello, {name}"


@activity.defn
async def ui_slow() -> None:
    while True:
        activity.heartbeat("still going")
        await asyncio.sleep(0.5)


@workflow.defn(sandboxed=False)
class UiGreet:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(ui_greet, name, start_to_close_timeout=timedelta(seconds=10))


@workflow.defn(sandboxed=False)
class UiFail:
    @workflow.run
    async def run(self) -> None:
        raise ApplicationError("ui-failure-marker", non_retryable=True)


@workflow.defn(sandboxed=False)
class UiWait:
    @workflow.run
    async def run(self, _value: str = "") -> None:
        await workflow.wait_condition(lambda: False)


@workflow.defn(sandboxed=False)
class UiParent:
    def __init__(self) -> None:
        self.pokes: list = []

    @workflow.run
    async def run(self, child_id: str) -> None:
        await workflow.start_child_workflow(UiWait.run, "child", id=child_id)
        await workflow.execute_activity(
            ui_slow, start_to_close_timeout=timedelta(hours=1), heartbeat_timeout=timedelta(seconds=30)
        )

    @workflow.signal
    def poke(self, value: str) -> None:
        self.pokes.append(value)


class UiSundial(SundialProcess):
    """Sundial with its web UI on ``ui_port``."""

    def __init__(self, *args, ui_port: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ui_port = ui_port

    def command(self) -> list[str]:
        command = [a for a in super().command() if a != "--headless"]
        return command + ["--ui-port", str(self.ui_port), "--http-port", "0"]


def codec_server(codec: EncryptionCodec) -> tuple[ThreadingHTTPServer, str]:
    """Temporal's remote codec protocol (POST /decode), open to the UI's origin (CORS)."""
    loop = asyncio.new_event_loop()

    class Handler(BaseHTTPRequestHandler):
        def _cors(self) -> None:
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Content-Type, X-Namespace")

        def do_OPTIONS(self) -> None:  # noqa: N802
            self.send_response(204)
            self._cors()
            self.end_headers()

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/decode":
                self.send_response(404)
                self.end_headers()
                return
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            payloads = json_format.Parse(body, Payloads())
            decoded = loop.run_until_complete(codec.decode(payloads.payloads))
            out = json_format.MessageToJson(Payloads(payloads=decoded)).encode()
            self.send_response(200)
            self._cors()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


async def test_the_web_ui_in_a_browser(tmp_path):
    ui_port = free_port()
    server = UiSundial(tmp_path / "sundial.db", log_path=tmp_path / "sundial.log", ui_port=ui_port)
    _MANAGED.append(server)
    await server.start()
    codec = EncryptionCodec(os.urandom(32))
    codec_http, codec_url = codec_server(codec)
    try:
        client = await Client.connect(server.address, namespace="default")
        queue = f"tq-ui-{uuid.uuid4()}"
        tag = uuid.uuid4().hex[:8]
        ids = {k: f"ui-{k}-{tag}" for k in ["completed", "failed", "running", "child", "terminate", "encrypted"]}
        async with Worker(
            client,
            task_queue=queue,
            workflows=[UiGreet, UiFail, UiWait, UiParent],
            activities=[ui_greet, ui_slow],
        ):
            assert await client.execute_workflow(
                UiGreet.run, "ui-input-marker", id=ids["completed"], task_queue=queue
            ) == "Hello, ui-input-marker"
            failed = await client.start_workflow(UiFail.run, id=ids["failed"], task_queue=queue)
            with pytest.raises(Exception):
                await failed.result()
            running = await client.start_workflow(UiParent.run, ids["child"], id=ids["running"], task_queue=queue)
            to_terminate = await client.start_workflow(UiWait.run, id=ids["terminate"], task_queue=queue)
            encrypted_client = await Client.connect(
                server.address,
                namespace="default",
                data_converter=temporalio.converter.DataConverter(payload_codec=codec),
            )
            await encrypted_client.start_workflow(
                UiWait.run, SECRET, id=ids["encrypted"], task_queue=f"{queue}-nobody"
            )
            schedule_id = f"ui-schedule-{tag}"
            await client.create_schedule(
                schedule_id,
                Schedule(
                    action=ScheduleActionStartWorkflow(UiWait.run, id=f"ui-scheduled-{tag}", task_queue=queue),
                    spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
                ),
            )
            # Wait until the running workflow has its activity started and its child running.
            for _ in range(100):
                described = await running.describe()
                raw = described.raw_description
                if raw.pending_activities and raw.pending_children:
                    break
                await asyncio.sleep(0.1)

            if ARTIFACTS.exists():
                shutil.rmtree(ARTIFACTS)
            cfg = {
                "url": f"http://127.0.0.1:{ui_port}",
                "artifacts": str(ARTIFACTS),
                "completed": ids["completed"],
                "completedType": "UiGreet",
                "completedInput": "ui-input-marker",
                "completedResult": "Hello, ui-input-marker",
                "failed": ids["failed"],
                "failedMessage": "ui-failure-marker",
                "running": ids["running"],
                "pendingActivity": "ui_slow",
                "child": ids["child"],
                "signalName": "poke",
                "signalArg": "from-the-browser",
                "toTerminate": ids["terminate"],
                "encrypted": ids["encrypted"],
                "secret": SECRET,
                "codec": codec_url,
                "schedule": schedule_id,
                "taskQueue": queue,
            }
            result = await asyncio.to_thread(
                subprocess.run,
                ["node", "check_ui.mjs", json.dumps(cfg)],
                cwd=UI_DIR,
                capture_output=True,
                text=True,
                timeout=240,
            )
            print(result.stdout)
            assert result.returncode == 0, f"browser checks failed:\n{result.stdout}\n{result.stderr}"

            # What the browser did, seen through the SDK.
            history = await running.fetch_history()
            signals = [
                e.workflow_execution_signaled_event_attributes
                for e in history.events
                if e.HasField("workflow_execution_signaled_event_attributes")
            ]
            assert [s.signal_name for s in signals] == ["poke"]
            assert client.data_converter.payload_converter.from_payloads(signals[0].input.payloads, [str]) == [
                "from-the-browser"
            ]
            assert (await to_terminate.describe()).status == WorkflowExecutionStatus.TERMINATED
            schedule = await client.get_schedule_handle(schedule_id).describe()
            assert schedule.schedule.state.paused
            assert schedule.schedule.state.note == "paused by the browser test"
            await running.terminate("test over")
            await encrypted_client.get_workflow_handle(ids["encrypted"]).terminate("test over")
            await client.get_schedule_handle(schedule_id).delete()
    finally:
        codec_http.shutdown()
        server.stop()
        _MANAGED.remove(server)
