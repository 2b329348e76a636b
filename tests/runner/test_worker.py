"""Runner worker processes: real children, real sockets, real crashes."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dosirak.sklearn
from dosirak.exceptions import InvalidArgument, RunnerError, RunnerUnavailable
from dosirak.models import runnable_of
from dosirak.runner.runnable import Runnable, RunnableSpec
from dosirak.runner.worker import WorkerPool


class Toolbox(Runnable):
    """An importable runnable: its spec names it by module path, nothing is pickled."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    @Runnable.method
    def identity(self, value: Any) -> Any:
        return value

    @Runnable.method
    def add(self, x: np.ndarray, y: float = 0.0) -> np.ndarray:
        return x + y + self.offset

    @Runnable.method
    def sleep(self, seconds: float) -> int:
        time.sleep(seconds)
        return os.getpid()

    @Runnable.method
    def noted_sleep(self, note: str, seconds: float) -> int:
        """Write this worker's pid to ``note`` (so a test can kill it mid-call), then sleep."""
        Path(note).write_text(str(os.getpid()))
        time.sleep(seconds)
        return os.getpid()

    @Runnable.method
    def noted_segfault(self, note: str) -> None:
        Path(note).write_text(str(os.getpid()))
        self.segfault()

    @Runnable.method
    def fail(self, message: str) -> None:
        raise KeyError(message)

    @Runnable.method
    def exit(self, code: int) -> None:
        os._exit(code)

    @Runnable.method
    def segfault(self) -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file in the work tree
        ctypes.string_at(0)

    @Runnable.method
    def unsendable(self) -> Any:
        return {"handle": object()}


class BuildsOnce(Runnable):
    """Cannot be built again once ``marker`` exists: its restarts fail."""

    def __init__(self, marker: str) -> None:
        if Path(marker).exists():
            raise RuntimeError("cannot build")

    @Runnable.method
    def sleep(self, seconds: float) -> int:
        time.sleep(seconds)
        return os.getpid()


