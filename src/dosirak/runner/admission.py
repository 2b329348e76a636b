"""Admission policy of a batching dispatcher: refuse at submit what could not be answered in time.

    >>> admission = Admission(limits, cost, arrivals, label="batching of 'iris_clf.predict'")
    >>> admission.admit(now, rows, queued_rows, queued_calls, running)   # raises or returns

A call is refused with ``ServiceOverloaded`` (and a ``retry_after``) when the queue would exceed
``max_queue_rows``, or when its answer time, estimated from the queue ahead of it, the batches
running and the learned batch cost, is past ``ADMISSION_SHARE`` of its ``max_latency_ms``. A
call that finds the queue empty is always taken: refusing it would make nobody faster.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from dosirak.exceptions import ServiceOverloaded
from dosirak.runner.arrivals import Arrivals
from dosirak.runner.batch_cost import BatchCost

# Calls are admitted while their estimated answer time is within this share of the budget: the
# rest absorbs what the estimate cannot see (hiccups of the machine, the event loop's own delays,
# the HTTP layer around the call). The queue stays long enough to keep the workers busy.
ADMISSION_SHARE = 0.8


@dataclass(frozen=True)
class Limits:
    """The user's batching limits, checked by the dispatcher."""

    max_batch_size: int
    max_latency_ms: float
    max_in_flight: int
    max_queue_rows: int


class Admission:
    """Decides at submit whether a call can still be answered within its budget."""

    def __init__(self, limits: Limits, cost: BatchCost, arrivals: Arrivals, label: str) -> None:
        self.limits = limits
        self.cost = cost
        self.arrivals = arrivals
        self.label = label
        self.budget = limits.max_latency_ms / 1000
        self.refused = 0

    def admit(self, now: float, rows: int, queued_rows: int, queued_calls: int,
              running: Collection[Any]) -> None:
        """Raise ``ServiceOverloaded`` if the queue ahead would make the call miss its budget.

        ``running`` holds the batches in flight (each with ``start`` and ``rows``).
        """
        if not queued_calls:
            return  # nothing queued ahead: refusing would not make anyone faster
        limits = self.limits
        if queued_rows + rows > limits.max_queue_rows:
            self.refuse(f"its queue already holds {queued_rows} rows in {queued_calls} calls "
                        f"and takes at most {limits.max_queue_rows} (max_queue_rows)",
                        self.cost.estimate(limits.max_batch_size) or 0.01)
        if not self.cost.samples:
            return
        if queued_rows + rows <= limits.max_batch_size and len(running) < limits.max_in_flight:
            return  # it fits in the next batch and a worker is free: no wait beyond one batch
        wait = self.finish_time(now, queued_rows + rows, running) - now
        if wait > self.budget * ADMISSION_SHARE:
            self.refuse(f"{queued_rows} rows in {queued_calls} calls are queued ahead and "
                        f"{len(running)} batches are running, so this call of {rows} rows "
                        f"would be answered in about {wait * 1000:.1f} ms, over its "
                        f"max_latency_ms budget of {limits.max_latency_ms:g} ms",
                        max(wait - self.budget * ADMISSION_SHARE,
                            self.cost.estimate(limits.max_batch_size)))

    def refuse(self, why: str, retry_after: float) -> None:
        self.refused += 1
        cost = self.cost
        raise ServiceOverloaded(
            f"{self.label} is overloaded: {why} (a batch costs about {cost.fixed * 1000:.2f} ms "
            f"+ {cost.per_row * 1000:.4f} ms per row). Retry after {retry_after:.3f} s, or add "
            "workers, or raise max_latency_ms.", retry_after=retry_after)

    def finish_time(self, now: float, rows: int, running: Collection[Any]) -> float:
        """When a call would be answered behind ``rows`` queued rows (its own included).

        The queue runs as full batches, spread over the workers as they free up.
        """
        cost = self.cost
        size = self.limits.max_batch_size
        workers = self.limits.max_in_flight
        overhead = self.arrivals.overhead
        ahead = max(0, (rows - 1) // size)  # full batches before the call's own
        if len(running) < workers - ahead % workers:
            free = now  # its batch gets a worker nobody is using
        else:
            ends = sorted(batch.start + cost.estimate(batch.rows) for batch in running)
            free = max(now, ends[ahead % workers - (workers - len(ends))])
        rounds = ahead // workers  # batches run before the call's own on its worker
        per_batch = cost.estimate(size) + overhead
        return (free + rounds * per_batch + cost.estimate(rows - ahead * size)
                + overhead + cost.margin(rounds + 1))
