"""Adaptive micro-batching: merge concurrent calls of one method into batches, within a budget.

    >>> dispatcher = Dispatcher(run_batch, max_batch_size=64, max_latency_ms=100)
    >>> await dispatcher(features)        # from many tasks at once; each gets its own rows back

``run_batch(args, kwargs)`` runs one merged batch (inputs stacked along ``batch_dim[0]`` by
``containers``) and returns the merged output, which is cut back along ``batch_dim[1]``. The
dispatcher decides when a batch runs, in this order of priority:

1. **The user's limits.** A batch never holds more than ``max_batch_size`` rows (rows, not calls:
   a call larger than the room left is split, and its parts are put back together in order).
   Each call has ``max_latency_ms`` from submit to answer. At submit, the call's answer time is
   estimated from the queue ahead of it, the batches running and the cost model below; past 80%
   of the budget the call is refused at once with ``ServiceOverloaded`` (with ``retry_after``).
   When its batch forms, a call that waiting has made late fails instead of running, and a
   watchdog fails queued calls whose budget ran out while every worker was busy: never a silent
   hang. The queue never holds more than ``max_queue_rows``. A call that finds the queue empty is
   always taken: refusing it would make nobody faster.
2. **Throughput.** The cost of a batch is learned online as ``fixed + per_row * rows``
   (exponentially weighted least squares over the batches run; the first batch of each worker
   only stands in until the next). When a worker is free and ``n`` rows wait, the batch is held
   open for one more row only if rows have lately been arriving less than ``fixed / 2n`` apart
   (the point where holding n rows to add one still lowers the mean latency), and never longer
   than ``fixed / n`` after the last arrival or answer (the share of a batch's fixed cost one more
   row saves). When a batch ends, the decision waits until the callers it answered have run:
   a caller in a loop submits again at once, and its call belongs in the next batch.
3. **Mean latency.** Decisions are taken at the end of the event loop's turn in which a call
   arrived, so the calls other requests submit in that same turn (read in one wake-up of the
   loop) join the same batch at no cost in latency. A lone call on an idle dispatcher then runs
   at once, unless calls arriving alone
   have lately been followed within ``fixed / 2``, while they ran, by others (a burst of
   concurrent callers); then it waits for them, at most ``fixed``, and the batch goes as soon as
   as many calls arrived as such bursts usually bring. Up to ``max_in_flight`` batches run at once
   (one per worker).
"""

from __future__ import annotations

import asyncio
import copy
import math
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dosirak.exceptions import InvalidArgument, RunnerError, ServiceOverloaded
from dosirak.runner import containers

# An interactive prediction API is usually held to a p99 of 100-200 ms, and a batch of a model
# worth batching costs 1-20 ms: 100 ms leaves room for several batches in the queue while a call
# that cannot be answered within a tenth of a second is refused early, when the client can still
# retry elsewhere, instead of timing out there. (BentoML's 60 s default never refuses anything.)
DEFAULT_MAX_LATENCY_MS = 100.0
# Rows the queue may hold, in batches per worker, before the cost model has learned anything (or
# when batches are so cheap that the budget alone would allow a huge queue).
DEFAULT_QUEUE_BATCHES = 16
# How fast the statistics forget: batch costs over about 20 batches, arrival gaps and bursts over
# the last few arrivals.
COST_DECAY = 0.95
GAP_WEIGHT = 0.2
BURST_WEIGHT = 0.5
# Budget checks add this many mean absolute errors of the cost estimate (about 2.4 standard
# deviations, so about 1 batch in 100 runs longer than planned) times the square root of the
# number of batches the estimate adds up.
MARGIN_ERRORS = 3.0
# A batch cost sample counts at most this many mean absolute errors away from the estimate.
CLIP_ERRORS = 4.0
# Calls are admitted while their estimated answer time is within this share of the budget: the
# rest absorbs what the estimate cannot see (hiccups of the machine, the event loop's own delays,
# the HTTP layer around the call). The queue stays long enough to keep the workers busy.
ADMISSION_SHARE = 0.8
# The event loop's timers wake up on whole milliseconds; shorter waits poll the loop instead.
POLL_BELOW_S = 0.001
# Echo holds: only when most answered callers came back lately, waiting at most a little longer
# than they usually take.
ECHO_SHARE = 0.8
ECHO_SLACK = 1.5
ECHO_WEIGHT = 0.2


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


