"""The adaptive batching dispatcher, driven by real asyncio tasks against sleep-based models.

The policy tests (when a batch runs, how full, what is refused) run on virtual time
(:class:`VirtualTimeLoop`): the clock moves only while nothing is ready to run, straight to the
next timer, so a model that sleeps 5 ms takes exactly 5 ms and a busy machine changes nothing.
Their bounds state the dispatcher's guarantees, not how fast this machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dosirak.exceptions import InvalidArgument, RunnerError, ServiceOverloaded
from dosirak.runner import containers
from dosirak.runner.dispatcher import DEFAULT_MAX_LATENCY_MS, BatchCost, Dispatcher

# Correctness tests submit everything at once and are about results, not time: let the queue hold
# it all and give it a budget that a loaded machine cannot break.
QUEUE = 10_000
BUDGET = 60_000


class _JumpingSelector:
    """The loop's selector, except that a wait for the next timer moves the clock there at once
    (when nothing is ready); a wait with no timer (a thread's answer) really waits."""

    def __init__(self, selector: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._selector = selector
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        events = self._selector.select(0 if timeout is not None else None)
        if not events and timeout:
            self._loop.now += timeout
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._selector, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: ``time()`` starts at 0 and jumps to the next timer
    whenever every ready callback has run. Work on the loop takes no time at all."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self._selector = _JumpingSelector(self._selector, self)  # type: ignore[assignment]

    def time(self) -> float:
        return self.now


def on_virtual_time(main: Any) -> Any:
    """Run the coroutine ``main`` on a :class:`VirtualTimeLoop`; return its result."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main)


def now() -> float:
    return asyncio.get_running_loop().time()


class Model:
    """A batchable model called with merged batches; it records every batch's size."""

    def __init__(self, function: Callable[..., Any], dim: int = 0, sleep: float = 0.0) -> None:
        self.function = function
        self.dim = dim
        self.sleep = sleep
        self.batch_rows: list[int] = []

    async def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self.batch_rows.append(containers.describe_call(args, kwargs, self.dim)[0])
        await asyncio.sleep(self.sleep)
        return self.function(*args, **kwargs)


class SleepModel:
    """The synthetic batch-friendly model: a batch takes ``fixed + per_row * rows`` seconds (on
    virtual time, exactly)."""

    def __init__(self, fixed: float = 0.005, per_row: float = 0.00005) -> None:
        self.fixed = fixed
        self.per_row = per_row
        self.batch_rows: list[int] = []
        self.busy = 0.0  # seconds spent inside the model

    def cost(self, rows: int) -> float:
        return self.fixed + self.per_row * rows

    async def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x = args[0]
        self.batch_rows.append(len(x))
        self.busy += self.cost(len(x))
        await asyncio.sleep(self.cost(len(x)))
        return x * 2


async def submit_all(dispatcher: Dispatcher, calls: list[tuple[tuple[Any, ...], dict[str, Any]]]
                     ) -> list[Any]:
    return await asyncio.gather(*(dispatcher(*args, **kwargs) for args, kwargs in calls))


# -- batched results equal unbatched results -----------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 13), min_size=1, max_size=12),
    layout=st.sampled_from(["rows", "columns", "columns-to-rows"]),
    dtype=st.sampled_from(["float32", "float64", "int16"]),
    max_batch_size=st.integers(1, 6),
    max_in_flight=st.integers(1, 3),
)
def test_numpy_results_equal_unbatched_results(
    sizes: list[int], layout: str, dtype: str, max_batch_size: int, max_in_flight: int
) -> None:
    # rows: (n, 3) -> (n, 3); columns: (3, n) -> (3, n); columns-to-rows: (3, n) -> (n,)
    batch_dim = {"rows": (0, 0), "columns": (1, 1), "columns-to-rows": (1, 0)}[layout]

    def predict(x: np.ndarray) -> np.ndarray:
        return x.sum(axis=0) if layout == "columns-to-rows" else x * 3 - 1

    model = Model(predict, dim=batch_dim[0])
    inputs = []
    for seed, n in enumerate(sizes):
        shape = (n, 3) if batch_dim[0] == 0 else (3, n)
        inputs.append((np.arange(np.prod(shape)).reshape(shape) + 100 * seed).astype(dtype))

    async def main() -> list[Any]:
        dispatcher = Dispatcher(model, max_batch_size=max_batch_size, batch_dim=batch_dim,
                                max_in_flight=max_in_flight, max_queue_rows=QUEUE,
                                max_latency_ms=BUDGET)
        results = await submit_all(dispatcher, [((x,), {}) for x in inputs])
        assert dispatcher.stats().queued_rows == 0
        return results

    results = asyncio.run(main())
    for x, got in zip(inputs, results, strict=True):
        expected = predict(x)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    assert max(model.batch_rows) <= max_batch_size
    assert sum(model.batch_rows) == sum(sizes)


def test_calls_larger_than_a_batch_are_split_and_put_back_in_order() -> None:
    model = Model(lambda x: x + 0.5, sleep=0.002)
    big = np.arange(230, dtype=np.float64).reshape(115, 2)
    small = [np.full((3, 2), i, dtype=np.float64) for i in range(5)]

    async def main() -> list[Any]:
        dispatcher = Dispatcher(model, max_batch_size=16, max_in_flight=2, max_queue_rows=QUEUE,
                                max_latency_ms=BUDGET)
        return await submit_all(dispatcher, [((x,), {}) for x in [small[0], big, *small[1:]]])

    results = asyncio.run(main())
    np.testing.assert_array_equal(results[1], big + 0.5)
    for x, got in zip(small, [results[0], *results[2:]], strict=True):
        np.testing.assert_array_equal(got, x + 0.5)
    assert max(model.batch_rows) == 16 and sum(model.batch_rows) == 115 + 15
    assert len(model.batch_rows) >= 9  # 130 rows cannot fit in fewer batches of 16


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=8),
    labelled=st.lists(st.booleans(), min_size=8, max_size=8),
    max_batch_size=st.integers(2, 7),
)
def test_pandas_results_equal_unbatched_results(
    sizes: list[int], labelled: list[bool], max_batch_size: int
) -> None:
    def keeps_index(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
        return frame.assign(z=frame.a * 2 + frame.b), frame.b.rename("b2") * 2

    frames = []
    for seed, n in enumerate(sizes):
        frame = pd.DataFrame({"a": np.arange(n) + seed * 10, "b": np.linspace(0, 1, n)})
        if labelled[seed]:
            frame.index = pd.Index(np.arange(n) * 7 + 1000 + seed)
        frames.append(frame)
    model = Model(keeps_index)

    async def main() -> list[Any]:
        dispatcher = Dispatcher(model, max_batch_size=max_batch_size, max_queue_rows=QUEUE,
                                max_latency_ms=BUDGET)
        return await submit_all(dispatcher, [((frame,), {}) for frame in frames])

    for frame, (got_frame, got_series) in zip(frames, asyncio.run(main()), strict=True):
        want_frame, want_series = keeps_index(frame)
        pd.testing.assert_frame_equal(got_frame, want_frame, check_exact=True)
        pd.testing.assert_series_equal(got_series, want_series, check_exact=True)
    assert max(model.batch_rows) <= max_batch_size


def test_pandas_model_that_builds_a_new_frame() -> None:
    def fresh(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"score": frame["a"].to_numpy() * 1.5})

    frames = [pd.DataFrame({"a": np.arange(n, dtype=np.float64) + n}) for n in (3, 1, 6, 2)]

    async def main() -> list[Any]:
        dispatcher = Dispatcher(Model(fresh), max_batch_size=4, max_latency_ms=BUDGET)
        return await submit_all(dispatcher, [((frame,), {}) for frame in frames])

    for frame, got in zip(frames, asyncio.run(main()), strict=True):
        pd.testing.assert_frame_equal(got, fresh(frame), check_exact=True)


