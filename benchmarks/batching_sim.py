"""The adaptive batching dispatcher alone, in one process: throughput, latency, load shedding.

    .venv/bin/python benchmarks/batching_sim.py                      # every scenario, ~15 s
    .venv/bin/python benchmarks/batching_sim.py --model asyncio --loop uvloop

The model is the synthetic batch-friendly one of issue 3: a batch of n rows costs
``5 ms + 0.05 ms * n``. ``--model thread`` sleeps in a worker thread with ``time.sleep`` (how a
synchronous model runs off the event loop, exact to ~0.1 ms); ``--model asyncio`` awaits
``asyncio.sleep``, which wakes up on whole milliseconds (so an 8.2 ms batch lasts 9-10 ms: the
model, not the dispatcher, is then slower than the ideal). No worker process is involved: this
measures the dispatcher's decisions and its own overhead. ``benchmarks/batching.py`` measures the
whole runner through a worker process.

Scenarios:

- ``lone``: one caller, one row at a time: latency through the dispatcher versus a direct call.
- ``closed``: ``--callers`` callers in a loop, one row each; throughput against the ideal
  ``callers / (5 ms + callers * 0.05 ms)`` and the latency percentiles.
- ``overload``: open-loop arrivals of 8-row calls at ``--overload`` times the capacity; how many
  are refused at submit (and how fast), the goodput, the p99 of the accepted calls, the queue.

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np

from dosirak.exceptions import ServiceOverloaded
from dosirak.runner.dispatcher import Dispatcher

FIXED, PER_ROW = 0.005, 0.00005


def make_model(kind: str) -> Callable[[tuple[Any, ...], dict[str, Any]], Any]:
    def run(x: np.ndarray) -> np.ndarray:
        time.sleep(FIXED + PER_ROW * len(x))
        return x * 2

    async def thread_model(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, run, *args)

    async def asyncio_model(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        await asyncio.sleep(FIXED + PER_ROW * len(args[0]))
        return args[0] * 2

    return thread_model if kind == "thread" else asyncio_model


def percentiles(values: list[float]) -> tuple[float, float, float]:
    p50, p99 = np.percentile(values, [50, 99]) if values else (float("nan"), float("nan"))
    return p50 * 1000, p99 * 1000, (max(values) * 1000 if values else float("nan"))


async def lone(kind: str, calls: int = 200) -> dict[str, Any]:
    model = make_model(kind)
    dispatcher = Dispatcher(model, max_batch_size=64)
    x = np.ones((1, 4), np.float32)
    direct, batched = [], []
    for _ in range(calls):
        start = time.perf_counter()
        await model((x,), {})
        direct.append(time.perf_counter() - start)
        start = time.perf_counter()
        await dispatcher(x)
        batched.append(time.perf_counter() - start)
    added = (statistics.median(batched) - statistics.median(direct)) * 1000
    return {"scenario": "lone caller", "result": f"p50 {statistics.median(batched) * 1000:.2f} ms "
            f"vs {statistics.median(direct) * 1000:.2f} ms direct ({added:+.3f} ms)",
            "stats": dispatcher.stats()}


async def closed(kind: str, callers: int, max_batch_size: int, seconds: float) -> dict[str, Any]:
    dispatcher = Dispatcher(make_model(kind), max_batch_size=max_batch_size)
    latencies: list[float] = []
    running = True

    async def caller() -> None:
        x = np.ones((1, 4), np.float32)
        while running:
            start = time.perf_counter()
            await dispatcher(x)
            latencies.append(time.perf_counter() - start)

    tasks = [asyncio.create_task(caller()) for _ in range(callers)]
    await asyncio.sleep(0.5)  # warm up
    latencies.clear()
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    rate = len(latencies) / (time.perf_counter() - start)
    done = list(latencies)
    running = False
    await asyncio.gather(*tasks)
    ideal = min(callers, max_batch_size) / (FIXED + PER_ROW * min(callers, max_batch_size))
    p50, p99, worst = percentiles(done)
    return {"scenario": f"{callers} callers, max_batch_size {max_batch_size}",
            "result": f"{rate:,.0f} rows/s = {rate / ideal:.1%} of ideal {ideal:,.0f}; "
                      f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms",
            "stats": dispatcher.stats()}


async def overload(kind: str, factor: float, budget_ms: float, seconds: float) -> dict[str, Any]:
    dispatcher = Dispatcher(make_model(kind), max_batch_size=64, max_latency_ms=budget_ms)
    capacity = 64 / (FIXED + PER_ROW * 64)
    accepted: list[float] = []
    refused: list[float] = []
    late: list[float] = []
    depth: list[int] = []

    async def one(x: np.ndarray) -> None:
        start = time.perf_counter()
        try:
            await dispatcher(x)
        except ServiceOverloaded as error:
            (late if "waited" in str(error) else refused).append(time.perf_counter() - start)
        else:
            accepted.append(time.perf_counter() - start)

    x = np.ones((8, 4), np.float32)
    tasks = []
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        while len(tasks) < elapsed * factor * capacity / 8:
            tasks.append(asyncio.create_task(one(x)))
        depth.append(dispatcher.stats().queued_rows)
        await asyncio.sleep(0.0005)
    await asyncio.gather(*tasks)
    goodput = len(accepted) * 8 / seconds
    p50, p99, worst = percentiles(accepted)
    return {"scenario": f"open loop at {factor:g}x capacity, budget {budget_ms:g} ms",
            "result": f"{len(tasks)} calls: {len(accepted)} answered (p50 {p50:.1f} ms, p99 "
                      f"{p99:.1f} ms, max {worst:.1f} ms), {len(refused)} refused at submit "
                      f"(median {statistics.median(refused) * 1e6:.0f} us), {len(late)} failed "
                      f"late; goodput {goodput:,.0f} rows/s = {goodput / capacity:.0%} of "
                      f"capacity; queue at most {max(depth)} rows",
            "stats": dispatcher.stats()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["thread", "asyncio"], default="thread")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--overload", type=float, default=5.0)
    parser.add_argument("--budget-ms", type=float, default=100.0)
    parser.add_argument("--verbose", action="store_true", help="print the dispatcher's stats")
    options = parser.parse_args()

    scenarios: list[Callable[[], Coroutine[Any, Any, dict[str, Any]]]] = [
        lambda: lone(options.model),
        lambda: closed(options.model, options.callers, 64, options.seconds),
        lambda: closed(options.model, options.callers, 100, options.seconds),
        lambda: closed(options.model, 16, 64, options.seconds),
        lambda: overload(options.model, options.overload, options.budget_ms, options.seconds),
    ]
    print(f"model: {options.model} sleep, loop: {options.loop}\n")
    print("| scenario | result |\n|---|---|")
    for scenario in scenarios:
        if options.loop == "uvloop":
            import uvloop

            result = uvloop.run(scenario())
        else:
            result = asyncio.run(scenario())
        print(f"| {result['scenario']} | {result['result']} |")
        if options.verbose:
            print(result["stats"])


if __name__ == "__main__":
    main()
