"""Issue 17, bugs 3 and 6 (names): uppercase model and service names are lowercased with a
warning as BentoML does, a route without its leading ``/`` gets one, and ``Tag`` has BentoML's
``from_str`` / ``from_taglike``."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import dosirak as bentoml
from dosirak.exceptions import InvalidArgument


def test_uppercase_model_name_is_saved_lowercase_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dosirak"):
        saved = bentoml.picklable_model.save_model("IrisClf", {"a": 1})
    assert saved.tag.name == "irisclf"
    assert "'IrisClf'" in caplog.text and "'irisclf'" in caplog.text
    assert bentoml.models.get("irisclf:latest").tag == saved.tag


def test_uppercase_service_name_and_route_without_slash() -> None:
    svc = bentoml.Service("IrisClassifier")

    @svc.api(input=bentoml.io.NumpyNdarray(), output=bentoml.io.NumpyNdarray(),
             route="v1/classify")
    def classify(x: np.ndarray) -> np.ndarray:
        return x

    assert svc.name == "irisclassifier"
    assert svc.apis["classify"].route == "/v1/classify"


def test_tag_from_str_and_from_taglike(caplog: pytest.LogCaptureFixture) -> None:
    assert bentoml.Tag.from_str("iris_clf:v1") == bentoml.Tag("iris_clf", "v1")
    with caplog.at_level(logging.WARNING, logger="dosirak"):
        assert bentoml.Tag.from_taglike("IrisClf:V1") == bentoml.Tag("irisclf", "v1")
    assert "lowercase" in caplog.text
    tag = bentoml.Tag("a", "b")
    assert bentoml.Tag.from_taglike(tag) is tag
    assert bentoml.Tag.from_str("iris_clf").version is None
    with pytest.raises(InvalidArgument, match="string"):
        bentoml.Tag.from_str(3)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="lowercase letters"):
        bentoml.Tag.from_str("bad name")


def test_inference_api_func_is_the_users_function() -> None:
    svc = bentoml.Service("svc")

    @svc.api(input=bentoml.io.Text(), output=bentoml.io.Text())
    def echo(text: str) -> str:
        return text

    assert svc.apis["echo"].func is echo
    assert svc.apis["echo"].func("hi") == "hi"