def children() -> set[int]:
    """Live (non-zombie) child processes of this test process."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                found.add(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def no_leftover_children() -> Iterator[None]:
    before = children()
    yield
    assert children() - before == set(), "a test left worker processes behind"


@contextlib.asynccontextmanager
async def started(spec: RunnableSpec, **options: Any) -> AsyncIterator[WorkerPool]:
    pool = WorkerPool(spec, **options)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.stop(grace_period=5)


TOOLBOX = RunnableSpec.for_class(Toolbox, {"offset": 0.5})


def test_an_importable_runnable_is_named_not_pickled() -> None:
    assert TOOLBOX.target is not None and TOOLBOX.pickled_class is None

    async def scenario() -> Any:
        async with started(TOOLBOX, name="toolbox") as pool:
            assert pool.ready and len(pool.pids) == 1 and pool.pids[0] != os.getpid()
            return await pool.call("add", (np.arange(3.0),), {"y": 1.0})

    np.testing.assert_array_equal(asyncio.run(scenario()), np.arange(3.0) + 1.5)


def test_every_supported_type_crosses_a_worker_process_and_back() -> None:
    # Imported here: workers import this module to find Toolbox, and need no hypothesis.
    from .test_transport import assert_same, samples

    values = samples()

    async def scenario() -> dict[str, Any]:
        async with started(TOOLBOX) as pool:
            return {name: await pool.call("identity", (value,), {})
                    for name, value in values.items()}

    got = asyncio.run(scenario())
    for name, value in values.items():
        assert_same(got[name], value)


def test_four_megabytes_of_float32_round_trip_and_concurrent_calls_keep_their_answers() -> None:
    rng = np.random.default_rng(1)
    arrays = [rng.random(1 << 20, dtype=np.float32) for _ in range(4)]

    many = [np.arange(k, dtype=np.int32) for k in range(1, 700)]  # more pieces than one sendmsg

    async def scenario() -> tuple[list[np.ndarray], list[np.ndarray]]:
        async with started(TOOLBOX, workers=2) as pool:
            return (await asyncio.gather(*(pool.call("identity", (array,), {})
                                           for array in arrays * 2)),
                    await pool.call("identity", (many,), {}))

    big, small = asyncio.run(scenario())
    for got, want in zip(big, arrays * 2, strict=True):
        assert got.dtype == np.float32 and np.array_equal(got, want)
    for got, want in zip(small, many, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_runnable_defined_in_a_function_travels_pickled_to_its_own_child() -> None:
    class Local(Runnable):
        def __init__(self, scale: int) -> None:
            self.scale = scale

        @Runnable.method
        def __call__(self, x: np.ndarray) -> np.ndarray:
            return x * self.scale

    spec = RunnableSpec.for_class(Local, {"scale": 3})
    assert spec.pickled_class is not None

    async def scenario() -> Any:
        async with started(spec) as pool:
            return await pool.call("__call__", (np.arange(4),), {})

    np.testing.assert_array_equal(asyncio.run(scenario()), np.arange(4) * 3)


def test_a_stored_sklearn_model_predicts_as_it_does_in_process() -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(features, labels)
    stored = dosirak.sklearn.save_model("iris_clf", model)

    async def scenario() -> tuple[Any, Any]:
        spec = RunnableSpec.for_class(runnable_of, {"tag": str(stored.tag)})
        async with started(spec, name="iris_clf") as pool:
            return (await pool.call("predict", (features,), {}),
                    await pool.call("predict_proba", (features[:7],), {}))

    predicted, probabilities = asyncio.run(scenario())
    np.testing.assert_array_equal(predicted, model.predict(features))
    np.testing.assert_allclose(probabilities, model.predict_proba(features[:7]), rtol=1e-12)


def test_an_exception_in_the_model_reaches_the_caller_with_type_and_message() -> None:
    async def scenario() -> tuple[RunnerError, Any]:
        async with started(TOOLBOX) as pool:
            with pytest.raises(RunnerError) as caught:
                await pool.call("fail", ("no such feature 'petal'",), {})
            with pytest.raises(RunnerError) as missing:
                await pool.call("no_such_method", (), {})
            assert missing.value.error_type == "ServiceCodeError"
            assert "has no method 'no_such_method'" in str(missing.value)
            return caught.value, await pool.call("identity", (1,), {})  # still serving

    error, after = asyncio.run(scenario())
    assert error.error_type == "KeyError"
    assert "no such feature 'petal'" in str(error)
    assert "in fail" in error.remote_traceback
    assert after == 1


def test_values_without_a_wire_form_are_refused_both_ways() -> None:
    async def scenario() -> RunnerError:
        async with started(TOOLBOX) as pool:
            with pytest.raises(InvalidArgument, match=r"cannot send builtins\.object to a runner"):
                await pool.call("identity", (object(),), {})
            with pytest.raises(RunnerError) as caught:
                await pool.call("unsendable", (), {})
            return caught.value

    error = asyncio.run(scenario())
    assert error.error_type == "Unsupported"
    assert "without pickle" in str(error)


def test_a_runnable_that_cannot_be_built_fails_start_with_the_childs_message() -> None:
    async def scenario() -> None:
        pool = WorkerPool(RunnableSpec.for_class(runnable_of, {"tag": "no_such_model:v1"}),
                          name="ghost")
        await pool.start()

    with pytest.raises(RunnerError) as caught:
        asyncio.run(scenario())
    assert caught.value.error_type == "ModelNotFound"
    assert "could not start worker 0" in str(caught.value)
    assert "no_such_model" in str(caught.value)


def test_calls_spread_over_workers_and_run_in_parallel() -> None:
    async def scenario() -> tuple[list[int], float, list[int]]:
        async with started(TOOLBOX, workers=2) as pool:
            begin = time.perf_counter()
            pids = await asyncio.gather(*(pool.call("sleep", (0.2,), {}) for _ in range(4)))
            return pids, time.perf_counter() - begin, pool.pids

    pids, elapsed, workers = asyncio.run(scenario())
    assert sorted(set(pids)) == sorted(workers)
    assert pids.count(workers[0]) == pids.count(workers[1]) == 2
    assert elapsed < 0.75  # two rounds of 0.2 s, not four


async def load(pool: WorkerPool, callers: int, outcomes: list[tuple[float, Any]],
               done: asyncio.Event) -> None:
    """Callers calling ``sleep(0.02)`` back to back until ``done``; every outcome, timed."""

    async def caller() -> None:
        while not done.is_set():
            try:
                outcomes.append((time.monotonic(), await pool.call("sleep", (0.02,), {})))
            except RunnerError as error:
                outcomes.append((time.monotonic(), error))

    await asyncio.gather(*(caller() for _ in range(callers)))


def test_a_worker_killed_under_load_fails_only_its_running_call_and_is_restarted(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[list[tuple[float, Any]], int, list[int], list[int], float]:
        async with started(TOOLBOX, workers=2, name="crashy") as pool:
            before = list(pool.pids)
            victim = before[0]
            outcomes: list[tuple[float, Any]] = []
            done = asyncio.Event()
            running = asyncio.ensure_future(load(pool, 8, outcomes, done))
            await asyncio.sleep(0.3)
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            while len(pool.pids) < 2 or victim in pool.pids:
                assert time.monotonic() - killed_at < 15, "the worker was not restarted"
                await asyncio.sleep(0.01)
            restarted = time.monotonic()
            await asyncio.sleep(0.5)  # let the restarted worker serve for a while
            done.set()
            await asyncio.wait_for(running, 10)
            return outcomes, victim, before, pool.pids, restarted

    caplog.set_level(logging.INFO, logger="dosirak.runner")
    outcomes, victim, before, after, restarted = asyncio.run(scenario())
    errors = [outcome for _, outcome in outcomes if isinstance(outcome, Exception)]
    # Only the call running on the killed worker fails; the calls queued behind it move over.
    assert len(errors) == 1, errors
    assert errors[0].error_type == "WorkerDied"
    assert f"(pid {victim})" in str(errors[0])
    assert "died (signal 9: SIGKILL) while running sleep" in str(errors[0])
    newcomer = (set(after) - set(before)).pop()
    assert any(pid == newcomer for _, pid in outcomes), "the restarted worker served no call"
    assert sum(1 for moment, outcome in outcomes
               if moment > restarted and not isinstance(outcome, Exception)) > 20
    assert any("died (signal 9: SIGKILL)" in record.getMessage() and "restarting" in
               record.getMessage() for record in caplog.records if record.levelname == "ERROR")


@pytest.mark.parametrize(("method", "args", "reason"), [
    ("exit", (3,), "exit code 3"),
    ("segfault", (), "signal 11: SIGSEGV"),
])
def test_a_lone_worker_that_dies_is_replaced_and_queued_calls_still_succeed(
        method: str, args: tuple[Any, ...], reason: str) -> None:
    async def scenario() -> tuple[list[Any], int, int]:
        async with started(TOOLBOX, workers=1) as pool:
            first = pool.pids[0]
            crash = asyncio.ensure_future(pool.call(method, args, {}))
            await asyncio.sleep(0)  # the crash call is sent first, the others queue behind it
            queued = [asyncio.ensure_future(pool.call("add", (np.arange(2.0),), {"y": k}))
                      for k in range(3)]
            results = await asyncio.gather(crash, *queued, return_exceptions=True)
            return results, first, pool.pids[0]

    (crashed, *others), first, second = asyncio.run(scenario())
    assert isinstance(crashed, RunnerError) and crashed.error_type == "WorkerDied"
    assert f"died ({reason}) while running {method}" in str(crashed)
    for k, result in enumerate(others):
        np.testing.assert_array_equal(result, np.arange(2.0) + k + 0.5)
    assert second != first


def test_stop_lets_in_flight_calls_finish_then_refuses_new_ones() -> None:
    async def scenario() -> tuple[int, list[int]]:
        pool = WorkerPool(TOOLBOX, workers=2)
        await pool.start()
        pids = list(pool.pids)
        slow = asyncio.ensure_future(pool.call("sleep", (0.3,), {}))
        await asyncio.sleep(0.05)
        await pool.stop()
        assert not pool.ready
        with pytest.raises(RunnerError, match="not running"):
            await pool.call("identity", (1,), {})
        return await slow, pids

    pid, pids = asyncio.run(scenario())
    assert pid in pids
    for worker in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(worker, 0)


def test_stop_kills_a_worker_that_overruns_the_grace_period() -> None:
    async def scenario() -> tuple[BaseException | Any, float]:
        pool = WorkerPool(TOOLBOX)
        await pool.start()
        stuck = asyncio.ensure_future(pool.call("sleep", (30,), {}))
        await asyncio.sleep(0.1)
        begin = time.perf_counter()
        await pool.stop(grace_period=0.5)
        outcome = (await asyncio.gather(stuck, return_exceptions=True))[0]
        return outcome, time.perf_counter() - begin

    outcome, elapsed = asyncio.run(scenario())
    assert isinstance(outcome, RunnerError)
    assert "while the runner was stopping" in str(outcome)
    assert elapsed < 3


def test_workers_die_with_their_parent(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import asyncio, os, signal
        from dosirak.runner.runnable import Runnable, RunnableSpec
        from dosirak.runner.worker import WorkerPool

        class Idle(Runnable):
            @Runnable.method
            def noop(self):
                return None

        async def main():
            pool = WorkerPool(RunnableSpec.for_class(Idle, {}), workers=2)
            await pool.start()
            print(*pool.pids, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup of any kind

        asyncio.run(main())
    """))
    parent = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=60)
    assert parent.returncode == -signal.SIGKILL, parent.stderr
    orphans = [int(pid) for pid in parent.stdout.split()]
    assert len(orphans) == 2
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in orphans):
        assert time.monotonic() < deadline, "workers outlived their parent"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_pool_runs_on_uvloop_too() -> None:
    """``dosirak serve`` runs on uvloop: calls, crash detection and restart work there as well."""
    import uvloop

    async def scenario() -> tuple[Any, RunnerError, Any, int, int]:
        async with started(TOOLBOX) as pool:
            first = pool.pids[0]
            value = await pool.call("add", (np.ones(3),), {"y": 1.0})
            crash = asyncio.ensure_future(pool.call("exit", (4,), {}))
            await asyncio.sleep(0)
            after = asyncio.ensure_future(pool.call("identity", ("still here",), {}))
            outcome = (await asyncio.gather(crash, return_exceptions=True))[0]
            return value, outcome, await after, first, pool.pids[0]

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        value, crashed, after, first, second = runner.run(scenario())
    np.testing.assert_array_equal(value, np.full(3, 2.5))
    assert isinstance(crashed, RunnerError) and "died (exit code 4)" in str(crashed)
    assert after == "still here" and second != first


