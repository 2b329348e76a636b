"""Framework adapters: how each ML framework's models are saved into the store and loaded back.

Each adapter module (``dosirak.frameworks.sklearn`` ...) exposes ``save_model``, ``load_model``
and ``get``, re-exported as ``dosirak.<framework>``. Frameworks are imported only when a model of
theirs is saved or loaded, so ``import dosirak`` stays light.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dosirak.exceptions import InvalidArgument
from dosirak.input_spec import input_spec_from_sample, merge_specs, probe
from dosirak.models import Model, get
from dosirak.signature import parse_signatures
from dosirak.tag import Tag


def get_model(module: str, tag: Tag | str | Model) -> Model:
    """``models.get`` that also checks the model was saved by the adapter ``module``."""
    model = get(tag)
    if model.info.module != module:
        raise InvalidArgument(
            f"model {model.tag} was saved with {model.info.module}, not {module}: "
            f"load it with {model.info.module}.load_model({str(model.tag)!r})"
        )
    return model


def loads_model(load: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate an adapter's ``load_model(tag, ...)``: a model deleted while its files are read
    raises ModelNotFound (a load racing a delete), never a bare FileNotFoundError."""

    @functools.wraps(load)
    def load_model(tag: Tag | str | Model, *args: Any, **kwargs: Any) -> Any:
        model = get(tag)
        with model.reading():
            return load(model, *args, **kwargs)

    return load_model


def versions_of(*distributions: str) -> dict[str, str]:
    """Installed versions of the given distributions, for the model's context."""
    found = {}
    for name in distributions:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def methods_present(obj: Any, candidates: Iterable[str], options: dict[str, Any]) -> dict[str, Any]:
    """Default signatures: the candidate methods the object actually has."""
    return {name: dict(options) for name in candidates if callable(getattr(obj, name, None))}


def learn_input(
    own: Callable[[], dict[str, Any]],
    sample: Any,
    calls: Callable[[tuple[str, ...]], Mapping[str, Callable[[Any], Any]]],
    signatures: dict[str, Any] | None,
    defaults: dict[str, Any],
    *,
    exact_dtype: bool = False,
) -> dict[str, Any]:
    """The ``input_spec`` option of a model being saved (see ``dosirak.input_spec``), as a
    dict to merge into its options (empty when nothing could be learned).

    ``own()`` is what the model states of its input; ``sample`` (the ``input_sample`` argument,
    may be None) completes it; ``calls(methods)`` gives the batchable methods as the runner will
    call them, probed on one row for their answers' form and NaN handling. What cannot be
    learned is left out: the model's failures never fail the save (a malformed sample does).
    """
    try:
        spec = own()
    except Exception:  # a model that cannot say what it takes is saved without a spec
        spec = {}
    if sample is not None:
        spec = merge_specs(spec, input_spec_from_sample(sample, exact_dtype=exact_dtype))
    methods = tuple(name for name, signature in parse_signatures(signatures, defaults).items()
                    if signature.batchable and signature.batch_dim[0] == 0)
    with contextlib.suppress(Exception):  # the adapter's calls could not be built: keep spec
        spec = probe(spec, calls(methods), sample)
    return {"input_spec": spec} if spec else {}


def calls_of(model: Any, adapt: Callable[[Any, str], Any] | None = None
             ) -> Callable[[tuple[str, ...]], dict[str, Callable[[Any], Any]]]:
    """The methods of ``model`` as the runner will call them (through the adapter's
    ``runnable_method`` when it has one), for ``learn_input``."""

    def calls(methods: tuple[str, ...]) -> dict[str, Callable[[Any], Any]]:
        found = {}
        for name in methods:
            if adapt is not None:
                function = adapt(model, name)
            else:
                function = model if name == "__call__" else getattr(model, name, None)
            if callable(function):
                found[name] = function
        return found

    return calls