@dataclass(frozen=True)
class DispatcherStats:
    """A snapshot of a dispatcher, for metrics and for the overload error messages."""

    name: str
    queued_rows: int
    queued_calls: int
    running_batches: int
    batches: int
    rows: int
    batch_sizes: dict[int, int]
    held_batches: int
    refused: int
    expired: int
    failed_batches: int
    cost_fixed_ms: float
    cost_per_row_ms: float
    cost_error_ms: float
    overhead_ms: float
    arrival_gap_ms: float | None
    burstiness: float
    burst_calls: float


class _Call:
    """One submitted call: its payload, its place in the queue and the parts of its output."""

    __slots__ = ("arrival", "deadline", "dropped", "followers", "future", "key", "offset",
                 "parts", "payload", "pending", "pieces", "rows")

    def __init__(self, payload: tuple[tuple[Any, ...], dict[str, Any]], rows: int, key: Hashable,
                 arrival: float, deadline: float, future: asyncio.Future[Any]) -> None:
        self.payload = payload
        self.rows = rows
        self.key = key
        self.arrival = arrival
        self.deadline = deadline
        self.future = future
        self.offset = 0  # rows already handed to batches
        self.pieces = 0  # batches it was split across so far
        self.pending = 0  # of those, still running
        self.parts: dict[int, Any] = {}
        self.dropped = False  # cancelled, failed or expired: its queued rows no longer count
        self.followers = 0  # calls that arrived while it ran, when it arrived alone


def _copy_error(error: BaseException) -> BaseException:
    """The same error for another caller, as its own object so that each caller's traceback
    stays its own (raising one object in many tasks would pile up all their frames on it)."""
    try:
        clone = copy.copy(error)
    except Exception:
        return error  # an exception class that cannot be rebuilt from its args: share it
    if type(clone) is not type(error) or clone.args != error.args:
        return error
    clone.__cause__, clone.__context__ = error.__cause__, error.__context__
    clone.__suppress_context__ = error.__suppress_context__
    return clone.with_traceback(error.__traceback__)


class _Batch:
    __slots__ = ("items", "rows", "start")

    def __init__(self, items: list[tuple[_Call, int, Any, int]], rows: int, start: float) -> None:
        self.items = items  # (call, piece index, payload piece, rows)
        self.rows = rows
        self.start = start


