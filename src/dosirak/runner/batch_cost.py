"""The cost model of adaptive batching: how long a batch of ``rows`` rows takes, learned online.

    >>> cost = BatchCost()
    >>> cost.add(rows=32, seconds=0.0066)     # after every batch
    >>> cost.estimate(64), cost.margin()      # what the dispatcher plans with

Plain arithmetic with no event loop or queue: the dispatcher (``dosirak.runner.dispatcher``)
and its admission policy (``dosirak.runner.admission``) both read it.
"""

from __future__ import annotations

import math

# How fast the estimate forgets: batch costs over about 20 batches.
COST_DECAY = 0.95
# Budget checks add this many mean absolute errors of the cost estimate (about 2.4 standard
# deviations, so about 1 batch in 100 runs longer than planned) times the square root of the
# number of batches the estimate adds up.
MARGIN_ERRORS = 3.0
# A batch cost sample counts at most this many mean absolute errors away from the estimate.
CLIP_ERRORS = 4.0


class BatchCost:
    """Online estimate of how long a batch takes: ``fixed + per_row * rows`` seconds.

    An exponentially weighted least-squares fit of (rows, seconds) samples, so it follows a model
    that warms up or a machine that gets busier. While every batch has the same size the split
    between the fixed and the per-row part cannot be seen; the last slope measured is kept.
    The first ``warmup`` batches only stand in until the next one (a model's first call is often
    far slower: lazy imports, allocations, compilation), and a sample far off the estimate counts
    only up to a few errors away, so one hiccup of the machine does not throw the estimate off.
    """

    def __init__(self, decay: float = COST_DECAY, warmup: int = 1) -> None:
        self.decay = decay
        self.warmup = warmup
        self.samples = 0
        self.fixed = 0.0
        self.per_row = 0.0
        self.error = 0.0  # weighted mean absolute error of the estimates, in seconds
        self._weight = self._x = self._y = self._xx = self._xy = 0.0
        self._stand_in = False

    def add(self, rows: int, seconds: float) -> None:
        """Learn from one batch of ``rows`` rows that took ``seconds``."""
        if self._stand_in:  # what was learned so far only stood in for this batch: start over
            self._stand_in = False
            self.samples = 0
            self._weight = self._x = self._y = self._xx = self._xy = 0.0
        if self.warmup:
            self.warmup -= 1
            self._stand_in = True
        if self.samples:
            expected = self.estimate(rows)
            miss = seconds - expected
            self.error += (1 - self.decay) * 2 * (abs(miss) - self.error)
            limit = CLIP_ERRORS * self.error
            seconds = expected + max(-limit, min(miss, limit))
        if not self.samples:
            self.error = seconds * 0.1
        self.samples += 1
        decay = self.decay
        self._weight = self._weight * decay + 1
        self._x = self._x * decay + rows
        self._y = self._y * decay + seconds
        self._xx = self._xx * decay + rows * rows
        self._xy = self._xy * decay + rows * seconds
        mean_x, mean_y = self._x / self._weight, self._y / self._weight
        variance = self._xx / self._weight - mean_x * mean_x
        if variance > 0.25:  # sizes differ by about a row or more: the slope can be measured
            self.per_row = max(0.0, (self._xy / self._weight - mean_x * mean_y) / variance)
        self.fixed = max(0.0, mean_y - self.per_row * mean_x)

    def estimate(self, rows: int) -> float:
        """Expected seconds for a batch of ``rows`` rows (0 before the first sample)."""
        return self.fixed + self.per_row * rows

    def margin(self, batches: int = 1) -> float:
        """Seconds to add to the estimate of ``batches`` batches in a row to be safe."""
        return MARGIN_ERRORS * self.error * math.sqrt(batches)
