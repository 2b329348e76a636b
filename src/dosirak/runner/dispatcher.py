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
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dosirak.exceptions import InvalidArgument, RunnerError, ServiceOverloaded
from dosirak.runner import containers
from dosirak.runner.admission import Admission, Limits
from dosirak.runner.arrivals import Arrivals
from dosirak.runner.batch_cost import BatchCost
from dosirak.signature import DEFAULT_MAX_LATENCY_MS

__all__ = ["DEFAULT_MAX_LATENCY_MS", "BatchCost", "BatchObserver", "Dispatcher",
           "DispatcherStats"]

# Rows the queue may hold, in batches per worker, before the cost model has learned anything (or
# when batches are so cheap that the budget alone would allow a huge queue).
DEFAULT_QUEUE_BATCHES = 16
# The event loop's timers wake up on whole milliseconds; shorter waits poll the loop instead.
POLL_BELOW_S = 0.001
# Echo holds: only when most answered callers came back lately, waiting at most a little longer
# than they usually take.
ECHO_SHARE = 0.8
ECHO_SLACK = 1.5


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
                 "parts", "payload", "pending", "pieces", "rows", "trace")

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
        self.trace: Any = None  # the caller's span context, when tracing is on


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


#: Told of every batch that ran to completion: its rows and the seconds ``execute`` took.
BatchObserver = Callable[[int, float], None]


class Dispatcher:
    """Merges concurrent calls into batches of at most ``max_batch_size`` rows; see the module.

    ``execute(args, kwargs)`` runs one merged batch and returns its merged output.
    ``await dispatcher(*args, **kwargs)`` submits one call and returns its own output, or raises
    ``ServiceOverloaded`` when its budget cannot be met, or what ``execute`` raised.

    ``on_batch(rows, seconds)``, when set, is told of every batch that ran to completion (the
    server's batch metrics); unset, it costs one comparison per batch. The queue's mechanics
    live here; what is known of arrivals in ``dosirak.runner.arrivals``, the refusal of calls at
    submit in ``dosirak.runner.admission``, the batch cost model in ``dosirak.runner.batch_cost``.
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
        on_batch: BatchObserver | None = None,
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
        self.on_batch = on_batch
        #: Set by tracing (``dosirak.observability.tracing``): spans around batches linked to
        #: their callers; None costs one comparison per call and per batch.
        self.tracer: Any = None
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_latency_ms = float(max_latency_ms)
        self.max_in_flight = max_in_flight
        self.max_queue_rows = max_queue_rows
        self.batch_dim = batch_dim
        self._budget = max_latency_ms / 1000
        self.cost = BatchCost(warmup=max_in_flight)  # every worker's first batch is slow
        self._arrivals = Arrivals(self.cost)
        self._admission = Admission(
            Limits(max_batch_size, float(max_latency_ms), max_in_flight, max_queue_rows),
            self.cost, self._arrivals, self._label)

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

        self._batches = 0
        self._rows = 0
        self._batch_sizes: Counter[int] = Counter()
        self._held_batches = 0  # batches kept open for more rows before they ran
        self._holding = False
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
        self._admission.admit(now, rows, self._queued_rows, self._queued_calls, self._running)
        call = _Call((args, kwargs), rows, key, now, now + self._budget, loop.create_future())
        if self.tracer is not None:
            call.trace = self.tracer.caller()
        self._arrivals.arrived(now, call, idle=not self._queued_calls and not self._running)
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
        arrivals = self._arrivals
        head = self._queue[0]
        latest = head.deadline - cost.estimate(self.max_batch_size) - cost.margin()
        # One more row saves running it later in a batch of its own, whose fixed part is shared
        # by the rows queued now: it is worth waiting for only that long.
        worth = cost.fixed / max(queued, 1)
        alone = False
        if head is arrivals.leader and not self._running:  # a burst began on an idle worker
            alone = self._queued_calls == 1
            if alone and arrivals.burstiness <= 0.5:
                return None  # calls arriving alone usually stay alone: no concurrency to wait for
            if not alone and self._queued_calls > arrivals.followers + 0.5:
                return None  # as many calls as a burst usually brings: no more to wait for
        echo = arrivals.echo_due if arrivals.echo_share > ECHO_SHARE else 0
        if echo and not self._running and queued + echo <= self.max_batch_size:
            wait_until = arrivals.last_answer + arrivals.echo_delay * ECHO_SLACK
            # Worth it when the rows expected by then make the batch pay better than it does
            # now; they are expected when the echoes usually end (the slack is only a limit).
            expected = max(arrivals.last_answer + arrivals.echo_delay - now, 0.0)
            more = queued + echo
            if (wait_until > now and more / (expected + cost.estimate(more))
                    > queued / cost.estimate(queued)):
                return min(wait_until, latest) if min(wait_until, latest) > now else None
        if not alone and arrivals.gap >= worth / 2:
            # The next row is not expected soon enough. (Holding n rows for a gap g to add one
            # saves the mean latency only while g < fixed / 2n.)
            return None
        until = min(max(arrivals.last_arrival, arrivals.last_answer) + worth, latest)
        return until if until > now else None

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
        elif items[0][0].arrival < self._arrivals.last_answer:
            # The calls waited for a worker: the time since it freed up is dispatch overhead,
            # paid by every batch of a queue and so part of the queue's estimated wait.
            self._arrivals.dispatched_after_wait(now)
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
            on_batch = self.on_batch
            # The loop's clock may tick in whole milliseconds (uvloop): observers get a finer one.
            began = time.perf_counter() if on_batch is not None else 0.0
            start = loop.time()
            if self.tracer is None:
                output = await self._execute(args, kwargs)
            else:
                output = await self.tracer.run([item[0].trace for item in items], batch.rows,
                                               self._execute, args, kwargs)
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
            ended = time.perf_counter() if on_batch is not None else 0.0
            self._deliver(batch, output)
            if on_batch is not None:  # after the callers have their answers, whatever it does
                on_batch(batch.rows, ended - began)
        finally:
            self._running.discard(batch)
            self._arrivals.answered(loop.time(), len(items))
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
            refused=self._admission.refused,
            expired=self._expired,
            failed_batches=self._failed_batches,
            cost_fixed_ms=self.cost.fixed * 1000,
            cost_per_row_ms=self.cost.per_row * 1000,
            cost_error_ms=self.cost.error * 1000,
            overhead_ms=self._arrivals.overhead * 1000,
            arrival_gap_ms=None if self._arrivals.gap == math.inf else self._arrivals.gap * 1000,
            burstiness=self._arrivals.burstiness,
            burst_calls=1 + self._arrivals.followers,
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
