"""Model signatures: which methods a runner may call and how they batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dosirak.exceptions import InvalidArgument

_KEYS = {"batchable", "batch_dim", "input_spec", "output_spec"}

#: Most rows in one batch of a batchable method when neither its code nor the configuration
#: says (runners, class-style batchable APIs, ``runners.batching`` in the configuration).
DEFAULT_MAX_BATCH_SIZE = 100
# An interactive prediction API is usually held to a p99 of 100-200 ms, and a batch of a model
# worth batching costs 1-20 ms: 100 ms leaves room for several batches in the queue while a call
# that cannot be answered within a tenth of a second is refused early, when the client can still
# retry elsewhere, instead of timing out there. (BentoML's 60 s default never refuses anything.)
#: Milliseconds from a call to its answer within which batching must answer it, by default.
DEFAULT_MAX_LATENCY_MS = 100.0


@dataclass(frozen=True)
class Signature:
    """How to call one method of a model.

    ``batch_dim`` is the axis along which inputs (first) and outputs (second) are stacked when
    calls are merged into a batch.
    """

    batchable: bool = False
    batch_dim: tuple[int, int] = (0, 0)

    @classmethod
    def parse(cls, method: str, value: Signature | dict[str, Any] | None) -> Signature:
        if isinstance(value, Signature):
            return value
        if value is None:
            return cls()
        if not isinstance(value, dict):
            raise InvalidArgument(f"signature of {method!r} must be a dict like "
                                  f"{{'batchable': True, 'batch_dim': 0}}, got {value!r}")
        if unknown := set(value) - _KEYS:
            raise InvalidArgument(f"signature of {method!r} has unknown keys {sorted(unknown)}; "
                                  f"allowed: {sorted(_KEYS)}")
        batchable = value.get("batchable", False)
        if not isinstance(batchable, bool):
            raise InvalidArgument(f"signature of {method!r}: 'batchable' must be True or False")
        return cls(batchable, _parse_batch_dim(method, value.get("batch_dim", 0)))

    def to_dict(self) -> dict[str, Any]:
        return {"batchable": self.batchable, "batch_dim": list(self.batch_dim)}


def _parse_batch_dim(method: str, value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return (value[0], value[1])
    raise InvalidArgument(f"signature of {method!r}: 'batch_dim' must be an int or an "
                          f"(input_dim, output_dim) pair of ints, got {value!r}")


def parse_signatures(
    value: dict[str, Any] | None, defaults: dict[str, Any]
) -> dict[str, Signature]:
    """User signatures replace the framework's defaults entirely when given."""
    chosen = defaults if value is None else value
    if not isinstance(chosen, dict) or not chosen:
        raise InvalidArgument("signatures must be a non-empty dict of method name -> options, "
                              "e.g. {'predict': {'batchable': True, 'batch_dim': 0}}")
    return {str(method): Signature.parse(method, options) for method, options in chosen.items()}
