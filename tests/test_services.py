"""Service and InferenceAPI: declaring APIs, and the mistakes refused at declaration time."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

import dosirak
from dosirak.exceptions import InvalidArgument
from dosirak.io import JSON, Multipart, NumpyNdarray, Text
from dosirak.services import Service


def test_defaults_route_name_and_description() -> None:
    svc = Service("iris_classifier")

    @svc.api(input=NumpyNdarray(), output=NumpyNdarray())
    def classify(x: np.ndarray) -> np.ndarray:
        """Classify irises.

        Longer text.
        """
        return x

    api = svc.apis["classify"]
    assert api.route == "/classify" and api.name == "classify" and not api.is_async
    assert api.description == "Classify irises.\n\nLonger text."
    assert classify(np.ones(1)) == np.ones(1)  # the decorator returns the function itself


def test_explicit_route_name_doc_and_async() -> None:
    svc = dosirak.Service("svc")

    @svc.api(input=Text(), output=Text(), route="/v2/models/my_model/versions/v0/infer",
             name="infer", doc="Custom doc.")
    async def predict(text: str) -> str:
        return text

    api = svc.apis["infer"]
    assert api.route == "/v2/models/my_model/versions/v0/infer"
    assert api.description == "Custom doc." and api.is_async


def test_missing_descriptors_come_from_annotations() -> None:
    svc = Service("svc")

    @svc.api()
    def echo(text: str) -> dict[str, Any]:
        return {"text": text}

    @svc.api()
    def pair(a: np.ndarray, b: str = "x") -> np.ndarray:
        return a

    assert svc.apis["echo"].input == Text() and svc.apis["echo"].output == JSON()
    pair_input = svc.apis["pair"].input
    assert isinstance(pair_input, Multipart) and pair_input.optional == {"b"}
    assert svc.apis["pair"].kwargs_input


@pytest.mark.parametrize("name", ["Iris classifier", "iris classifier", "", "-iris", "iris_"])
def test_bad_service_names(name: str) -> None:
    with pytest.raises(InvalidArgument, match="service name"):
        Service(name)


@pytest.mark.parametrize("route", ["a b", "/a b", "/{param}", "/", "/docs.json",
                                   "/livez", "/readyz", "/static/x"])
def test_bad_or_reserved_routes(route: str) -> None:
    svc = Service("svc")
    with pytest.raises(InvalidArgument, match="route"):
        svc.api(input=Text(), output=Text(), route=route)(_echo)


def test_duplicate_names_and_routes_are_refused() -> None:
    svc = Service("svc")
    svc.api(input=Text(), output=Text())(_echo)
    with pytest.raises(InvalidArgument, match="already has an API named '_echo'"):
        svc.api(input=Text(), output=Text())(_echo)
    with pytest.raises(InvalidArgument, match="both use route '/_echo'"):
        svc.api(input=Text(), output=Text(), name="other", route="/_echo")(_echo)


def _echo(text: str) -> str:
    return text


def test_function_must_fit_its_input() -> None:
    svc = Service("svc")
    with pytest.raises(InvalidArgument, match="do not fit its input"):
        svc.api(input=Multipart(a=Text(), b=Text()), output=Text())(_echo)
    def no_parameter() -> str:
        return ""

    with pytest.raises(InvalidArgument, match="do not fit its input"):
        svc.api(input=Text(), output=Text())(no_parameter)
    with pytest.raises(InvalidArgument, match="must be a Python identifier"):
        svc.api(input=Text(), output=Text())(lambda text: text)
    with pytest.raises(InvalidArgument, match="must be an IO descriptor"):
        svc.api(input=np.ndarray, output=Text())(_echo)  # type: ignore[arg-type]


def test_non_runners_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="is not a runner"):
        Service("svc", runners=["iris_clf"])


def test_public_names() -> None:
    assert dosirak.Service is Service
    assert callable(dosirak.service) and callable(dosirak.api)
    assert dosirak.io.NumpyNdarray is NumpyNdarray


def test_async_callables_of_every_kind_are_awaited() -> None:
    class Model:
        async def __call__(self, text: str) -> str:
            return text

    async def echo(text: str, suffix: str) -> str:
        return text + suffix

    svc = Service("svc")
    svc.api(input=Text(), output=Text(), name="model")(Model())
    svc.api(input=Text(), output=Text(), name="partial")(functools.partial(echo, suffix="!"))
    assert svc.apis["model"].is_async and svc.apis["partial"].is_async
