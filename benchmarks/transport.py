"""Runner transport benchmark: what a call costs through a worker process versus in-process.

    .venv/bin/python benchmarks/transport.py
    .venv/bin/python benchmarks/transport.py --calls 5000 --repeats 3     # quick look

The runnable's one method returns its argument. Two payloads:

- ``small``: a 4-element float32 array, so the figure is the per-call overhead of the hop
  (encode, two socket writes, two reads, decode, two event-loop wake-ups);
- ``4MB``: a 4 MiB float32 array (1,048,576 values) that crosses the process boundary twice.

Contenders, run one after the other within each repeat (so their ratios come from one run):

- ``in-process``: calling the method directly, what ``init_local()`` does with no executor;
- ``in-process, 2 copies``: the method plus two ``ndarray.copy()`` (the memory traffic of a round
  trip that copies once each way; the floor for any copying transport);
- ``worker, 1 caller``: ``await pool.call(...)`` back to back from one task (latency);
- ``worker, N callers``: N concurrent tasks (throughput: calls pipeline on the worker).

Figures are medians over ``--repeats``. CPU columns are CPU time per call in the calling process
and in the worker (from /proc), which other processes on the machine disturb less than wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

import dosirak
from dosirak.runner.runnable import Runnable, RunnableSpec
from dosirak.runner.worker import WorkerPool

MIB = 1 << 20


class Identity(Runnable):
    @Runnable.method
    def identity(self, x: Any) -> Any:
        return x


def child_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc); 0.0 elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(run: Callable[[], Awaitable[None]], calls: int,
                  worker_pid: int | None) -> dict[str, float]:
    child_before = child_cpu_seconds(worker_pid) if worker_pid else 0.0
    cpu_before = time.process_time()
    start = time.perf_counter()
    await run()
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_before
    child = (child_cpu_seconds(worker_pid) - child_before) if worker_pid else 0.0
    return {"us": wall / calls * 1e6, "cpu_us": cpu / calls * 1e6,
            "child_cpu_us": child / calls * 1e6}


async def bench(calls: int, big_calls: int, callers: int, repeats: int) -> list[dict[str, Any]]:
    small = np.arange(4, dtype=np.float32)
    big = np.random.default_rng(0).random(MIB, dtype=np.float32)  # 4 MiB
    method = Identity().identity
    pool = WorkerPool(RunnableSpec.for_class(Identity, {}), workers=1, name="bench")
    await pool.start()
    pid = pool.pids[0]

    def direct(x: np.ndarray, count: int, copies: bool = False) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            for _ in range(count):
                result = method(x.copy()).copy() if copies else method(x)
            assert result.shape == x.shape
        return run

    def sequential(x: np.ndarray, count: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            call = pool.call
            for _ in range(count):
                result = await call("identity", (x,), {})
            assert np.array_equal(result, x)
        return run

    def concurrent(x: np.ndarray, count: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            async def caller() -> None:
                for _ in range(count // callers):
                    await pool.call("identity", (x,), {})
            await asyncio.gather(*(caller() for _ in range(callers)))
        return run

    cases: list[tuple[str, str, Callable[[], Awaitable[None]], int, int | None, int]] = [
        ("small", "in-process", direct(small, calls), calls, None, small.nbytes),
        ("small", "worker, 1 caller", sequential(small, calls), calls, pid, small.nbytes),
        ("small", f"worker, {callers} callers", concurrent(small, calls), calls, pid,
         small.nbytes),
        ("4MB", "in-process", direct(big, big_calls), big_calls, None, big.nbytes),
        ("4MB", "in-process, 2 copies", direct(big, big_calls, copies=True), big_calls, None,
         big.nbytes),
        ("4MB", "worker, 1 caller", sequential(big, big_calls), big_calls, pid, big.nbytes),
    ]
    await sequential(small, 2000)()  # warm up: caches, allocator, branch predictors
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(repeats):
        for payload, contender, run, count, worker_pid, _size in cases:
            samples.setdefault((payload, contender), []).append(
                await measure(run, count, worker_pid))
    await pool.stop()
    rows = []
    for payload, contender, _run, _count, _pid, size in cases:
        taken = samples[(payload, contender)]
        us = statistics.median(sample["us"] for sample in taken)
        rows.append({
            "payload": payload, "contender": contender, "us": us,
            "calls_per_s": 1e6 / us,
            # Bytes that cross the process boundary: the argument there, the result back.
            "mb_per_s": 2 * size / MIB / (us / 1e6),
            "cpu_us": statistics.median(sample["cpu_us"] for sample in taken),
            "child_cpu_us": statistics.median(sample["child_cpu_us"] for sample in taken),
        })
    return rows


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"dosirak {dosirak.__version__}, Python {platform.python_version()}, numpy "
        f"{np.__version__}, {args.loop} loop, {os.cpu_count()} CPUs, {platform.machine()}; "
        "median of "
        f"{args.repeats} repeats, {args.calls} small calls and {args.big_calls} 4 MB calls each",
        "",
        "| payload | contender | µs per call | calls/s | MB/s (both ways) | caller CPU µs/call "
        "| worker CPU µs/call |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        worker = row["contender"].startswith("worker")
        moves_bytes = row["payload"] == "4MB" and row["contender"] != "in-process"
        megabytes = f"{row['mb_per_s']:,.0f}" if moves_bytes else "-"
        child = f"{row['child_cpu_us']:,.1f}" if worker else "-"
        lines.append(f"| {row['payload']} | {row['contender']} | {row['us']:,.2f} | "
                     f"{row['calls_per_s']:,.0f} | {megabytes} | {row['cpu_us']:,.2f} | "
                     f"{child} |")
    by = {(row["payload"], row["contender"]): row for row in rows}
    small_direct = by[("small", "in-process")]["us"]
    small_worker = by[("small", "worker, 1 caller")]["us"]
    big_copy = by[("4MB", "in-process, 2 copies")]["us"]
    big_worker = by[("4MB", "worker, 1 caller")]["us"]
    concurrent = next(row for row in rows if row["payload"] == "small"
                      and row["contender"].endswith("callers"))
    lines += [
        "",
        f"- per-call overhead of the process hop (small, 1 caller): "
        f"{small_worker - small_direct:,.1f} µs",
        f"- pipelined: {concurrent['calls_per_s']:,.0f} calls/s "
        f"({concurrent['us']:,.1f} µs per call) with {args.callers} callers on one worker",
        f"- 4 MB round trip: {big_worker / 1000:,.2f} ms, {big_worker / big_copy:,.1f}x the time "
        f"of two in-process copies ({big_copy / 1000:,.2f} ms)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="small calls per repeat")
    parser.add_argument("--big-calls", type=int, default=200, help="4 MB calls per repeat")
    parser.add_argument("--callers", type=int, default=16, help="concurrent callers")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="event loop of the calling process (dosirak serve uses uvloop)")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    rows = asyncio.run(bench(args.calls, args.big_calls, args.callers, args.repeats))
    print(report(rows, args))


if __name__ == "__main__":
    main()