def test_prelaunched_workers_are_adopted_by_start_and_load_before_the_loop_runs() -> None:
    """``prelaunch`` spawns the children from plain code and sends their spec; ``start`` then
    adopts those very processes, which have been building the runnable meanwhile."""
    pool = WorkerPool(TOOLBOX, workers=2, name="early")
    pool.prelaunch()
    spawned = {process.pid for process, _ in pool._prelaunched.values()}
    assert len(spawned) == 2 and spawned <= children()
    time.sleep(0.3)  # the server's own set-up, while the children build the runnable

    async def scenario() -> tuple[set[int], Any, float]:
        begun = time.monotonic()
        await pool.start()
        waited = time.monotonic() - begun
        try:
            return set(pool.pids), await pool.call("add", (np.arange(2.0),), {"y": 1.0}), waited
        finally:
            await pool.stop(grace_period=5)

    pids, value, waited = asyncio.run(scenario())
    assert pids == spawned  # adopted, not spawned again
    np.testing.assert_array_equal(value, np.arange(2.0) + 1.5)
    assert not pool._prelaunched
    assert waited < 5


def test_prelaunched_workers_that_are_never_started_are_ended() -> None:
    """A server that gives up before its lifespan (or places the runner locally after all)
    leaves no child behind: ``stop`` and ``abandon`` end the prelaunched ones."""
    pool = WorkerPool(TOOLBOX, workers=1, name="unused")
    pool.prelaunch()
    (process, _), = pool._prelaunched.values()
    asyncio.run(pool.stop(grace_period=1))
    assert process.poll() is not None and not pool._prelaunched

    from dosirak.runner.runner import Runner

    runner = Runner(Toolbox, name="toolbox", runnable_init_params={"offset": 0.5}, workers=1)
    runner.prelaunch()
    (process, _), = runner._pool._prelaunched.values()

    async def local() -> Any:
        await runner.start("local")  # the placement says local after all
        try:
            return runner.ready, await runner.add.async_run(np.zeros(1))
        finally:
            await runner.stop()

    ready, value = asyncio.run(local())
    assert ready and process.poll() is not None
    np.testing.assert_array_equal(value, np.zeros(1) + 0.5)


