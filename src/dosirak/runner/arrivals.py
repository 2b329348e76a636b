"""What a batching dispatcher knows of how calls arrive: pace, bursts and echoes.

    >>> arrivals = Arrivals(cost)
    >>> arrivals.arrived(now, call, idle=True)      # at every submit
    >>> arrivals.answered(now, calls=12)            # at the end of every batch

Statistics only, with no queue and no event loop: the dispatcher (``dosirak.runner.dispatcher``)
reads them to decide how long a batch is held open for more rows, and the admission policy
(``dosirak.runner.admission``) reads the dispatch overhead to estimate a queue's wait.
"""

from __future__ import annotations

import math
from typing import Any

from dosirak.runner.batch_cost import BatchCost

# How fast the statistics forget: arrival gaps, dispatch overhead and bursts over the last few
# arrivals.
GAP_WEIGHT = 0.2
BURST_WEIGHT = 0.5
# Echoes: how fast their share and delay follow what was seen.
ECHO_WEIGHT = 0.2


class Arrivals:
    """Arrival statistics of one dispatcher, all in event-loop seconds.

    - ``gap``: the typical time between arrivals while calls are queued or running, each gap
      clipped to a batch's fixed cost (longer gaps all mean "not worth waiting for").
    - Bursts: a call that arrives on an idle dispatcher is a ``leader``; ``burstiness`` is how
      often leaders were followed within ``fixed / 2``, while they ran, by others, and
      ``followers`` how many usually followed (callers in a loop: all the others).
    - Echoes: callers in a loop (HTTP clients with keep-alive) send their next call a round trip
      after their answer. ``echo_share`` is how many answered callers usually come back before
      the next batch, ``echo_delay`` how long after the answer they usually arrive, and
      ``echo_due`` how many of the last batch's callers are still expected.
    - ``overhead``: from a batch's end to the next one's start while calls wait for a worker.
    """

    __slots__ = ("burstiness", "cost", "echo_answered", "echo_delay", "echo_due", "echo_share",
                 "followers", "gap", "last_answer", "last_arrival", "leader", "overhead")

    def __init__(self, cost: BatchCost) -> None:
        self.cost = cost
        self.last_arrival = -math.inf
        self.last_answer = -math.inf  # when the last batch ended
        self.gap = math.inf
        self.burstiness = 0.0
        self.followers = 0.0
        self.leader: Any = None  # the last call that arrived alone
        self.echo_due = 0  # calls answered by the last batch, not yet seen coming back
        self.echo_answered = 0
        self.echo_share = 0.0
        self.echo_delay = 0.0
        self.overhead = 0.0

    def arrived(self, now: float, call: Any, *, idle: bool) -> None:
        """Learn from a call submitted at ``now``; ``idle``: nothing was queued or running.

        ``call`` has ``arrival``, ``future`` and a ``followers`` count this method raises.
        """
        if self.echo_due:
            self.echo_due -= 1
            if not self.echo_due:
                self._echo_seen(now, complete=True)
        gap = min(now - self.last_arrival, self.cost.fixed)
        self.gap = gap if self.gap == math.inf else self.gap + GAP_WEIGHT * (gap - self.gap)
        self.last_arrival = now
        leader = self.leader
        if idle:
            if leader is not None:  # how did the last call that arrived alone fare?
                followed = 1.0 if leader.followers else 0.0
                self.burstiness += BURST_WEIGHT * (followed - self.burstiness)
                self.followers += BURST_WEIGHT * (leader.followers - self.followers)
            self.leader = call
        elif (leader is not None and not leader.future.done()
              and now - leader.arrival <= self.cost.fixed / 2):
            leader.followers += 1

    def answered(self, now: float, calls: int) -> None:
        """A batch of ``calls`` calls ended at ``now``: their callers may come back."""
        self.last_answer = now
        if self.echo_due:  # the previous batch's callers did not all come back
            self._echo_seen(now, complete=False)
        self.echo_answered = self.echo_due = calls

    def dispatched_after_wait(self, now: float) -> None:
        """A batch whose calls waited for a worker started at ``now``: the time since the
        worker freed up is dispatch overhead, paid by every batch of a queue."""
        sample = min(now - self.last_answer, self.cost.fixed)
        self.overhead += GAP_WEIGHT * (sample - self.overhead)

    def _echo_seen(self, now: float, *, complete: bool) -> None:
        """Learn how many answered callers come back, and how fast."""
        answered = self.echo_answered
        if answered <= 1:
            return
        share = 1.0 if complete else (answered - self.echo_due) / answered
        self.echo_share += ECHO_WEIGHT * (share - self.echo_share)
        if complete:
            delay = min(now - self.last_answer, self.cost.fixed)
            self.echo_delay += ECHO_WEIGHT * (delay - self.echo_delay)
        self.echo_due = 0