class Dispatcher:
    """Merges concurrent calls into batches of at most ``max_batch_size`` rows; see the module.

    ``execute(args, kwargs)`` runs one merged batch and returns its merged output.
    ``await dispatcher(*args, **kwargs)`` submits one call and returns its own output, or raises
    ``ServiceOverloaded`` when its budget cannot be met, or what ``execute`` raised.
    """

    def __init__(
        self,
        execute: Callable[[tuple[Any, ...], dict[str, Any]], Awaitable[Any]],
        *,
        max_batch_size: int,
        max_latency_ms: float = DEFAULT_MAX_LATENCY_MS,
        batch_dim: tuple[int, int] | int = (0, 0),
        max_in_flight: int = 1,
        max_queue_rows: int | None = None,
        name: str = "",
    ) -> None:
        if isinstance(batch_dim, int) and not isinstance(batch_dim, bool):
            batch_dim = (batch_dim, batch_dim)
        elif isinstance(batch_dim, list):
            batch_dim = tuple(batch_dim)
        if not (isinstance(batch_dim, tuple) and len(batch_dim) == 2
                and all(isinstance(d, int) and not isinstance(d, bool) for d in batch_dim)):
            raise InvalidArgument(f"batch_dim must be an int or an (input, output) pair of ints, "
                                  f"got {batch_dim!r}")
        for option, value, low in (("max_batch_size", max_batch_size, 1),
                                   ("max_in_flight", max_in_flight, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise InvalidArgument(f"{option} must be an int >= {low}, got {value!r}")
        if not isinstance(max_latency_ms, (int, float)) or not max_latency_ms > 0:
            raise InvalidArgument(f"max_latency_ms must be a number > 0 (milliseconds), got "
                                  f"{max_latency_ms!r}")
        if max_queue_rows is None:
            max_queue_rows = max_batch_size * max_in_flight * DEFAULT_QUEUE_BATCHES
        elif not isinstance(max_queue_rows, int) or max_queue_rows < 1:
            raise InvalidArgument(f"max_queue_rows must be an int >= 1, got {max_queue_rows!r}")
        self._execute = execute
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_latency_ms = float(max_latency_ms)
        self.max_in_flight = max_in_flight
        self.max_queue_rows = max_queue_rows
        self.batch_dim = batch_dim
        self._budget = max_latency_ms / 1000
        self.cost = BatchCost(warmup=max_in_flight)  # every worker's first batch is slow

        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: deque[_Call] = deque()
        self._queued_rows = 0
        self._queued_calls = 0
        self._running: set[_Batch] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.Handle | None = None
        self._timer_at = math.inf
        self._closed = False
        # A decision is due at the end of this loop turn: a call arrived, or a batch ended and
        # its callers may be about to submit again.
        self._decision_due = False

        self._last_arrival = -math.inf
        self._last_answer = -math.inf  # when the last batch ended
        # Echoes: callers in a loop (HTTP clients with keep-alive) send their next call a round
        # trip after their answer. When calls are still queued as a batch ends, starting the next
        # batch at once splits the callers into two cohorts that alternate half-full batches;
        # waiting one round trip for the echo lets them merge again.
        self._echo_due = 0  # calls answered by the last batch, not yet seen coming back
        self._echo_answered = 0
        self._echo_share = 0.0  # how many answered callers usually come back before the next batch
        self._echo_delay = 0.0  # how long after the answer they usually arrive
        self._overhead = 0.0  # from a batch's end to the next one's start, when calls wait
        self._gap = math.inf  # typical time between arrivals while calls are queued or running
        self._burstiness = 0.0  # how often a call arriving alone is followed while it runs
        self._followers = 0.0  # how many calls usually follow it (callers in a loop: all others)
        self._leader: _Call | None = None  # the last call that arrived alone

        self._batches = 0
        self._rows = 0
        self._batch_sizes: Counter[int] = Counter()
        self._held_batches = 0  # batches kept open for more rows before they ran
        self._holding = False
        self._refused = 0
        self._expired = 0
        self._failed_batches = 0

    @property
    def _label(self) -> str:
        return f"batching of {self.name!r}" if self.name else "batching"

    # -- submitting ------------------------------------------------------------------------------

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Submit one call and wait for its own part of the batch output."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind(loop)
        if self._closed:
            raise RunnerError(f"{self._label} is closed; the runner was shut down")
        rows, key = containers.describe_call(args, kwargs, self.batch_dim[0])
        now = loop.time()
        self._admit(now, rows)
        call = _Call((args, kwargs), rows, key, now, now + self._budget, loop.create_future())
        self._note_arrival(now, call)
        self._queue.append(call)
        self._queued_rows += rows
        self._queued_calls += 1
        if not self._decision_due:
            # Decide at the end of this turn of the loop: calls submitted by the other
            # requests read in the same turn join the batch.
            self._decision_due = True
            loop.call_soon(self._pump_now)
        try:
            return await call.future
        except asyncio.CancelledError:
            self._drop(call)  # the caller gave up: its rows must not be run
            raise

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not None and (self._queue or self._running):
            raise RunnerError(f"{self._label} is serving calls on another event loop; call it "
                              "from the loop that runs the service")
        self._loop = loop
        self._timer = None
        self._timer_at = math.inf

    def _admit(self, now: float, rows: int) -> None:
        """Refuse the call now if the queue ahead of it would make it miss its budget."""
        if not self._queued_calls:
            return  # nothing queued ahead: refusing would not make anyone faster
        queued = self._queued_rows
        if queued + rows > self.max_queue_rows:
            self._refuse(f"its queue already holds {queued} rows in {self._queued_calls} calls "
                         f"and takes at most {self.max_queue_rows} (max_queue_rows)",
                         self.cost.estimate(self.max_batch_size) or 0.01)
        if not self.cost.samples:
            return
        if queued + rows <= self.max_batch_size and len(self._running) < self.max_in_flight:
            return  # it fits in the next batch and a worker is free: no wait beyond one batch
        wait = self._finish_time(now, queued + rows) - now
        if wait > self._budget * ADMISSION_SHARE:
            self._refuse(f"{queued} rows in {self._queued_calls} calls are queued ahead and "
                         f"{len(self._running)} batches are running, so this call of {rows} rows "
                         f"would be answered in about {wait * 1000:.1f} ms, over its "
                         f"max_latency_ms budget of {self.max_latency_ms:g} ms",
                         max(wait - self._budget * ADMISSION_SHARE,
                             self.cost.estimate(self.max_batch_size)))

    def _refuse(self, why: str, retry_after: float) -> None:
        self._refused += 1
        cost = self.cost
        raise ServiceOverloaded(
            f"{self._label} is overloaded: {why} (a batch costs about {cost.fixed * 1000:.2f} ms "
            f"+ {cost.per_row * 1000:.4f} ms per row). Retry after {retry_after:.3f} s, or add "
            "workers, or raise max_latency_ms.", retry_after=retry_after)

    def _finish_time(self, now: float, rows: int) -> float:
        """When a call would be answered behind ``rows`` queued rows (its own included).

        The queue runs as full batches, spread over the workers as they free up.
        """
        cost = self.cost
        workers = self.max_in_flight
        ahead = max(0, (rows - 1) // self.max_batch_size)  # full batches before the call's own
        if len(self._running) < workers - ahead % workers:
            free = now  # its batch gets a worker nobody is using
        else:
            ends = sorted(batch.start + cost.estimate(batch.rows) for batch in self._running)
            free = max(now, ends[ahead % workers - (workers - len(ends))])
        rounds = ahead // workers  # batches run before the call's own on its worker
        per_batch = cost.estimate(self.max_batch_size) + self._overhead
        return (free + rounds * per_batch + cost.estimate(rows - ahead * self.max_batch_size)
                + self._overhead + cost.margin(rounds + 1))

    def _note_arrival(self, now: float, call: _Call) -> None:
        """Update what the dispatcher knows of how calls arrive."""
        # Gaps longer than a batch's fixed cost all mean "not worth waiting for": clipping them
        # keeps one lull (a batch running while callers wait for it) from hiding the pace around.
        if self._echo_due:
            self._echo_due -= 1
            if not self._echo_due:
                self._echo_seen(now, complete=True)
        gap = min(now - self._last_arrival, self.cost.fixed)
        self._gap = gap if self._gap == math.inf else self._gap + GAP_WEIGHT * (gap - self._gap)
        self._last_arrival = now
        if not self._queued_calls and not self._running:
            leader = self._leader
            if leader is not None:  # how did the last call that arrived alone fare?
                followed = 1.0 if leader.followers else 0.0
                self._burstiness += BURST_WEIGHT * (followed - self._burstiness)
                self._followers += BURST_WEIGHT * (leader.followers - self._followers)
            self._leader = call
        else:
            leader = self._leader
            if (leader is not None and not leader.future.done()
                    and now - leader.arrival <= self.cost.fixed / 2):
                leader.followers += 1

    # -- deciding when to run --------------------------------------------------------------------

    def _pump(self, now: float) -> None:
        """Start every batch that should start now; otherwise wake up when one should."""
        while len(self._running) < self.max_in_flight and self._queued_calls:
            self._skip_dropped()
            until = self._hold_until(now)
            if until is not None:
                self._holding = True
                self._wake_at(now, until)
                return
            if not self._start_batch(now):
                break  # every queued call expired
        # Every worker is busy: wake up when the oldest call still waiting whole runs out of
        # budget (a call already partly running is never dropped).
        for call in self._queue:
            if not call.pieces and not call.dropped:
                self._wake_at(now, call.deadline)
                break

    def _hold_until(self, now: float) -> float | None:
        """Until when to keep the batch open for more rows, or None to run it now."""
        queued = self._queued_rows
        cost = self.cost
        if queued >= self.max_batch_size or self._closed or not cost.samples or cost.fixed <= 0:
            return None
        head = self._queue[0]
        latest = head.deadline - cost.estimate(self.max_batch_size) - cost.margin()
        # One more row saves running it later in a batch of its own, whose fixed part is shared
        # by the rows queued now: it is worth waiting for only that long.
        worth = cost.fixed / max(queued, 1)
        alone = False
        if head is self._leader and not self._running:  # a burst that began on an idle worker
            alone = self._queued_calls == 1
            if alone and self._burstiness <= 0.5:
                return None  # calls arriving alone usually stay alone: no concurrency to wait for
            if not alone and self._queued_calls > self._followers + 0.5:
                return None  # as many calls as a burst usually brings: no more to wait for
        echo = self._echo_due if self._echo_share > ECHO_SHARE else 0
        if echo and not self._running and queued + echo <= self.max_batch_size:
            wait_until = self._last_answer + self._echo_delay * ECHO_SLACK
            # Worth it when the rows expected by then make the batch pay better than it does
            # now; they are expected when the echoes usually end (the slack is only a limit).
            expected = max(self._last_answer + self._echo_delay - now, 0.0)
            more = queued + echo
            if (wait_until > now and more / (expected + cost.estimate(more))
                    > queued / cost.estimate(queued)):
                return min(wait_until, latest) if min(wait_until, latest) > now else None
        if not alone and self._gap >= worth / 2:
            # The next row is not expected soon enough. (Holding n rows for a gap g to add one
            # saves the mean latency only while g < fixed / 2n.)
            return None
        until = min(max(self._last_arrival, self._last_answer) + worth, latest)
        return until if until > now else None

    def _echo_seen(self, now: float, *, complete: bool) -> None:
        """Learn how many answered callers come back, and how fast."""
        answered = self._echo_answered
        if answered <= 1:
            return
        share = 1.0 if complete else (answered - self._echo_due) / answered
        self._echo_share += ECHO_WEIGHT * (share - self._echo_share)
        if complete:
            delay = min(now - self._last_answer, self.cost.fixed)
            self._echo_delay += ECHO_WEIGHT * (delay - self._echo_delay)
        self._echo_due = 0

    def _wake_at(self, now: float, when: float) -> None:
        if self._timer is not None:
            if self._timer_at <= when:
                return  # it will wake up earlier and decide again
            self._timer.cancel()
        assert self._loop is not None
        if when - now < POLL_BELOW_S:
            self._timer = self._loop.call_soon(self._on_timer)
            self._timer_at = now
        else:
            self._timer = self._loop.call_at(when, self._on_timer)
            self._timer_at = when

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        assert self._loop is not None
        now = self._loop.time()
        self._expire(now)
        self._pump(now)

    def _skip_dropped(self) -> None:
        queue = self._queue
        while queue and queue[0].dropped:
            queue.popleft()

    def _expire(self, now: float) -> None:
        """Fail queued calls whose budget ran out before any of their rows could run."""
        for call in self._queue:
            if call.deadline > now:
                break  # the queue is in arrival order, so in deadline order
            if not call.dropped and not call.pieces:
                self._fail_expired(call, now)

    def _fail_expired(self, call: _Call, now: float) -> None:
        self._expired += 1
        waited = (now - call.arrival) * 1000
        self._fail(call, ServiceOverloaded(
            f"{self._label} is overloaded: the call waited {waited:.1f} ms in the queue and could "
            f"not be answered within its max_latency_ms budget of {self.max_latency_ms:g} ms. "
            "Retry later, or add workers, or raise max_latency_ms.",
            retry_after=self.cost.estimate(self.max_batch_size) or 0.01))

    # -- running batches -------------------------------------------------------------------------

    def _start_batch(self, now: float) -> bool:
        """Take up to max_batch_size rows of calls with the same key from the queue; run them."""
        queue = self._queue
        cost = self.cost
        finish = now + cost.estimate(min(self._queued_rows, self.max_batch_size)) + cost.margin()
        # A call is failed ahead of its deadline only when waiting is what made it late: when
        # even a batch run at once overshoots the budget, the estimate cannot tell who is late.
        predictable = cost.samples and finish - now <= self._budget
        room = self.max_batch_size
        items: list[tuple[_Call, int, Any, int]] = []
        put_back: list[_Call] = []
        key: Hashable = None
        in_dim = self.batch_dim[0]
        while queue and room > 0:
            call = queue.popleft()
            if call.dropped:
                continue
            late = now >= call.deadline or (predictable and finish > call.deadline)
            if late and not call.pieces:
                self._fail_expired(call, now)  # it would be answered too late: fail it instead
                continue
            if key is None:
                key = call.key
            elif call.key != key:
                put_back.append(call)  # cannot merge with this batch; keeps its place
                continue
            size = min(room, call.rows - call.offset)
            if size == call.rows:
                piece = call.payload
            else:
                piece = containers.take(call.payload, call.offset, call.offset + size, in_dim)
            items.append((call, call.pieces, piece, size))
            call.pieces += 1
            call.pending += 1
            call.offset += size
            room -= size
            self._queued_rows -= size
            if call.offset < call.rows:
                put_back.append(call)  # the rest goes into the next batch
                break
            self._queued_calls -= 1
        queue.extendleft(reversed(put_back))
        if not items:
            return False
        batch = _Batch(items, self.max_batch_size - room, now)
        if self._holding:
            self._holding = False
            self._held_batches += 1
        elif items[0][0].arrival < self._last_answer:
            # The calls waited for a worker: the time since it freed up is dispatch overhead,
            # paid by every batch of a queue and so part of the queue's estimated wait.
            sample = min(now - self._last_answer, cost.fixed)
            self._overhead += GAP_WEIGHT * (sample - self._overhead)
        self._running.add(batch)
        assert self._loop is not None
        task = self._loop.create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, batch: _Batch) -> None:
        loop = self._loop
        assert loop is not None
        items = batch.items
        try:
            if len(items) == 1:
                args, kwargs = items[0][2]
            else:
                args, kwargs = containers.merge([item[2] for item in items], self.batch_dim[0])
            start = loop.time()
            output = await self._execute(args, kwargs)
            elapsed = loop.time() - start
        except asyncio.CancelledError:
            self._failed_batches += 1
            self._fail_batch(batch, RunnerError(f"{self._label}: the batch was cancelled"))
            raise
        except BaseException as error:  # the model's own exception reaches every caller
            self._failed_batches += 1
            self._fail_batch(batch, error)
            if not isinstance(error, Exception):
                raise
        else:
            self.cost.add(batch.rows, elapsed)
            self._batches += 1
            self._rows += batch.rows
            self._batch_sizes[batch.rows] += 1
            self._deliver(batch, output)
        finally:
            self._running.discard(batch)
            self._last_answer = loop.time()
            if self._echo_due:  # the previous batch's callers did not all come back
                self._echo_seen(self._last_answer, complete=False)
            self._echo_answered = self._echo_due = len(items)
            # Decide on the next batch only after the callers just answered have run (their
            # wake-ups are queued on the loop before this): a caller in a loop submits again at
            # once, and its call belongs in that batch.
            self._decision_due = True
            loop.call_soon(self._pump_now)

    def _pump_now(self) -> None:
        assert self._loop is not None
        self._decision_due = False
        self._pump(self._loop.time())

    def _deliver(self, batch: _Batch, output: Any) -> None:
        items = batch.items
        try:
            if len(items) == 1:
                parts = [output]
                containers.check_rows(output, batch.rows, self.batch_dim[1])
            else:
                parts = containers.split(output, [item[3] for item in items], self.batch_dim[1])
        except InvalidArgument as error:
            self._fail_batch(batch, RunnerError(f"{self._label}: {error}"))
            return
        for (call, index, _piece, _rows), part in zip(items, parts, strict=True):
            call.parts[index] = part
            call.pending -= 1
            if call.offset == call.rows and not call.pending:
                self._finish(call)

    def _finish(self, call: _Call) -> None:
        if call.future.done():
            return  # cancelled by its caller, or failed in another batch
        parts = call.parts
        if len(parts) == 1:
            output = parts[0]
        else:
            try:
                output = containers.merge([parts[i] for i in range(len(parts))],
                                          self.batch_dim[1])
            except InvalidArgument as error:
                call.future.set_exception(RunnerError(f"{self._label}: {error}"))
                return
        if type(output) is not np.ndarray:  # pandas outputs get the call's own row labels back
            output = containers.relabel(output, containers.row_labels(call.payload))
        call.future.set_result(output)

    def _fail_batch(self, batch: _Batch, error: BaseException) -> None:
        for index, (call, *_) in enumerate(batch.items):
            call.pending -= 1
            self._fail(call, error if index == 0 else _copy_error(error))

    def _fail(self, call: _Call, error: BaseException) -> None:
        self._drop(call)
        if not call.future.done():
            call.future.set_exception(error)

    def _drop(self, call: _Call) -> None:
        """Take the call's rows that are still queued out of the queue counts."""
        if call.dropped or call.offset == call.rows:
            return
        call.dropped = True
        self._queued_rows -= call.rows - call.offset
        self._queued_calls -= 1
        call.offset = call.rows

    # -- the rest --------------------------------------------------------------------------------

    def stats(self) -> DispatcherStats:
        """Queue depth, batches run and their sizes, refusals, and the learned batch cost."""
        return DispatcherStats(
            name=self.name,
            queued_rows=self._queued_rows,
            queued_calls=self._queued_calls,
            running_batches=len(self._running),
            batches=self._batches,
            rows=self._rows,
            batch_sizes=dict(self._batch_sizes),
            held_batches=self._held_batches,
            refused=self._refused,
            expired=self._expired,
            failed_batches=self._failed_batches,
            cost_fixed_ms=self.cost.fixed * 1000,
            cost_per_row_ms=self.cost.per_row * 1000,
            cost_error_ms=self.cost.error * 1000,
            overhead_ms=self._overhead * 1000,
            arrival_gap_ms=None if self._gap == math.inf else self._gap * 1000,
            burstiness=self._burstiness,
            burst_calls=1 + self._followers,
        )

    async def aclose(self) -> None:
        """Refuse new calls, fail the queued ones, and wait for the running batches."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._queue:
            call = self._queue.popleft()
            if not call.dropped:
                self._fail(call, RunnerError(f"{self._label} was closed before this call ran; "
                                             "the runner was shut down"))
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