def test_list_and_dict_payloads_equal_unbatched_results() -> None:
    def predict(texts: list[str], *, weights: np.ndarray) -> dict[str, Any]:
        return {"lengths": [len(text) for text in texts], "scaled": weights * 2}

    calls = [
        ((["a", "bb", "ccc"],), {"weights": np.array([1.0, 2.0, 3.0])}),
        ((["dddd"],), {"weights": np.array([4.0])}),
        (([f"{i}" * i for i in range(1, 12)],), {"weights": np.arange(11.0)}),
    ]
    model = Model(predict)

    async def main() -> list[Any]:
        return await submit_all(Dispatcher(model, max_batch_size=5, max_queue_rows=QUEUE,
                                           max_latency_ms=BUDGET), calls)

    for (args, kwargs), got in zip(calls, asyncio.run(main()), strict=True):
        want = predict(*args, **kwargs)
        assert got["lengths"] == want["lengths"]
        np.testing.assert_array_equal(got["scaled"], want["scaled"])
    assert max(model.batch_rows) <= 5 and len(model.batch_rows) >= 3


def test_calls_that_cannot_merge_run_in_separate_batches() -> None:
    def predict(x: Any) -> Any:
        return [value * 2 for value in x] if isinstance(x, list) else x * 2

    model = Model(predict, sleep=0.001)
    inputs = [np.ones((2, 3), np.float32), np.ones((2, 3), np.float64), np.ones((1, 4)),
              np.ones((3, 3), np.float32), [1, 2], np.ones((2, 3), np.float64)]

    async def main() -> list[Any]:
        dispatcher = Dispatcher(model, max_batch_size=64, max_latency_ms=BUDGET)
        return await submit_all(dispatcher, [((x,), {}) for x in inputs])

    for x, got in zip(inputs, asyncio.run(main()), strict=True):
        if isinstance(x, list):
            assert got == predict(x)
        else:
            assert got.dtype == x.dtype
            np.testing.assert_array_equal(got, predict(x))


