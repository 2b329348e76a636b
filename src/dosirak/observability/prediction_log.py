"""The prediction log (opt-in): what each API call took in and gave back, summarised.

    >>> PredictionLog().record("3f9c0a1b2d4e-1", "classify", features, labels, 0.8)

gives ``... request_id=3f9c0a1b2d4e-1 api=classify latency_ms=0.800
input=ndarray(shape=[1, 4], dtype=float64) output=ndarray(shape=[1], dtype=int64)`` on the
``dosirak.prediction`` logger, or the same as JSON. Summaries name the type and the shape, dtype
or length, never the values: payloads can be large and hold personal data. Other objects show at
most a short, cut ``repr``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from dosirak.observability.access_log import safe_text

PREDICTION_LOGGER = "dosirak.prediction"
MAX_REPR = 80
MAX_KEYS = 10


class PredictionLine:
    """One call's fields; ``str()`` is the text form, ``fields()`` feeds the JSON form."""

    __slots__ = ("api", "input", "latency_ms", "output", "request_id")

    def __init__(self, request_id: str, api: str, input: dict[str, Any],
                 output: dict[str, Any], latency_ms: float | None) -> None:
        self.request_id = request_id
        self.api = api
        self.input = input
        self.output = output
        self.latency_ms = latency_ms

    def fields(self) -> dict[str, Any]:
        """The line as a dict (what the JSON form holds)."""
        latency = None if self.latency_ms is None else round(self.latency_ms, 3)
        return {"request_id": self.request_id, "api": self.api, "latency_ms": latency,
                "input": self.input, "output": self.output}

    def __str__(self) -> str:
        latency = "-" if self.latency_ms is None else f"{self.latency_ms:.3f}"
        return (f"request_id={safe_text(self.request_id)} api={safe_text(self.api)} "
                f"latency_ms={latency} input={safe_text(summary_text(self.input))} "
                f"output={safe_text(summary_text(self.output))}")


class PredictionLog:
    """Writes :class:`PredictionLine` records to ``dosirak.prediction`` (or ``logger``)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(PREDICTION_LOGGER)

    @property
    def enabled(self) -> bool:
        """Whether a line would be written."""
        return self.logger.isEnabledFor(logging.INFO)

    def record(self, request_id: str, api: str, input: Any, output: Any,
               latency_ms: float | None = None) -> None:
        """Log one call: summaries of ``input`` and ``output`` are taken now, values never."""
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info(PredictionLine(request_id, api, summarize(input), summarize(output),
                                            latency_ms))


def summarize(value: Any) -> dict[str, Any]:
    """A small, JSON-ready description of ``value``: type plus shape/dtype, length or a cut repr.

    Arrays and tensors (anything with ``shape`` and ``dtype``) give both; data frames their shape
    and first column names; images their size and mode; strings, bytes and containers their
    length (mappings their first keys); anything else a ``repr`` of at most ``MAX_REPR``
    characters. Duck-typed, so it imports no framework.
    """
    kind = type(value).__name__
    if value is None or isinstance(value, (bool, int, float)):
        return {"type": kind, "repr": _cut(repr(value))}
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        return {"type": kind, "length": len(value)}
    if isinstance(value, dict):
        keys = [_cut(str(key), 40) for key in list(value)[:MAX_KEYS]]
        return {"type": kind, "length": len(value), "keys": keys}
    shape = getattr(value, "shape", None)
    if shape is not None and not callable(shape):
        summary: dict[str, Any] = {"type": kind, "shape": _shape(shape)}
        columns = getattr(value, "columns", None)
        if columns is not None:
            summary["columns"] = [_cut(str(name), 40) for name in list(columns)[:MAX_KEYS]]
        dtype = getattr(value, "dtype", None)
        if dtype is not None:
            summary["dtype"] = str(dtype)
        return summary
    if isinstance(value, (list, tuple, set, frozenset)):
        return {"type": kind, "length": len(value)}
    size, mode = getattr(value, "size", None), getattr(value, "mode", None)
    if isinstance(size, tuple) and isinstance(mode, str):  # a PIL image
        return {"type": kind, "size": list(size), "mode": mode}
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not break the request
        text = f"<{kind}>"
    return {"type": kind, "repr": _cut(text)}


def summary_text(summary: dict[str, Any]) -> str:
    """``{"type": "ndarray", "shape": [1, 4], ...}`` -> ``ndarray(shape=[1, 4], ...)``."""
    details = ", ".join(f"{key}={json.dumps(value) if key == 'repr' else value}"
                        for key, value in summary.items() if key != "type")
    return f"{summary.get('type', '?')}({details})"


def _shape(shape: Any) -> list[Any]:
    try:
        return [int(size) if size is not None else None for size in shape]
    except (TypeError, ValueError):
        return [str(shape)]


def _cut(text: str, limit: int = MAX_REPR) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
