"""Prometheus metrics of a server: requests, durations, in-flight requests, and runner batching.

    >>> metrics = Metrics(namespace="dosirak", endpoints=["/classify"])
    >>> series = metrics.request_started("/classify", "POST")
    >>> metrics.request_finished(series, 200, 0.0012)
    >>> runner = metrics.runner_method("iris_clf", "predict")
    >>> runner.batch(size=32, seconds=0.004)
    >>> body = metrics.render()                   # the /metrics text, for every process

Series, with ``dosirak`` standing for the namespace:

* ``dosirak_requests_total{endpoint, http_method, http_status}`` (counter)
* ``dosirak_request_duration_seconds{endpoint, http_method, http_status}`` (histogram)
* ``dosirak_requests_in_progress{endpoint, http_method}`` (gauge)
* ``dosirak_runner_batch_size{runner, method}`` (histogram of rows per batch)
* ``dosirak_runner_batch_duration_seconds{runner, method}`` (histogram)
* ``dosirak_runner_queue_depth{runner, method}`` (gauge)
* ``dosirak_runner_overload_refusals_total{runner, method}`` (counter)

**Bounded labels.** A path the server did not declare is recorded as ``endpoint="__unknown__"``,
an unusual HTTP method as ``OTHER`` and a status outside 100-599 as ``other``: a client probing
random URLs cannot create series (or grow our caches).

**Several processes.** With ``PROMETHEUS_MULTIPROC_DIR`` set (see :mod:`.multiprocess`), every
process writes to its own memory-mapped files and :meth:`Metrics.render` adds up all of them.
Without it, the values live in this process only and ``render`` also includes
prometheus_client's default registry (process statistics, and any metrics the user defined). Use
one ``Metrics`` per process.

**Cost.** The request path looks up a pre-bound label child in a dict and touches two values
(gauge up and down, one histogram bucket and its sum). In one process those are plain counters
(``_LocalRequests``, read when ``/metrics`` renders); with several, they are written straight
into prometheus_client's memory-mapped files (``_MappedValue``): prometheus_client's own take a
lock per update and walk the buckets in Python, about 3 us of a request's 70 us here.
``requests_total`` costs nothing per request: it is the histogram's count, exposed as a counter
when rendering.
"""

from __future__ import annotations

import math
import os
import struct
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString

from dosirak.config import DEFAULT_DURATION_BUCKETS
from dosirak.observability import multiprocess

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNKNOWN_ENDPOINT = "__unknown__"
OTHER_METHOD = "OTHER"
OTHER_STATUS = "other"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS",
                          "CONNECT", "TRACE"})
# Rows per batch: powers of two cover any max_batch_size with a dozen buckets.
BATCH_SIZE_BUCKETS = tuple(float(2 ** power) for power in range(13))


class RequestSeries:
    """The pre-bound children of one (endpoint, HTTP method); from ``request_started``."""

    __slots__ = ("by_status", "endpoint", "http_method", "in_progress")

    def __init__(self, endpoint: str, http_method: str, in_progress: Any) -> None:
        self.endpoint = endpoint
        self.http_method = http_method
        self.in_progress = in_progress
        self.by_status: dict[int, Any] = {}


class RunnerMethodMetrics:
    """The series of one runner method: batches, queue depth and refusals."""

    __slots__ = ("_batch_duration", "_batch_size", "_queue_depth", "_refusals")

    def __init__(self, batch_size: Any, batch_duration: Any, queue_depth: Any,
                 refusals: Any) -> None:
        self._batch_size = batch_size
        self._batch_duration = batch_duration
        self._queue_depth = queue_depth
        self._refusals = refusals

    def batch(self, size: int, seconds: float) -> None:
        """A batch of ``size`` rows ran in ``seconds``."""
        self._batch_size.observe(size)
        self._batch_duration.observe(seconds)

    def queue_depth(self, depth: int) -> None:
        """``depth`` rows (or calls) wait in this method's queue now."""
        self._queue_depth.set(depth)

    def refused(self, count: int = 1) -> None:
        """``count`` calls were refused because the method was overloaded."""
        self._refusals.inc(count)