# -- the cost model and the decisions ------------------------------------------------------------


def test_batch_cost_learns_the_fixed_and_per_row_parts() -> None:
    cost = BatchCost()
    rng = np.random.default_rng(0)
    for rows in rng.integers(1, 65, size=200):
        cost.add(int(rows), 0.005 + 0.00005 * rows + rng.normal(0, 0.0001))
    assert cost.fixed == pytest.approx(0.005, abs=0.0003)
    assert cost.per_row == pytest.approx(0.00005, abs=0.00001)
    assert cost.error < 0.0003
    for _ in range(100):  # all batches full from now on: the slope cannot be seen, it is kept
        cost.add(64, 0.005 + 0.00005 * 64)
    assert cost.per_row == pytest.approx(0.00005, abs=0.00001)
    assert cost.estimate(1) == pytest.approx(0.00505, abs=0.0004)


def test_a_lone_call_runs_at_once() -> None:
    model = SleepModel()

    async def main() -> list[float]:
        dispatcher = Dispatcher(model, max_batch_size=64, max_latency_ms=BUDGET)
        latencies = []
        for _ in range(25):
            start = now()
            await dispatcher(np.ones((1, 4)))
            latencies.append(now() - start)
        return latencies

    latencies = on_virtual_time(main())
    # No wait before the batch or after it: the model's own time, every time.
    assert max(latencies) == pytest.approx(model.cost(1), abs=1e-9)


def test_a_lone_caller_after_a_burst_is_not_held_back() -> None:
    model = SleepModel()

    async def main() -> tuple[int, list[float], float]:
        dispatcher = Dispatcher(model, max_batch_size=32, max_latency_ms=BUDGET)
        x = np.ones((1, 4))
        for _ in range(6):  # bursts of 32 concurrent calls teach it to wait for followers
            await asyncio.gather(*(dispatcher(x) for _ in range(32)))
        stats = dispatcher.stats()
        # Each burst ran as one batch (its calls are submitted in one turn of the loop).
        assert stats.burstiness > 0.5 and stats.batch_sizes == {32: 6}
        latencies = []
        for _ in range(12):
            start = now()
            await dispatcher(x)
            latencies.append(now() - start)
        return dispatcher.stats().held_batches - stats.held_batches, latencies, \
            stats.cost_fixed_ms / 1000

    held, latencies, fixed = on_virtual_time(main())
    # At most the first lone call waits for followers that do not come, and at most the fixed
    # cost learned (from full batches only: all of their cost); the rest run at once.
    assert held <= 1
    assert max(latencies) <= model.cost(1) + fixed + 1e-9
    assert sorted(latencies)[-2] == pytest.approx(model.cost(1), abs=1e-9)


