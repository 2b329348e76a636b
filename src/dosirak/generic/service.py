"""Build a ``Service`` from a generic service config: no Python from the user.

Each endpoint becomes an async API that converts its input for the model, awaits the runner's
method (so concurrent requests of a batchable method are merged into batches) and converts the
answer to the configured output. Endpoints on the same stored model share one runner. Everything
that can be checked is checked here, before serving: the model exists, the method is one of its
signatures, the framework matches, the descriptors accept their options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dosirak import io as descriptors
from dosirak import models
from dosirak.exceptions import DosirakError, InvalidArgument, ModelNotFound
from dosirak.generic.config import (
    EndpointConfig,
    GenericServiceConfig,
    IOConfig,
    load_config,
    parse_config,
)
from dosirak.generic.conversion import SINGLE_ITEM_INPUTS, input_converter, output_converter
from dosirak.generic.envelope import Envelope
from dosirak.io.base import IODescriptor
from dosirak.services import Service, build_api

# The method an endpoint calls when the config names none, in order of preference.
_DEFAULT_METHODS = ("predict", "__call__", "run")


def build_service(source: str | Path | dict[str, Any] | GenericServiceConfig) -> Service:
    """The generic service described by a config file (JSON or YAML), dict or parsed config.

        >>> svc = build_service("iris.yaml")
        >>> create_app(svc)            # or: CONFIG_PATH=iris.yaml dosirak serve dosirak.generic:svc
    """
    if isinstance(source, GenericServiceConfig):
        config, where = source, "the config"
    elif isinstance(source, dict):
        config, where = parse_config(source), "the config"
    else:
        config, where = load_config(source), str(source)
    plans = [_plan(endpoint, index, where) for index, endpoint in enumerate(config.endpoints)]
    runners = _runners(plans, where)
    svc = Service(config.service, runners=list(runners.values()),
                  models=list({str(plan.model.tag): plan.model for plan in plans}.values()))
    for plan in plans:
        runner = runners[str(plan.model.tag)]
        try:
            svc.add_api(_api(plan, runner))
        except InvalidArgument as error:
            raise InvalidArgument(f"{where}: {plan.where}: {error}") from None
    return svc


class _Plan:
    """One endpoint, resolved against the store."""

    def __init__(self, endpoint: EndpointConfig, where: str, model: models.Model,
                 method: str) -> None:
        self.endpoint = endpoint
        self.where = where
        self.model = model
        self.method = method
        self.signature = model.info.signatures[method]


def _plan(endpoint: EndpointConfig, index: int, source: str) -> _Plan:
    where = f"endpoints[{index}]"
    try:
        model = models.get(endpoint.model)
    except ModelNotFound as error:
        raise InvalidArgument(f"{source}: {where}.model: {error}") from None
    except DosirakError as error:
        raise InvalidArgument(f"{source}: {where}.model: {endpoint.model!r}: {error}") from None
    module = model.info.module
    if endpoint.framework is not None and module.removeprefix("dosirak.") != endpoint.framework:
        raise InvalidArgument(f"{source}: {where}.framework: model {model.tag} was saved with "
                              f"{module}, not {endpoint.framework!r}; fix the framework or "
                              "leave it out (the store knows it)")
    signatures = model.info.signatures
    method = endpoint.method or next((name for name in _DEFAULT_METHODS if name in signatures),
                                     next(iter(signatures)))
    if method not in signatures:
        raise InvalidArgument(f"{source}: {where}.method: model {model.tag} has no signature "
                              f"{method!r}; its methods are {sorted(signatures)}")
    return _Plan(endpoint, where, model, method)


def _runners(plans: list[_Plan], source: str) -> dict[str, Any]:
    """One runner per stored model, with each method's batching options."""
    by_tag: dict[str, list[_Plan]] = {}
    for plan in plans:
        by_tag.setdefault(str(plan.model.tag), []).append(plan)
    runners: dict[str, Any] = {}
    taken: set[str] = set()
    for tag, group in by_tag.items():
        model = group[0].model
        method_configs: dict[str, dict[str, Any]] = {}
        for plan in group:
            options = _batching(plan)
            if method_configs.setdefault(plan.method, options) != options:
                raise InvalidArgument(f"{source}: {plan.where}.batching: model {tag} method "
                                      f"{plan.method!r} has other batching options in another "
                                      "endpoint; one method has one batching setting")
        name = model.tag.name.lower()
        if name in taken:  # two versions of one model: the second runner needs its own name
            name = f"{name}-{model.tag.version}".lower()
        taken.add(name)
        runners[tag] = model.to_runner(name=name, method_configs=method_configs)
    return runners


def _batching(plan: _Plan) -> dict[str, Any]:
    batching = plan.endpoint.batching
    options: dict[str, Any] = {}
    if not batching.enabled:
        options["max_batch_size"] = 1  # a size of one turns the runner's dispatcher off
    elif batching.max_batch_size is not None:
        options["max_batch_size"] = batching.max_batch_size
    if batching.max_latency_ms is not None:
        options["max_latency_ms"] = batching.max_latency_ms
    return options


def _api(plan: _Plan, runner: Any) -> Any:
    endpoint = plan.endpoint
    input_descriptor = _descriptor(endpoint.input, f"{plan.where}.input")
    output_descriptor = _descriptor(endpoint.output, f"{plan.where}.output")
    if endpoint.envelope:
        output_descriptor = Envelope(output_descriptor)
    batchable = plan.signature.batchable
    try:
        to_model = input_converter(endpoint.input.type, plan.model.info.module, endpoint.dtype,
                                   batchable)
    except TypeError as error:  # numpy refuses the dtype name
        raise InvalidArgument(f"{plan.where}.dtype: {endpoint.dtype!r} is not a numpy dtype "
                              f"({error})") from None
    from_model = output_converter(endpoint.output.type,
                                  endpoint.input.type in SINGLE_ITEM_INPUTS and batchable)
    method = runner.methods[plan.method]

    async def call(value: Any) -> Any:
        return from_model(await method.async_run(to_model(value)))

    call.__name__ = call.__qualname__ = endpoint.name
    doc = endpoint.doc or (f"Calls `{plan.method}` of model `{plan.model.tag}` "
                           f"({plan.model.info.module}).")
    return build_api(call, input=input_descriptor, output=output_descriptor,
                     route=endpoint.route, name=endpoint.name, doc=doc)


def _descriptor(config: IOConfig, where: str) -> IODescriptor:
    cls = getattr(descriptors, config.type)
    options = config.options
    if config.type == "JSON" and options:
        raise InvalidArgument(f"{where}: a JSON descriptor takes no options in a config (its "
                              f"pydantic model needs Python); remove {sorted(options)}")
    try:
        return cls(**options)
    except TypeError as error:
        raise InvalidArgument(f"{where}: {config.type} does not take these options: {error}") \
            from None
    except InvalidArgument as error:
        raise InvalidArgument(f"{where}: {error}") from None
