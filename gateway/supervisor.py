"""One supervisor for every long-running task: sources, sink runners, the committer, the window
closer, housekeeping, the ops server.

A task that raises something unexpected is not allowed to die quietly: the exception is logged
with the task's name, the task is marked down (so `/readyz` says which one, and the systemd
watchdog is not fed while the committer is down), and it is started again after a backoff that
doubles up to RESTART_MAX and starts over once a run lasted HEALTHY_AFTER. A task that returns
normally (a sink runner told to stop) is finished, not restarted; cancellation is shutdown.

Restarting is safe because each task keeps its state on its object, not in the coroutine: the
committer keeps the group it was committing, a sink runner re-reads from its cursor, a source
reopens its port or reconnects (an unacknowledged MQTT message is redelivered).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.ops.metrics import Registry

log = logging.getLogger("gateway.supervisor")

RESTART_MIN = 0.5
RESTART_MAX = 30.0
HEALTHY_AFTER = 60.0  # a run this long resets the backoff


async def cancel_and_wait(tasks: list[asyncio.Task[Any]], timeout: float, what: str) -> None:
    """Cancel and wait, bounded. On Python 3.11 a cancellation can be swallowed inside
    `asyncio.wait_for` (libraries use it: aiomqtt's publish does), so a task may survive one
    cancel(): it is asked again, and shutdown never hangs on it."""
    pending = {t for t in tasks if not t.done()}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(0.5, max(0.0, deadline - time.monotonic())))
    if pending:
        log.error("tasks did not stop in time", extra={"what": what, "count": len(pending)})


class Supervisor:
    def __init__(self, metrics: Registry | None = None, *, restart_min: float = RESTART_MIN,
                 restart_max: float = RESTART_MAX) -> None:  # fmt: skip
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.runs: dict[str, Callable[[], Awaitable[Any]]] = {}  # what each task runs
        self.down: dict[str, str] = {}  # task name -> why it is not running
        self.restarts: dict[str, int] = {}
        self.restart_min, self.restart_max = restart_min, restart_max
        metrics = metrics or Registry()
        self.m_restarts = metrics.counter("gateway_task_restarts_total", "Tasks restarted after a crash")
        self.m_up = metrics.gauge("gateway_task_up", "1 while the task runs, 0 while it waits to restart")

    def start(self, name: str, run: Callable[[], Awaitable[Any]]) -> asyncio.Task[None]:
        """Run `run()` as the task `name`, restarting it whenever it raises."""
        self.m_up.set(1, task=name)
        self.runs[name] = run
        task = asyncio.create_task(self._keep(name, run), name=name)
        self.tasks[name] = task
        return task

    def up(self, name: str) -> bool:
        task = self.tasks.get(name)
        return task is not None and not task.done() and name not in self.down

    def problems(self) -> list[str]:
        return [f"task {name} down ({why})" for name, why in sorted(self.down.items())]

    async def _keep(self, name: str, run: Callable[[], Awaitable[Any]]) -> None:
        delay: float | None = None
        while True:
            started = time.monotonic()
            try:
                await run()
                return  # finished on purpose (e.g. a sink runner told to stop)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if delay is None or time.monotonic() - started >= HEALTHY_AFTER:
                    delay = self.restart_min
                self.down[name] = f"crashed: {type(e).__name__}, restarting in {delay:g} s"
                self.restarts[name] = self.restarts.get(name, 0) + 1
                self.m_restarts.inc(task=name)
                self.m_up.set(0, task=name)
                log.error("task crashed; restarting", exc_info=True,
                          extra={"task": name, "error": type(e).__name__, "restart_in_s": delay})  # fmt: skip
            try:
                await asyncio.sleep(delay)
            finally:
                self.down.pop(name, None)
                self.m_up.set(1, task=name)
            delay = min(delay * 2, self.restart_max)
            log.info("task restarted", extra={"task": name, "restarts": self.restarts[name]})

    async def stop(self, names: list[str] | None = None, timeout: float = 3.0) -> None:
        """Cancel the named tasks (all by default) and wait for them, bounded."""
        chosen = [t for n, t in self.tasks.items() if names is None or n in names]
        await cancel_and_wait(chosen, timeout, ",".join(names) if names else "tasks")