def test_independent_calls_at_a_light_load_are_not_held_back() -> None:
    """Random (Poisson) arrivals at 60 calls/s, a third of the model's unbatched capacity."""
    model = SleepModel()
    rng = np.random.default_rng(7)
    arrivals = np.cumsum(rng.exponential(1 / 60, size=200))

    async def main() -> tuple[list[tuple[float, float]], Any]:
        dispatcher = Dispatcher(model, max_batch_size=64, max_latency_ms=BUDGET)
        latencies = [(0.0, 0.0)] * len(arrivals)  # (arrival, latency) of each call

        async def one(index: int) -> None:
            start = now()
            await dispatcher(np.ones((1, 4)))
            latencies[index] = (start, now() - start)

        tasks = []
        for index, due in enumerate(arrivals):
            await asyncio.sleep(due - now())
            tasks.append(asyncio.create_task(one(index)))
        await asyncio.gather(*tasks)
        return latencies, dispatcher.stats()

    latencies, stats = on_virtual_time(main())
    # A call that finds the model busy waits for it (and joins the next batch), the others run
    # at once: a few batches are held for a call right behind, most are not, and no call waits
    # longer than the batch ahead of it, a hold and its own batch.
    assert len(latencies) == len(arrivals)
    assert stats.held_batches <= 0.2 * stats.batches
    slowest = 2 * model.cost(2) + model.fixed
    assert max(latency for _, latency in latencies) <= slowest
    # A call arriving after everything before it was answered finds the model idle: it runs at
    # once, but for the few held for a follower that seemed likely: at most the fixed cost
    # learned (from batches of 1-2 rows, hardly less than all of it).
    idle = [latency for (arrival, latency), before in zip(latencies[1:], arrivals, strict=False)
            if arrival - before > slowest]
    assert len(idle) > 40
    assert max(idle) <= model.cost(1) + model.cost(2)
    assert sum(1 for latency in idle if latency <= model.cost(1) + 1e-9) >= 0.8 * len(idle)


def test_a_few_callers_in_a_loop_are_batched_without_waiting_for_more() -> None:
    """4 callers, room for 64: once the 4 are in, nobody else is coming, so the batch runs."""
    model = SleepModel()

    async def main() -> tuple[list[float], list[int]]:
        dispatcher = Dispatcher(model, max_batch_size=64, max_latency_ms=BUDGET)
        latencies: list[float] = []
        running = True

        async def caller() -> None:
            x = np.ones((1, 4))
            while running:
                start = now()
                await dispatcher(x)
                latencies.append(now() - start)

        tasks = [asyncio.create_task(caller()) for _ in range(4)]
        await asyncio.sleep(0.2)
        latencies.clear()
        batches = len(model.batch_rows)
        await asyncio.sleep(0.4)
        running = False
        await asyncio.gather(*tasks)
        return latencies, model.batch_rows[batches:]

    latencies, sizes = on_virtual_time(main())
    assert sizes.count(4) >= 0.9 * len(sizes)
    # Each call is answered by the batch of the four, run at once: waiting for a fifth row would
    # cost up to fixed / 4 = 1.25 ms per batch.
    assert sum(1 for latency in latencies
               if latency <= model.cost(4) + 1e-9) >= 0.9 * len(latencies)


def test_closed_loop_throughput_reaches_the_ideal_within_the_budget() -> None:
    """64 callers in a loop, one row each; ideal = 64 / (5 ms + 64 x 0.05 ms) = 7,805 rows/s."""
    model = SleepModel()
    ideal = 64 / model.cost(64)

    async def main() -> tuple[float, float, list[float], list[int], list[float]]:
        dispatcher = Dispatcher(model, max_batch_size=64)
        latencies: list[float] = []
        refused: list[float] = []
        running = True

        async def caller(seed: int) -> None:
            x = np.full((1, 4), seed, dtype=np.float32)
            while running:
                start = now()
                try:
                    y = await dispatcher(x)
                except ServiceOverloaded:
                    refused.append(now() - start)
                    continue
                latencies.append(now() - start)
                assert y[0, 0] == seed * 2

        tasks = [asyncio.create_task(caller(seed)) for seed in range(64)]
        await asyncio.sleep(0.3)  # warm up: the cost model and the burst statistics learn
        latencies.clear()
        busy, start, batches = model.busy, now(), len(model.batch_rows)
        await asyncio.sleep(1.5)
        elapsed = now() - start
        rate, busy = len(latencies) / elapsed, (model.busy - busy) / elapsed
        sizes = model.batch_rows[batches:]
        running = False
        await asyncio.gather(*tasks)
        return rate, busy, latencies, sizes, refused

    rate, busy, latencies, sizes, refused = on_virtual_time(main())
    p99 = np.percentile(latencies, 99) * 1000
    print(f"closed loop: {rate:.0f} rows/s = {rate / ideal:.1%} of ideal; p99 {p99:.1f} ms; "
          f"model busy {busy:.1%} of the time; {sizes.count(64)} of {len(sizes)} batches full")
    # The dispatcher's share, without the machine's: the model works nearly all the time, on
    # full batches, and nothing is refused.
    assert busy >= 0.95
    assert not refused
    assert sizes.count(64) >= 0.95 * len(sizes)
    assert rate >= 0.95 * ideal
    assert p99 <= DEFAULT_MAX_LATENCY_MS