async def running_on(note: Path, timeout: float = 15.0) -> int:
    """The pid a ``noted_*`` call wrote once it started running."""
    deadline = time.monotonic() + timeout
    while not note.exists() or not note.read_text():
        assert time.monotonic() < deadline, "the call never started"
        await asyncio.sleep(0.005)
    return int(note.read_text())


async def kill_under_call(pool: WorkerPool, note: Path, kills: int
                          ) -> tuple[BaseException | Any, list[int]]:
    """Call ``noted_sleep`` and SIGKILL the worker running it, ``kills`` times over; return the
    call's outcome and the pids killed."""
    call = asyncio.ensure_future(pool.call("noted_sleep", (str(note), 5.0), {}))
    victims = []
    for _ in range(kills):
        victims.append(await running_on(note))
        note.unlink()
        os.kill(victims[-1], signal.SIGKILL)
    return (await asyncio.gather(call, return_exceptions=True))[0], victims


def test_a_repeatable_call_whose_worker_is_killed_runs_once_more_on_another(
        tmp_path: Path) -> None:
    async def scenario() -> tuple[BaseException | Any, list[int], int]:
        async with started(TOOLBOX, workers=2, repeatable={"noted_sleep"}) as pool:
            outcome, victims = await kill_under_call(pool, tmp_path / "note", kills=1)
            return outcome, victims, await running_on(tmp_path / "note")

    answered_by, (victim,), ran_again_on = asyncio.run(scenario())
    assert answered_by == ran_again_on != victim