class Metrics:
    """All the series of one server process; see the module docstring."""

    enabled = True

    def __init__(self, *, namespace: str = "dosirak",
                 duration_buckets: Sequence[float] = DEFAULT_DURATION_BUCKETS,
                 endpoints: Iterable[str] = ()) -> None:
        self.namespace = namespace
        self.endpoints = set(endpoints)
        self._directory = multiprocess.current_directory()
        select_value_class(self._directory is not None)
        # Our own registry: a second Metrics (a test, a reload) must not collide in the global one.
        self._registry = CollectorRegistry(auto_describe=True)
        registry = None if self._directory is not None else self._registry
        http = ("endpoint", "http_method")
        self._duration: Any
        self._in_progress: Any
        if self._directory is None:
            # One process: plain counters the event loop updates, read when /metrics renders.
            requests = _LocalRequests(namespace, duration_buckets)
            self._registry.register(requests)
            self._duration, self._in_progress = requests.duration, requests.in_progress
        else:
            self._duration = Histogram(
                f"{namespace}_request_duration_seconds", "Time from request to response, "
                "seconds.", [*http, "http_status"], buckets=list(duration_buckets),
                registry=registry)
            self._in_progress = Gauge(
                f"{namespace}_requests_in_progress", "Requests being handled now.", http,
                multiprocess_mode="livesum", registry=registry)
        runner = ("runner", "method")
        self._batch_size = Histogram(
            f"{namespace}_runner_batch_size", "Rows per batch run by a runner method.", runner,
            buckets=BATCH_SIZE_BUCKETS, registry=registry)
        self._batch_duration = Histogram(
            f"{namespace}_runner_batch_duration_seconds", "Time to run one batch, seconds.",
            runner, buckets=list(duration_buckets), registry=registry)
        self._queue_depth = Gauge(
            f"{namespace}_runner_queue_depth", "Rows waiting in a runner method's batching queue.",
            runner, multiprocess_mode="livesum", registry=registry)
        self._refusals = Counter(
            f"{namespace}_runner_overload_refusals", "Calls refused because a runner method "
            "could not answer within its latency budget.", runner, registry=registry)
        self._series: dict[tuple[str, str], RequestSeries] = {}
        self._mapped_children: dict[tuple[str, ...], Any] = {}
        self._runner_methods: dict[tuple[str, str], RunnerMethodMetrics] = {}
        self._render_registry = _render_registry(self._registry, namespace)

    # --- requests (the hot path) ------------------------------------------------------------

    def endpoint(self, path: str) -> str:
        """The ``endpoint`` label of ``path``: itself when declared, else ``__unknown__``."""
        return path if path in self.endpoints else UNKNOWN_ENDPOINT

    def add_endpoint(self, path: str) -> None:
        """Declare one more path whose requests get their own series."""
        self.endpoints.add(path)

    def request_started(self, path: str, method: str) -> RequestSeries:
        """Count a request in progress; pass the result to :meth:`request_finished`."""
        series = self._series.get((path, method))
        if series is None:
            series = self._new_series(path, method)
        series.in_progress.inc()
        return series

    def request_finished(self, series: RequestSeries, status: int, seconds: float) -> None:
        """The request of ``series`` was answered ``status`` after ``seconds``."""
        series.in_progress.dec()
        child = series.by_status.get(status)
        if child is None:
            label = str(status) if isinstance(status, int) and 100 <= status <= 599 else (
                OTHER_STATUS)
            child = self._duration.labels(series.endpoint, series.http_method, label)
            if self._directory is not None:
                child = self._mapped(("duration", series.endpoint, series.http_method, label),
                                     _MappedHistogram, child)
            if label != OTHER_STATUS:
                series.by_status[status] = child
        child.observe(seconds)

    def _mapped(self, key: tuple[str, ...], make: Any, child: Any) -> Any:
        """One fast writer per prometheus_client child: two would each keep a value of their
        own and overwrite each other's in the file."""
        mapped = self._mapped_children.get(key)
        if mapped is None:
            mapped = self._mapped_children[key] = make(child)
        return mapped

    def _new_series(self, path: str, method: str) -> RequestSeries:
        endpoint = self.endpoint(path)
        http_method = method if method in HTTP_METHODS else OTHER_METHOD
        key = (endpoint, http_method)
        series = self._series.get(key)
        if series is None:
            in_progress = self._in_progress.labels(*key)
            if self._directory is not None:
                in_progress = self._mapped(("in_progress", *key), _MappedGauge, in_progress)
            series = RequestSeries(endpoint, http_method, in_progress)
            # Cached under its labels only: a known path and method are their own labels, while
            # unknown ones take this slower road every time rather than grow the cache.
            self._series[key] = series
        return series

    # --- runners ------------------------------------------------------------------------------

    def runner_method(self, runner: str, method: str) -> RunnerMethodMetrics:
        """The series of ``runner.method`` (names come from the service, so they are bounded)."""
        key = (runner, method)
        found = self._runner_methods.get(key)
        if found is None:
            found = RunnerMethodMetrics(self._batch_size.labels(*key),
                                        self._batch_duration.labels(*key),
                                        self._queue_depth.labels(*key),
                                        self._refusals.labels(*key))
            self._runner_methods[key] = found
        return found

    # --- exposition ---------------------------------------------------------------------------

    def render(self) -> bytes:
        """The ``/metrics`` body (Prometheus text format, ``CONTENT_TYPE``): every process's
        values in multiprocess mode, else this process's plus the default registry's."""
        if self._directory is not None:
            return render_multiprocess(self._directory, self.namespace)
        return generate_latest(self._render_registry) + generate_latest(REGISTRY)


