"""Small Temporal worker that scripts/cli-smoke.sh drives with the `temporal` CLI.

Usage: cli_worker.py ADDRESS NAMESPACE TASK_QUEUE IDENTITY

Workflows:
  * ``CliGreet(name) -> "Hello, <name>!"`` finishes at once
    (for ``workflow execute`` / ``workflow result``).
  * ``CliCounter(start) -> int`` keeps a counter: query ``count`` reads it,
    update ``add(n)`` adds to it and returns the new value (it rejects a
    negative n in its validator), signal ``add_signal(n)`` adds without a
    reply and signal ``finish`` completes the workflow with the counter.

Prints ``worker ready`` on stdout once it polls; runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker


@workflow.defn(name="CliGreet")
class CliGreet:
    @workflow.run
    async def run(self, name: str) -> str:
        return f"Hello, {name}!"


@workflow.defn(name="CliCounter")
class CliCounter:
    def __init__(self) -> None:
        self._count = 0
        self._done = False

    @workflow.run
    async def run(self, start: int) -> int:
        self._count += start
        await workflow.wait_condition(lambda: self._done)
        return self._count

    @workflow.query
    def count(self) -> int:
        return self._count

    @workflow.update
    def add(self, n: int) -> int:
        self._count += n
        return self._count

    @add.validator
    def validate_add(self, n: int) -> None:
        if n < 0:
            raise ValueError(f"cannot add a negative number: {n}")

    @workflow.signal
    def add_signal(self, n: int) -> None:
        self._count += n

    @workflow.signal
    def finish(self) -> None:
        self._done = True


async def main(address: str, namespace: str, task_queue: str, identity: str) -> None:
    client = await Client.connect(address, namespace=namespace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[CliGreet, CliCounter],
        identity=identity,
    ):
        print("worker ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    asyncio.run(main(*sys.argv[1:]))
    # skip interpreter teardown: the SDK's native runtime can abort while being torn down
    sys.stdout.flush()
    os._exit(0)
