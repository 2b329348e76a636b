"""Runner series of ``/metrics``: batch sizes and durations, queue depth, overload refusals.

    >>> watch = RunnerMetrics(metrics)
    >>> watch.observe(dispatcher, runner="iris_clf", method="predict")   # after runners start
    >>> watch.start()                                                      # on the event loop
    >>> watch.stop()

Batches are recorded as they end (the dispatcher's ``on_batch`` observer, set at startup), so
the histograms see every batch. Queue depth and refusals are read from each dispatcher's counters
a few times per second instead: they change with every call, and sampling keeps their cost off
the request path.
"""

from __future__ import annotations

import asyncio
from typing import Any

#: Seconds between two readings of queue depths and refusal counts.
SAMPLE_EVERY = 0.5


class RunnerMetrics:
    """Records the batching of every dispatcher it observes into ``metrics``."""

    def __init__(self, metrics: Any) -> None:
        self.metrics = metrics
        self._watched: list[tuple[Any, Any, list[int]]] = []  # dispatcher, recorder, [refused]
        self._timer: asyncio.TimerHandle | None = None

    def observe(self, dispatcher: Any, *, runner: str, method: str) -> None:
        """Time each batch ``dispatcher`` runs and sample its queue; labels name the method."""
        recorder = self.metrics.runner_method(runner, method)
        dispatcher.on_batch = recorder.batch  # (rows, seconds) of every batch run
        self._watched.append((dispatcher, recorder, [0]))

    def start(self) -> None:
        """Begin sampling (call on the running event loop)."""
        if self._watched and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(SAMPLE_EVERY, self._sample)

    def stop(self) -> None:
        """Stop sampling; the last readings stay."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _sample(self) -> None:
        for dispatcher, recorder, seen in self._watched:
            stats = dispatcher.stats()
            recorder.queue_depth(stats.queued_rows)
            refused = stats.refused + stats.expired
            if refused > seen[0]:
                recorder.refused(refused - seen[0])
                seen[0] = refused
        self._timer = asyncio.get_running_loop().call_later(SAMPLE_EVERY, self._sample)

    def sample_now(self) -> None:
        """Take a reading at once (before ``/metrics`` renders, so a scrape is current)."""
        if self._timer is not None:
            self._timer.cancel()
            self._sample()