class NullMetrics:
    """What the server uses when metrics are disabled: the same calls, doing nothing."""

    enabled = False
    _null_series = RequestSeries(UNKNOWN_ENDPOINT, OTHER_METHOD, None)

    def endpoint(self, path: str) -> str:
        """Always ``__unknown__``."""
        return UNKNOWN_ENDPOINT

    def add_endpoint(self, path: str) -> None:
        """Nothing to declare."""

    def request_started(self, path: str, method: str) -> RequestSeries:
        """Nothing recorded."""
        return self._null_series

    def request_finished(self, series: RequestSeries, status: int, seconds: float) -> None:
        """Nothing recorded."""

    def runner_method(self, runner: str, method: str) -> RunnerMethodMetrics:
        """A runner-method recorder that records nothing."""
        return _NULL_RUNNER_METHOD

    def render(self) -> bytes:
        """Empty: there is nothing to expose."""
        return b""


class _LocalGauge:
    """A gauge of one process, for the request path of the event loop (no lock: one thread)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount


class _LocalHistogram:
    """A histogram of one process: a count per bucket and a sum (no lock: one thread).

    ``bounds`` end with ``inf``; an observation counts in the first bucket whose bound is at
    least its value, as Prometheus's ``le`` says.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1
        self.sum += amount


class _MappedValue:
    """One value of a prometheus_client multiprocess metric, written straight into this
    process's memory-mapped file at its known place.

    prometheus_client's own value takes a process-wide lock and looks its key up on every
    update (about 0.7 us; a histogram observation also walks the buckets in Python, 1.4 us):
    four updates a request cost 2-3 us of the ~70 us a request takes. The request series are
    updated only by the event loop of their worker (``Traffic``), so no lock is needed; the file,
    the key's place in it and the value's format (two doubles: value, timestamp) are
    prometheus_client's, so its ``MultiProcessCollector`` reads them as its own. The file's
    mapping is read afresh on every write: prometheus_client remaps it when the file grows.
    """

    __slots__ = ("_file", "_position", "value")

    def __init__(self, mapped: Any) -> None:
        self._file = mapped._file
        self.value = float(self._file.read_value(mapped._key)[0])  # places the key if new
        self._position = self._file._positions[mapped._key]

    def inc(self, amount: float = 1) -> None:
        self.value += amount
        position = self._position
        self._file._m[position:position + 16] = _TWO_DOUBLES(self.value, 0.0)


_TWO_DOUBLES = struct.Struct("dd").pack


class _MappedGauge:
    """A ``livesum`` gauge child of the request path, through :class:`_MappedValue`."""

    __slots__ = ("_value",)

    def __init__(self, child: Any) -> None:
        self._value = _MappedValue(child._value)

    def inc(self, amount: float = 1) -> None:
        self._value.inc(amount)

    def dec(self, amount: float = 1) -> None:
        self._value.inc(-amount)


class _MappedHistogram:
    """A histogram child of the request path, through :class:`_MappedValue`: the bucket found
    by bisection (prometheus_client's storage: one count per bucket, not cumulative), and the
    sum."""

    __slots__ = ("_bounds", "_buckets", "_sum")

    def __init__(self, child: Any) -> None:
        self._bounds = tuple(child._upper_bounds)
        self._buckets = [_MappedValue(bucket) for bucket in child._buckets]
        self._sum = _MappedValue(child._sum)

    def observe(self, amount: float) -> None:
        self._buckets[bisect_left(self._bounds, amount)].inc(1)
        self._sum.inc(amount)


class _LocalFamily:
    """Children of one local metric by label values, created on first use like ``labels()``."""

    def __init__(self, make: Any) -> None:
        self.make = make
        self.children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str) -> Any:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.make()
        return child


