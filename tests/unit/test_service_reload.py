"""The reload step of `serve`: the config check runs off the event loop, and a SIGTERM during it
stops the gateway at once instead of waiting for the check and starting a pipeline to stop it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from gateway.service import _wait_for_stop_or_reload


def test_a_reload_runs_off_the_loop_and_returns_the_new_config() -> None:
    """The check waits for something only the running loop can do: on the loop it would never
    see it (and say so); off it, it does."""
    loop_ran = threading.Event()

    def reload_needing_the_loop() -> Any:
        return "new config" if loop_ran.wait(10) else "the loop was blocked"

    async def main() -> Any:
        stop, hup = asyncio.Event(), asyncio.Event()
        hup.set()
        asyncio.get_running_loop().call_soon(loop_ran.set)
        return await _wait_for_stop_or_reload(stop, hup, reload_needing_the_loop)

    assert asyncio.run(main()) == "new config"


def test_a_stop_during_a_reload_wins_at_once() -> None:
    release, finished = threading.Event(), threading.Event()

    def stuck_reload() -> Any:
        release.wait(10)
        finished.set()
        return "too late"

    async def main() -> tuple[Any, bool]:
        stop, hup = asyncio.Event(), asyncio.Event()
        hup.set()
        asyncio.get_running_loop().call_soon(stop.set)
        got = await _wait_for_stop_or_reload(stop, hup, stuck_reload)
        still_checking = not finished.is_set()
        release.set()
        return got, still_checking

    got, still_checking = asyncio.run(main())
    assert got is None
    assert still_checking  # returned on the stop, before the check ended


def test_an_invalid_config_keeps_waiting_and_a_stop_then_ends_it() -> None:
    calls: list[int] = []

    async def main() -> Any:
        stop, hup = asyncio.Event(), asyncio.Event()
        hup.set()

        def refused() -> Any:
            calls.append(1)
            return None

        asyncio.get_running_loop().call_later(0.2, stop.set)
        return await _wait_for_stop_or_reload(stop, hup, refused)

    assert asyncio.run(main()) is None
    assert calls == [1]
