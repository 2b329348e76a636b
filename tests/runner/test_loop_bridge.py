"""Sync functions on the event loop: waiting on coroutines, errors, cancellation, fallback."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import dosirak
from dosirak.runner import loop_bridge
from dosirak.runner.loop_bridge import OnLoop

request = contextvars.ContextVar("request", default="-")


async def doubled(x: int) -> int:
    await asyncio.sleep(0.001)
    return 2 * x


async def failing() -> None:
    await asyncio.sleep(0)
    raise KeyError("from the coroutine")


def test_waits_on_coroutines_concurrently_and_sees_the_callers_context() -> None:
    def work(x: int) -> tuple[int, str, int]:
        return loop_bridge.wait(doubled(x)) + loop_bridge.wait(doubled(1)), request.get(), \
            threading.get_ident()

    async def main() -> None:
        call = OnLoop(work, name="work", executor=lambda: None)
        request.set("req-7")
        started = time.perf_counter()
        results = await asyncio.gather(*(call(i) for i in range(50)))
        # Fifty calls each waiting twice ran side by side, on the loop's own thread.
        assert time.perf_counter() - started < 1.0
        assert [value for value, _, _ in results] == [2 * i + 2 for i in range(50)]
        assert {ident for _, _, ident in results} == {threading.get_ident()}
        assert {seen for _, seen, _ in results} == {"req-7"}
        assert not call.threaded

    asyncio.run(main())


def test_errors_reach_the_caller_and_greenlets_are_reused() -> None:
    def raises_itself() -> None:
        raise ValueError("from the function")

    def raises_from_wait() -> None:
        loop_bridge.wait(failing())

    def catches() -> str:
        try:
            loop_bridge.wait(failing())
        except KeyError:
            return "caught"
        return "not raised"

    async def main() -> None:
        idle_before = len(getattr(loop_bridge._idle, "greenlets", []))
        with pytest.raises(ValueError, match="from the function"):
            await OnLoop(raises_itself, name="a", executor=lambda: None)()
        with pytest.raises(KeyError, match="from the coroutine"):
            await OnLoop(raises_from_wait, name="b", executor=lambda: None)()
        assert await OnLoop(catches, name="c", executor=lambda: None)() == "caught"
        # One greenlet at most was made: calls one after another share it.
        assert len(loop_bridge._idle.greenlets) <= max(idle_before, 1)

    asyncio.run(main())


def test_cancelling_the_caller_cancels_the_wait_inside() -> None:
    seen = []

    def waits() -> None:
        try:
            loop_bridge.wait(asyncio.sleep(10))
        except asyncio.CancelledError:
            seen.append("cancelled inside")
            raise

    async def main() -> None:
        task = asyncio.ensure_future(OnLoop(waits, name="w", executor=lambda: None)())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert seen == ["cancelled inside"]


def test_a_function_that_blocks_the_loop_moves_to_the_thread_pool(caplog) -> None:
    def blocks() -> int:
        time.sleep(loop_bridge.BLOCKING_CALL + 0.05)
        return threading.get_ident()

    async def main() -> None:
        with ThreadPoolExecutor(2) as pool:
            call = OnLoop(blocks, name="blocks", executor=lambda: pool)
            assert await call() == threading.get_ident()  # first call: on the loop
            assert call.threaded
            assert await call() != threading.get_ident()  # then in the pool

    asyncio.run(main())
    assert "held the event loop" in caplog.text and "'blocks'" in caplog.text


def test_occasional_slow_calls_do_not_move_it() -> None:
    durations = iter([0.01, 0, 0.01, 0, 0.01, 0])

    def sometimes_slow() -> None:
        time.sleep(next(durations))

    async def main() -> None:
        call = OnLoop(sometimes_slow, name="s", executor=lambda: None)
        for _ in range(6):
            await call()
        assert not call.threaded  # never SLOW_CALLS slow calls in a row

    asyncio.run(main())


def test_runner_run_inside_waits_without_a_thread() -> None:
    class Doubler(dosirak.Runnable):
        @dosirak.Runnable.method(batchable=True, batch_dim=0)
        def double(self, x: np.ndarray) -> np.ndarray:
            return x * 2

    runner = dosirak.Runner(Doubler, name="doubler")

    def api(x: np.ndarray) -> np.ndarray:
        return runner.double.run(x)

    async def main() -> None:
        await runner.start(mode="local")
        try:
            call = OnLoop(api, name="api", executor=lambda: None)
            outputs = await asyncio.gather(*(call(np.full((1, 2), i)) for i in range(20)))
            assert [output.tolist() for output in outputs] == [[[2 * i, 2 * i]]
                                                               for i in range(20)]
            # Outside a bridged function, run() on the loop is still refused clearly.
            with pytest.raises(dosirak.exceptions.ServiceCodeError, match="async_run"):
                api(np.ones((1, 2)))
        finally:
            await runner.stop()

    asyncio.run(main())