class _LocalRequests:
    """The request series of a single-process server, as a prometheus_client collector.

    prometheus_client's own metrics take a lock and walk the buckets in Python on every update,
    about 3 us a request here; these plain counters cost a few hundred nanoseconds. They are
    updated only by the event loop (``Traffic``), so they need no lock; ``collect`` copies them
    when ``/metrics`` renders, on that same loop.
    """

    def __init__(self, namespace: str, buckets: Sequence[float]) -> None:
        bounds = tuple(sorted(float(b) for b in buckets))
        if not bounds or bounds[-1] != math.inf:
            bounds = (*bounds, math.inf)
        self.bounds = bounds
        self.duration_name = f"{namespace}_request_duration_seconds"
        self.in_progress_name = f"{namespace}_requests_in_progress"
        self.duration = _LocalFamily(lambda: _LocalHistogram(bounds))
        self.in_progress = _LocalFamily(_LocalGauge)

    def collect(self) -> Iterator[Metric]:
        duration = HistogramMetricFamily(self.duration_name, "Time from request to response, "
                                         "seconds.", labels=("endpoint", "http_method",
                                                             "http_status"))
        for labels, histogram in list(self.duration.children.items()):
            cumulative, buckets = 0, []
            for bound, count in zip(self.bounds, list(histogram.counts), strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            duration.add_metric(list(labels), buckets, histogram.sum)
        yield duration
        in_progress = GaugeMetricFamily(self.in_progress_name, "Requests being handled now.",
                                        labels=("endpoint", "http_method"))
        for labels, gauge in list(self.in_progress.children.items()):
            in_progress.add_metric(list(labels), gauge.value)
        yield in_progress


class _NullValue:
    def observe(self, value: float) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def inc(self, amount: float = 1) -> None:
        pass


_NULL_RUNNER_METHOD = RunnerMethodMetrics(_NullValue(), _NullValue(), _NullValue(), _NullValue())


def metrics_from_config(config: Any, endpoints: Iterable[str] = ()) -> Metrics | NullMetrics:
    """``Metrics`` as ``config`` (a ``MetricsConfig``) says, or ``NullMetrics`` when disabled."""
    if not config.enabled:
        return NullMetrics()
    return Metrics(namespace=config.namespace, duration_buckets=config.duration_buckets,
                   endpoints=endpoints)


def render_multiprocess(directory: str | os.PathLike[str], namespace: str = "dosirak") -> bytes:
    """The ``/metrics`` body summed over every process that wrote to ``directory``.

    Needs no ``Metrics`` in the calling process (a supervisor or a test can render).
    """
    path = Path(directory)
    if not path.is_dir():
        raise FileNotFoundError(f"metrics directory {path} is gone; it must live as long as the "
                                "server (MetricsDirectory.close() only at shutdown)")
    registry = _render_registry(MultiProcessCollector(None, str(path)), namespace)
    with multiprocess.reading(path):
        return generate_latest(registry)


def _render_registry(source: Any, namespace: str) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_WithRequestTotals(source, f"{namespace}_request_duration_seconds",
                                         f"{namespace}_requests"))
    return registry


class _WithRequestTotals:
    """Passes a source's metric families through, adding a counter made of a histogram's count.
    """

    def __init__(self, source: Any, histogram: str, counter: str) -> None:
        self.source = source
        self.histogram = histogram
        self.counter = counter

    def collect(self) -> Iterator[Metric]:
        for family in self.source.collect():
            yield family
            if family.name == self.histogram:
                totals = Metric(self.counter, "Requests answered, by endpoint, HTTP method and "
                                "status.", "counter")
                count_name = self.histogram + "_count"
                for sample in family.samples:
                    if sample.name == count_name:
                        totals.add_sample(self.counter + "_total", sample.labels, sample.value)
                yield totals


def select_value_class(multiprocess_mode: bool) -> None:
    """Make the metrics created next keep their values where this process's mode says.

    prometheus_client picks its value class once, when first imported. A process that imported
    it before the supervisor exported the directory (or was forked from one) would keep its
    values private, and they would never show in ``/metrics``; a process whose directory was
    withdrawn would write to a path that is gone.
    """
    if multiprocess_mode and values.ValueClass is values.MutexValue:
        values.ValueClass = values.get_value_class()
    elif not multiprocess_mode and values.ValueClass is not values.MutexValue:
        values.ValueClass = values.MutexValue