def test_overload_refuses_early_and_keeps_accepted_calls_within_budget() -> None:
    """Open-loop arrivals at 5x capacity: 8-row calls at 5 x 7,805 rows/s for 1.5 s."""
    model = SleepModel()
    capacity = 64 / model.cost(64)
    budget_ms = 50.0
    calls_per_second = 5 * capacity / 8

    async def main() -> dict[str, Any]:
        dispatcher = Dispatcher(model, max_batch_size=64, max_latency_ms=budget_ms)
        accepted: list[float] = []
        refused: list[float] = []
        late: list[float] = []
        depth: list[tuple[float, int]] = []
        retry_after: list[float] = []

        async def one(x: np.ndarray) -> None:
            start = now()
            try:
                await dispatcher(x)
            except ServiceOverloaded as error:
                (late if "waited" in str(error) else refused).append(now() - start)
                retry_after.append(error.retry_after)
            else:
                accepted.append(now() - start)

        tasks = []
        x = np.ones((8, 4))
        start = now()
        while (elapsed := now() - start) < 1.5:
            while len(tasks) < elapsed * calls_per_second:
                tasks.append(asyncio.create_task(one(x)))
            depth.append((elapsed, dispatcher.stats().queued_rows))
            await asyncio.sleep(0.0005)
        await asyncio.gather(*tasks)
        return {"accepted": accepted, "refused": refused, "late": late, "depth": depth,
                "retry_after": retry_after, "calls": len(tasks)}

    result = on_virtual_time(main())
    accepted, refused = result["accepted"], result["refused"]
    p99 = np.percentile(accepted, 99) * 1000
    goodput = len(accepted) * 8 / 1.5
    print(f"overload: {result['calls']} calls, {len(accepted)} accepted, p99 {p99:.1f} ms; "
          f"goodput {goodput:.0f} rows/s = {goodput / capacity:.0%} of capacity; {len(refused)} "
          f"refused at submit; {len(result['late'])} failed late; "
          f"max queue {max(d for _, d in result['depth'])} rows")
    assert len(refused) > result["calls"] * 0.5  # 4 in 5 calls cannot be served
    assert max(refused) == 0  # refused at submit, not after a wait
    assert len(result["late"]) < len(refused) * 0.1
    assert max(accepted) * 1000 <= budget_ms  # every accepted call within its budget
    # The queue holds what the budget allows: about budget / batch cost full batches, once the
    # batch cost is known (before, max_queue_rows bounds it).
    assert max(rows for _, rows in result["depth"]) <= 16 * 64
    assert max(rows for elapsed, rows in result["depth"] if elapsed > 0.2) <= 64 * (50 / 8.2 + 2)
    assert min(result["retry_after"]) > 0
    assert goodput >= 0.9 * capacity


def test_overload_keeps_the_dispatchers_memory_flat() -> None:
    """At 5x capacity for 2 s, what the dispatcher holds stops growing once the queue is full."""
    model = SleepModel()
    calls_per_second = 5 * (64 / model.cost(64)) / 8

    async def main() -> tuple[int, int, int]:
        dispatcher = Dispatcher(model, max_batch_size=64, max_latency_ms=50.0)
        x = np.ones((8, 4))
        pending: set[asyncio.Task[None]] = set()

        async def one() -> None:
            with contextlib.suppress(ServiceOverloaded):
                await dispatcher(x)

        def held() -> int:  # bytes allocated by the runner package and still alive
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(True, "*dosirak/runner/*")])
            return sum(stat.size for stat in snapshot.statistics("filename"))

        tracemalloc.start()
        try:
            start, sent, early = now(), 0, None
            while (elapsed := now() - start) < 2.0:
                while sent < elapsed * calls_per_second:
                    task = asyncio.create_task(one())
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    sent += 1
                if early is None and elapsed > 0.5:
                    early = held()
                await asyncio.sleep(0.001)
            late = held()
        finally:
            tracemalloc.stop()
        await asyncio.gather(*pending)
        return early or 0, late, sent

    early, late, sent = on_virtual_time(main())
    print(f"overload memory: {early / 1024:.0f} KiB held at 0.5 s, {late / 1024:.0f} KiB at 2 s, "
          f"{sent} calls")
    assert sent > 2500
    assert late - early < 512 * 1024, (early, late)  # no growth with the calls refused


