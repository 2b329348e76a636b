"""Runnables: the objects that hold a loaded model and run its methods.

A ``Runnable`` subclass is the unit of custom inference logic::

    class MyRunnable(dosirak.Runnable):
        SUPPORTED_RESOURCES = ("cpu",)
        SUPPORTS_CPU_MULTI_THREADING = True

        def __init__(self, threshold: float) -> None:
            self.model = dosirak.sklearn.load_model("iris_clf:latest")
            self.threshold = threshold

        @dosirak.Runnable.method(batchable=True, batch_dim=0)
        def predict(self, x):
            return self.model.predict_proba(x)[:, 1] > self.threshold

Stored models get a runnable built from their signatures (``dosirak.models.model_runnable``).
A runnable is described by a ``RunnableSpec``, plain data that lets a worker process build the
same runnable.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import cloudpickle

from dosirak.exceptions import InvalidArgument, ServiceCodeError
from dosirak.signature import Signature

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__dosirak_signature__"


class Runnable:
    """Base class of custom runnables; decorate methods with ``Runnable.method``."""

    SUPPORTED_RESOURCES: tuple[str, ...] = ("cpu",)
    SUPPORTS_CPU_MULTI_THREADING: bool = False

    @staticmethod
    def method(
        fn: F | None = None,
        *,
        batchable: bool = False,
        batch_dim: int | tuple[int, int] = 0,
        input_spec: Any = None,
        output_spec: Any = None,
    ) -> Any:
        """Mark a method as callable through the runner, with how it batches."""

        def mark(function: F) -> F:
            options = {"batchable": batchable, "batch_dim": batch_dim}
            setattr(function, _MARK, Signature.parse(function.__name__, options))
            return function

        return mark(fn) if fn is not None else mark

    @classmethod
    def input_check(cls, method: str) -> Callable[[tuple[Any, ...]], Any] | None:
        """A check of ``method``'s arguments, run in the calling process before the call is
        batched or sent to a worker: it raises ``BadInput`` for input the model cannot take,
        and returns the answer of an empty batch (None: call the model). None: no check."""
        return None

    @classmethod
    def signatures(cls) -> dict[str, Signature]:
        """The methods marked with ``Runnable.method``, by name."""
        found = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                signature = getattr(value, _MARK, None)
                if signature is not None:
                    found[name] = signature
        return found


@dataclass(frozen=True)
class RunnableSpec:
    """Everything a worker process needs to build a runnable, without the parent's objects.

    A spec names an importable class (or a function returning a runnable, as
    ``dosirak.models.runnable_of`` does for stored models) and its arguments, or carries the
    class cloudpickled when it is not importable (defined in ``__main__`` or a function): those
    bytes travel only from the service's own parent process to its children over a private
    pipe, never from a network peer. The runner layer knows nothing of stored models.
    """

    target: str | None = None  # "module:QualName" of an importable Runnable subclass
    pickled_class: bytes | None = field(default=None, repr=False)
    init_params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_class(cls, runnable_class: Callable[..., Any],
                  init_params: dict[str, Any] | None) -> RunnableSpec:
        module, qualname = runnable_class.__module__, runnable_class.__qualname__
        if module != "__main__" and "<locals>" not in qualname:
            try:
                if _import_target(f"{module}:{qualname}") is runnable_class:
                    return cls(target=f"{module}:{qualname}",
                               init_params=dict(init_params or {}))
            except (ImportError, AttributeError):
                pass
        return cls(pickled_class=cloudpickle.dumps(runnable_class),
                   init_params=dict(init_params or {}))

    def runnable_class(self) -> Any:
        """The importable class (or any callable returning a runnable) the spec names."""
        if self.target:
            return _import_target(self.target)
        if self.pickled_class is not None:
            return cloudpickle.loads(self.pickled_class)
        raise InvalidArgument(f"runnable spec {self!r} names nothing to run")

    def build(self) -> Any:
        """Create the runnable instance (loads the model)."""
        return self.runnable_class()(**self.init_params)


def _import_target(target: str) -> Any:
    module_name, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def bound_method(runnable: Any, method_name: str) -> Callable[..., Any]:
    """The callable that runs ``method_name`` on a built runnable."""
    table = getattr(runnable, "methods_by_name", None)
    function = table.get(method_name) if table is not None else getattr(runnable, method_name, None)
    if not callable(function):
        raise ServiceCodeError(f"runnable {type(runnable).__name__} has no method "
                               f"{method_name!r}")
    return function
