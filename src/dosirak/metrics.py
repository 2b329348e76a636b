"""Custom metrics of a service, exposed on its ``/metrics`` beside dosirak's own.

    >>> import dosirak as bentoml
    >>> inference_duration = bentoml.metrics.Histogram(
    ...     name="inference_duration", documentation="Model inference time",
    ...     labelnames=["model"], buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1.0))
    >>> polarity = bentoml.metrics.Counter(name="polarity_total", documentation="Answers",
    ...                                    labelnames=["polarity"])
    >>> polarity.labels(polarity="positive").inc()

``Counter``, ``Gauge``, ``Histogram`` and ``Summary`` are prometheus_client's, with its
arguments and methods (``inc``, ``set``, ``observe``, ``time()``, ``labels(...)``). Create them
at import time in the service module: ``dosirak serve`` gives every API worker a shared
multiprocess directory before it imports the service, so each worker writes its own values and
``/metrics``, whichever worker answers, shows counters, histograms and summaries summed over
all of them. A gauge is per worker (a ``pid`` label) unless you choose how to combine it:
``Gauge(..., multiprocess_mode="livesum")`` (also ``"sum"``, ``"max"``, ``"min"``,
``"mostrecent"``). Summaries carry their count and sum (no quantiles, as in prometheus_client's
multiprocess mode).

Creating the same metric again (a module imported twice: a test, a notebook, a reload in one
process) returns the one already registered instead of failing with "Duplicated timeseries".
"""

from __future__ import annotations

from typing import Any

import prometheus_client
from prometheus_client import REGISTRY

from dosirak.exceptions import InvalidArgument
from dosirak.observability import multiprocess
from dosirak.observability.metrics import select_value_class

__all__ = ["Counter", "Gauge", "Histogram", "Summary"]


class _Reused:
    """Returns the registered metric of the same name and kind instead of a duplicate."""

    _dosirak_ready = False

    def __new__(cls, name: str, documentation: str = "", labelnames: Any = (), *args: Any,
                **kwargs: Any) -> Any:
        if kwargs.get("_labelvalues"):  # a child made by .labels(...): never registered
            return super().__new__(cls)
        full = _full_name(cls, name, kwargs)
        existing = getattr(REGISTRY, "_names_to_collectors", {}).get(full)
        if existing is not None:
            if type(existing) is not cls or tuple(existing._labelnames) != tuple(labelnames):
                raise InvalidArgument(
                    f"a metric named {full!r} exists already as a {type(existing).__name__} "
                    f"with labels {list(existing._labelnames)}; give this "
                    f"{cls.__name__} another name")
            return existing
        return super().__new__(cls)

    def __init__(self, name: str, documentation: str = "", labelnames: Any = (), *args: Any,
                 **kwargs: Any) -> None:
        if self._dosirak_ready:
            return  # the registered one, handed back by __new__
        if not documentation:
            documentation = name
        # Values go where this process keeps its metrics: the workers' shared directory when
        # there is one (several API workers), else this process's memory.
        select_value_class(multiprocess.current_directory() is not None)
        super().__init__(name, documentation, labelnames, *args, **kwargs)  # type: ignore[call-arg]
        self._dosirak_ready = True


def _full_name(cls: type, name: str, options: dict[str, Any]) -> str:
    parts = [options.get("namespace", ""), options.get("subsystem", ""), name]
    full = "_".join(part for part in parts if part)
    unit = options.get("unit", "")
    if unit and not full.endswith(f"_{unit}"):
        full += f"_{unit}"
    # A counter registers under its name without "_total".
    if issubclass(cls, prometheus_client.Counter) and full.endswith("_total"):
        full = full[: -len("_total")]
    return full


class Counter(_Reused, prometheus_client.Counter):
    """A value that only goes up (requests, errors); summed over the API workers."""


class Gauge(_Reused, prometheus_client.Gauge):
    """A value that goes up and down; per worker unless ``multiprocess_mode`` combines it."""


class Histogram(_Reused, prometheus_client.Histogram):
    """Observations counted into buckets (latencies, sizes); summed over the API workers."""


class Summary(_Reused, prometheus_client.Summary):
    """The count and sum of observations; summed over the API workers."""