# -- failures ------------------------------------------------------------------------------------


def test_an_exception_from_the_model_reaches_every_caller_of_the_batch() -> None:
    class BadRow(ValueError):
        pass

    async def execute(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        await asyncio.sleep(0.002)
        if (args[0] < 0).any():
            raise BadRow("negative feature in the batch")
        return args[0]

    async def main() -> list[Any]:
        dispatcher = Dispatcher(execute, max_batch_size=64, max_latency_ms=BUDGET)
        await dispatcher(np.ones((1, 2)))  # a batch of one, so the others queue behind it
        first = asyncio.ensure_future(dispatcher(np.ones((1, 2))))
        await asyncio.sleep(0)
        batch = [dispatcher(np.full((1, 2), -1.0))]
        batch += [dispatcher(np.ones((1, 2))) for _ in range(4)]
        results = await asyncio.gather(first, *batch, return_exceptions=True)
        results.append(await dispatcher(np.ones((2, 2))))  # later calls still work
        return results

    results = asyncio.run(main())
    assert isinstance(results[0], np.ndarray)
    for error in results[1:6]:
        assert type(error) is BadRow and str(error) == "negative feature in the batch"
    assert len({id(error) for error in results[1:6]}) == 5  # each caller its own traceback
    assert results[6].shape == (2, 2)


def test_an_exception_that_cannot_be_copied_is_shared() -> None:
    class Picky(Exception):
        def __init__(self, code: int, detail: str) -> None:
            super().__init__(f"{code}: {detail}")

    async def execute(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        await asyncio.sleep(0.002)
        raise Picky(7, "no")

    async def main() -> list[Any]:
        dispatcher = Dispatcher(execute, max_batch_size=8, max_latency_ms=BUDGET)
        first = asyncio.ensure_future(dispatcher(np.ones(1)))
        await asyncio.sleep(0)
        rest = [dispatcher(np.ones(1)) for _ in range(3)]
        return await asyncio.gather(first, *rest, return_exceptions=True)

    for error in asyncio.run(main()):
        assert type(error) is Picky and str(error) == "7: no"


def test_an_output_with_the_wrong_row_count_fails_clearly() -> None:
    async def execute(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        await asyncio.sleep(0.001)
        return args[0][:1]  # one row for the whole batch

    async def main() -> list[Any]:
        dispatcher = Dispatcher(execute, max_batch_size=8, name="clf.predict",
                                max_latency_ms=BUDGET)
        await dispatcher(np.ones((1, 2)))
        return await asyncio.gather(*(dispatcher(np.ones((2, 2))) for _ in range(3)),
                                    return_exceptions=True)

    for error in asyncio.run(main()):
        assert isinstance(error, RunnerError)
        assert "'clf.predict'" in str(error) and "one output row per input row" in str(error)


def test_unbatchable_arguments_are_refused_at_submit() -> None:
    async def main() -> None:
        dispatcher = Dispatcher(Model(lambda x, k: x), max_batch_size=8)
        with pytest.raises(InvalidArgument, match=r"kwargs\['k'\] is a float"):
            await dispatcher(np.ones(2), k=0.5)

    asyncio.run(main())


def test_queued_calls_fail_when_their_budget_runs_out_instead_of_hanging() -> None:
    async def execute(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        await asyncio.sleep(0.3)  # the model stalls
        return args[0]

    async def main() -> tuple[list[Any], list[float]]:
        dispatcher = Dispatcher(execute, max_batch_size=4, max_latency_ms=40)
        stalled = asyncio.ensure_future(dispatcher(np.ones((4, 1))))
        await asyncio.sleep(0.01)
        start = now()
        waiting = [asyncio.ensure_future(dispatcher(np.ones((1, 1)))) for _ in range(3)]
        done = await asyncio.gather(*waiting, return_exceptions=True)
        elapsed = now() - start
        await stalled
        return done, [elapsed]

    done, (elapsed,) = on_virtual_time(main())
    for error in done:
        assert isinstance(error, ServiceOverloaded) and "waited" in str(error)
    assert 0.04 <= elapsed < 0.06  # failed at its 40 ms budget, not after the 300 ms stall


def test_a_cancelled_caller_leaves_nothing_behind() -> None:
    model = Model(lambda x: x, sleep=0.02)

    async def main() -> Any:
        dispatcher = Dispatcher(model, max_batch_size=4, max_latency_ms=BUDGET)
        first = asyncio.ensure_future(dispatcher(np.ones((1, 1))))
        await asyncio.sleep(0.005)
        doomed = asyncio.ensure_future(dispatcher(np.zeros((10, 1))))
        kept = asyncio.ensure_future(dispatcher(np.full((2, 1), 3.0)))
        await asyncio.sleep(0)
        doomed.cancel()
        await first
        result = await kept
        return result, dispatcher.stats()

    result, stats = asyncio.run(main())
    np.testing.assert_array_equal(result, np.full((2, 1), 3.0))
    assert stats.queued_rows == 0 and stats.queued_calls == 0
    assert sum(model.batch_rows) == 3  # the cancelled call's 10 rows never ran


def test_aclose_fails_queued_calls_and_lets_running_ones_finish() -> None:
    async def main() -> tuple[Any, list[Any], Exception]:
        dispatcher = Dispatcher(Model(lambda x: x, sleep=0.02), max_batch_size=2,
                                max_latency_ms=BUDGET)
        running = asyncio.ensure_future(dispatcher(np.ones((2, 1))))
        await asyncio.sleep(0.005)
        queued = [asyncio.ensure_future(dispatcher(np.ones((1, 1)))) for _ in range(3)]
        await asyncio.sleep(0)
        await dispatcher.aclose()
        results = await asyncio.gather(*queued, return_exceptions=True)
        with pytest.raises(RunnerError, match="closed") as refused:
            await dispatcher(np.ones((1, 1)))
        return await running, results, refused.value

    done, queued, _ = asyncio.run(main())
    assert done.shape == (2, 1)
    for error in queued:
        assert isinstance(error, RunnerError) and "closed before this call ran" in str(error)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size must be an int >= 1"),
        ({"max_batch_size": 8, "max_latency_ms": 0}, "max_latency_ms must be a number > 0"),
        ({"max_batch_size": 8, "max_in_flight": 0}, "max_in_flight must be an int >= 1"),
        ({"max_batch_size": 8, "batch_dim": (0, "1")}, "batch_dim must be an int or"),
        ({"max_batch_size": 8, "max_queue_rows": 0}, "max_queue_rows must be an int >= 1"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        Dispatcher(Model(lambda x: x), **options)


# -- observing batches ---------------------------------------------------------------------------


def test_the_batch_observer_sees_every_batch_that_ran_with_its_rows_and_time() -> None:
    seen: list[tuple[int, float]] = []
    fail_next = [False]

    async def execute(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        await asyncio.sleep(0.002)
        if fail_next[0]:
            fail_next[0] = False
            raise ValueError("the model refused this batch")
        return args[0] * 2

    async def main() -> None:
        dispatcher = Dispatcher(execute, max_batch_size=8, max_latency_ms=BUDGET,
                                on_batch=lambda rows, seconds: seen.append((rows, seconds)))
        outputs = await submit_all(dispatcher, [((np.ones((n, 2)),), {}) for n in (3, 5, 6)])
        assert [len(output) for output in outputs] == [3, 5, 6]
        fail_next[0] = True
        with pytest.raises(ValueError, match="refused"):
            await dispatcher(np.ones((2, 2)))
        assert dispatcher.stats().batches == len(seen)

    asyncio.run(main())
    # 14 rows in batches of at most 8, each seen once with the time the model took; the batch
    # that failed is not a batch that ran.
    assert sum(rows for rows, _ in seen) == 14 and all(rows <= 8 for rows, _ in seen)
    assert all(0.002 <= seconds < 5 for _, seconds in seen)

