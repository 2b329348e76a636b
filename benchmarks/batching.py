"""Adaptive batching through a runner in a worker process, with a synthetic batch-friendly model.

The model costs 5 ms + 0.05 ms per row as pure sleep (like an accelerator, and reproducible).
64 closed-loop callers send one row each; the ideal is 64 / (5 ms + 64 x 0.05 ms) = 7,805 rows/s.
Also measures a single caller: the runner's latency against calling the model directly.

    .venv/bin/python benchmarks/batching.py --seconds 5 [--loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import numpy as np

import dosirak
from dosirak.exceptions import ServiceOverloaded

FIXED_S, PER_ROW_S = 0.005, 0.00005


class SyntheticModel(dosirak.Runnable):
    """Sleeps like a batched accelerator call and returns its input doubled."""

    SUPPORTS_CPU_MULTI_THREADING = True

    @dosirak.Runnable.method(batchable=True, batch_dim=0)
    def predict(self, rows: np.ndarray) -> np.ndarray:
        time.sleep(FIXED_S + PER_ROW_S * len(rows))
        return rows * 2


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def closed_loop(runner: dosirak.Runner, callers: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    refused = 0
    stop_at = time.perf_counter() + seconds

    async def caller(index: int) -> None:
        nonlocal refused
        row = np.full((1, 4), index, dtype=np.float32)
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            try:
                out = await runner.predict.async_run(row)
            except ServiceOverloaded:
                refused += 1
                continue
            latencies.append(time.perf_counter() - start)
            assert out[0, 0] == index * 2

    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    elapsed = time.perf_counter() - started
    return {
        "rows_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "refused": refused,
    }


async def single_caller(runner: dosirak.Runner, model: SyntheticModel, calls: int) -> dict:
    row = np.ones((1, 4), dtype=np.float32)
    direct, through = [], []
    for _ in range(calls):
        start = time.perf_counter()
        model.predict(row)
        direct.append(time.perf_counter() - start)
        start = time.perf_counter()
        await runner.predict.async_run(row)
        through.append(time.perf_counter() - start)
    d, t = statistics.median(direct) * 1000, statistics.median(through) * 1000
    return {"direct_ms": d, "runner_ms": t, "allowed_ms": d * 1.1 + 0.2}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--max-latency-ms", type=float, default=100.0)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop",
                        help="event loop (dosirak serve uses uvloop when installed)")
    options = parser.parse_args()
    ideal = options.callers / (FIXED_S + options.callers * PER_ROW_S)
    print(f"ideal: {ideal:,.0f} rows/s at {options.callers} callers")
    for label, batch in (("batched", options.callers), ("unbatched", 1)):
        runner = dosirak.Runner(SyntheticModel, name="synthetic", max_batch_size=batch,
                                max_latency_ms=options.max_latency_ms, workers=1)
        await runner.start("process")
        try:
            await closed_loop(runner, options.callers, 1.0)  # warm up the cost model
            result = await closed_loop(runner, options.callers, options.seconds)
            if label == "batched":
                lone = await single_caller(runner, SyntheticModel(), 50)
        finally:
            await runner.stop()
        share = 100 * result["rows_per_s"] / ideal
        print(f"{label:10s} {result['rows_per_s']:8,.0f} rows/s = "
              f"{share:5.1f}% of ideal, p50 {result['p50_ms']:.1f} ms, "
              f"p99 {result['p99_ms']:.1f} ms (budget {options.max_latency_ms:.0f} ms), "
              f"refused {result['refused']}")
    print(f"single caller: direct {lone['direct_ms']:.3f} ms, through the runner "
          f"{lone['runner_ms']:.3f} ms (allowed {lone['allowed_ms']:.3f} ms)")


if __name__ == "__main__":
    import sys

    if "--loop" in sys.argv and sys.argv[sys.argv.index("--loop") + 1] == "asyncio":
        asyncio.run(main())
    else:
        import uvloop

        uvloop.run(main())