def test_a_repeatable_call_runs_once_more_only_once(tmp_path: Path) -> None:
    async def scenario() -> tuple[BaseException | Any, list[int]]:
        async with started(TOOLBOX, workers=2, repeatable={"noted_sleep"}) as pool:
            return await kill_under_call(pool, tmp_path / "note", kills=2)

    outcome, (first, second) = asyncio.run(scenario())
    assert first != second
    assert isinstance(outcome, RunnerUnavailable) and outcome.status == 503
    assert outcome.error_type == "WorkerDied" and outcome.retry_after > 0
    assert f"(pid {second}) of runner 'runner' died (signal 9: SIGKILL)" in str(outcome)
    assert "it ran once more already" in str(outcome)


def test_a_call_that_may_have_crashed_its_worker_is_not_run_again(tmp_path: Path) -> None:
    """A native fault may come from the input: running it again would kill a second worker."""
    async def scenario() -> tuple[BaseException | Any, list[int]]:
        async with started(TOOLBOX, workers=2, repeatable={"noted_segfault"}) as pool:
            note = tmp_path / "note"
            before = list(pool.pids)
            outcome = (await asyncio.gather(pool.call("noted_segfault", (str(note),), {}),
                                            return_exceptions=True))[0]
            crashed = await running_on(note)
            survivor = next(pid for pid in before if pid != crashed)
            assert alive(survivor)
            return outcome, [pid for pid in pool.pids if pid == survivor]

    outcome, survivors = asyncio.run(scenario())
    assert isinstance(outcome, RunnerUnavailable) and outcome.status == 503
    assert "died (signal 11: SIGSEGV)" in str(outcome)
    assert "the call may have caused the crash" in str(outcome)
    assert len(survivors) == 1  # the other worker never ran it


def test_a_call_whose_only_worker_is_killed_is_refused_with_a_retry_delay(
        tmp_path: Path) -> None:
    async def scenario() -> BaseException | Any:
        async with started(TOOLBOX, workers=1, repeatable={"noted_sleep"}) as pool:
            return (await kill_under_call(pool, tmp_path / "note", kills=1))[0]

    outcome = asyncio.run(scenario())
    assert isinstance(outcome, RunnerUnavailable) and outcome.status == 503
    assert "no other worker was live to run it again" in str(outcome)
    assert 0.1 <= outcome.retry_after < 30  # the restart delay and the time to start one


def test_calls_waiting_for_a_worker_that_cannot_be_restarted_are_refused_with_503(
        tmp_path: Path) -> None:
    marker = tmp_path / "broken"

    async def scenario() -> list[BaseException | Any]:
        async with started(RunnableSpec.for_class(BuildsOnce, {"marker": str(marker)})) as pool:
            running = asyncio.ensure_future(pool.call("sleep", (5.0,), {}))
            queued = asyncio.ensure_future(pool.call("sleep", (0.0,), {}))
            await asyncio.sleep(0.2)
            marker.touch()
            os.kill(pool.pids[0], signal.SIGKILL)
            return await asyncio.gather(running, queued, return_exceptions=True)

    running, queued = asyncio.run(scenario())
    assert isinstance(running, RunnerUnavailable)
    assert isinstance(queued, RunnerUnavailable) and queued.status == 503
    assert "no live worker: restarting one failed" in str(queued)
    assert queued.retry_after > 0
