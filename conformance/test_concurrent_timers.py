"""Concurrent Timers: several re-armed timers raced with workflow.wait(FIRST_COMPLETED)."""

import asyncio
from datetime import timedelta
from typing import Dict, List

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.worker import Worker

# name -> period in seconds; every timer is re-armed with its own period when it
# fires (as in the seed).  Nominal firing times: oil 2.5 (re-armed: 5.0),
# inspection 3.75, coolant 6.25.  Neighbouring deadlines are >= 1.25 s apart so
# the order is unambiguous even on a server whose timers fire up to ~1 s late
# (the reference dev server fires timers on a ~1 s tick).
UNIT = 1.25
PERIODS: Dict[str, float] = {"oil": 2 * UNIT, "inspection": 3 * UNIT, "coolant": 5 * UNIT}
EXPECTED = ["oil", "inspection", "oil", "coolant"]

_notifications: Dict[str, List[str]] = {}


@activity.defn
async def send_notification(user_email: str, message: str) -> None:
    _notifications.setdefault(user_email, []).append(message)


@workflow.defn
class MaintenanceWorkflow:
    @workflow.run
    async def run(self, user_email: str, total_fires: int) -> List[str]:
        timers: Dict[str, asyncio.Task] = {}
        due: Dict[str, float] = {}
        counts = {name: 0 for name in PERIODS}

        def arm(name: str) -> None:
            timers[name] = asyncio.create_task(asyncio.sleep(PERIODS[name]))
            due[name] = workflow.time() + PERIODS[name]

        for name in PERIODS:
            arm(name)
        fired: List[str] = []
        while len(fired) < total_fires:
            done, _ = await workflow.wait(timers.values(), return_when=asyncio.FIRST_COMPLETED)
            # several timers may complete in one activation: take them in deadline order
            for name in sorted((n for n, t in timers.items() if t in done), key=due.__getitem__):
                if len(fired) == total_fires:
                    break
                fired.append(name)
                counts[name] += 1
                if len(fired) < total_fires:
                    arm(name)
                await workflow.execute_activity(
                    send_notification,
                    args=[user_email, f"{name} #{counts[name]}"],
                    start_to_close_timeout=timedelta(seconds=10),
                )
        # cancel whatever is still armed (produces TimerCanceled events)
        pending = [t for t in timers.values() if not t.done()]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return fired


async def test_concurrent_timers_fire_in_order(client, task_queue, new_id):
    email = new_id("driver") + "@example.com"
    async with Worker(
        client, task_queue=task_queue, workflows=[MaintenanceWorkflow], activities=[send_notification]
    ):
        handle = await client.start_workflow(
            MaintenanceWorkflow.run,
            args=[email, len(EXPECTED)],
            id=new_id("timers"),
            task_queue=task_queue,
        )
        fired = await asyncio.wait_for(handle.result(), 30)

    assert fired == EXPECTED
    assert _notifications.pop(email) == ["oil #1", "inspection #1", "oil #2", "coolant #1"]

    history = await handle.fetch_history()
    started = {
        e.event_id: e.timer_started_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
    }
    fired_events = [
        e.timer_fired_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED
    ]
    canceled = [
        e.timer_canceled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_TIMER_CANCELED
    ]
    period_of = {timedelta(seconds=p): n for n, p in PERIODS.items()}
    # oil armed 3x, inspection 2x, coolant once; the last oil and inspection are cancelled
    assert sorted(period_of[a.start_to_fire_timeout.ToTimedelta()] for a in started.values()) == sorted(
        ["oil", "oil", "oil", "inspection", "inspection", "coolant"]
    )
    # TimerFired events, in history order, are the firing order the workflow saw
    assert [
        period_of[started[f.started_event_id].start_to_fire_timeout.ToTimedelta()] for f in fired_events
    ] == EXPECTED
    assert sorted(
        period_of[started[c.started_event_id].start_to_fire_timeout.ToTimedelta()] for c in canceled
    ) == ["inspection", "oil"]
    # fired/canceled events point at the TimerStarted event with the same timer id
    for ev in fired_events + canceled:
        assert started[ev.started_event_id].timer_id == ev.timer_id
    assert len({ev.started_event_id for ev in fired_events + canceled}) == len(started) == 6
    assert len({t.timer_id for t in started.values()}) == 6

    # the first workflow task starts all three timers
    first_wft = min(a.workflow_task_completed_event_id for a in started.values())
    first = [a for a in started.values() if a.workflow_task_completed_event_id == first_wft]
    assert len(first) == 3
    # a timer never fires before its duration has elapsed
    times = {e.event_id: e.event_time.ToDatetime() for e in history.events}
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED:
            sid = e.timer_fired_event_attributes.started_event_id
            assert times[e.event_id] - times[sid] >= started[sid].start_to_fire_timeout.ToTimedelta()
    assert history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
