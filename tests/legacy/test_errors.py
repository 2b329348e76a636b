"""Bad input to the 0.x API: each is a clear error (what, why, how to fix); a request's is a 4xx.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sklearn import datasets, svm

import dosirak
from dosirak import BentoService, api, artifacts, env
from dosirak.adapters import DataframeInput, JsonInput
from dosirak.exceptions import InvalidArgument
from dosirak.frameworks.sklearn import SklearnModelArtifact
from dosirak.io import NumpyNdarray
from dosirak.legacy.service import api as legacy_api
from dosirak.service.artifacts.common import JSONArtifact, PickleArtifact
from live_server import serve


@env(pip_packages=["scikit-learn"])
@artifacts([SklearnModelArtifact("model"), JSONArtifact("labels")])
class Flowers(BentoService):
    """Iris names"""

    @api(input=DataframeInput(), batch=True, mb_max_batch_size=50, mb_max_latency=500)
    def predict(self, df):
        """Classes"""
        return self.artifacts.model.predict(df)

    @api(input=JsonInput(), batch=True)
    def name(self, items):
        """Names of classes"""
        return [self.artifacts.labels[str(item)] for item in items]

    @api(input=JsonInput())
    def one(self, item):
        return {"class": item, "name": self.artifacts.labels[str(item)]}


def _clf() -> svm.SVC:
    X, y = datasets.load_iris(return_X_y=True)
    return svm.SVC().fit(X, y)


def test_packing_an_unknown_artifact_name_says_which_exist() -> None:
    with pytest.raises(InvalidArgument, match=r"no artifact named 'modle' .*\['labels', 'model'\]"):
        Flowers().pack("modle", _clf())


def test_packing_an_artifact_of_the_wrong_kind_says_what_it_takes() -> None:
    with pytest.raises(InvalidArgument, match=r"SklearnModelArtifact\('model'\) stores a "
                                              r"scikit-learn estimator.*got builtins.str"):
        Flowers().pack("model", "not a model")
    with pytest.raises(InvalidArgument, match="JSON-serialisable"):
        Flowers().pack("labels", {1, 2})


def test_saving_before_packing_names_the_empty_artifacts() -> None:
    svc = Flowers().pack("model", _clf())
    with pytest.raises(InvalidArgument, match=r"artifact\(s\) \['labels'\] are empty; pack "):
        svc.save()
    assert dosirak.bentos.list() == [] and dosirak.models.list() == []  # nothing half-saved


def test_using_an_empty_artifact_says_to_pack_it() -> None:
    with pytest.raises(Exception, match="artifact 'model' is empty: pack it first"):
        Flowers().artifacts.model  # noqa: B018


def test_mixing_the_two_api_styles_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="arguments of both styles"):
        dosirak.api(input=DataframeInput(), batchable=True)
    with pytest.raises(InvalidArgument, match=r"but the class is a @dosirak\.service"):
        @dosirak.service(name="mixed")
        class Mixed:
            @dosirak.api(input=JsonInput(), batch=True)
            def predict(self, items):
                return items

    class Modern(BentoService):
        @dosirak.api(input=NumpyNdarray(), output=NumpyNdarray(), batchable=True)
        def predict(self, array):
            return array

    with pytest.raises(InvalidArgument, match=r"is a BentoService: declare it with the 0\.x"):
        Modern()
    with pytest.raises(InvalidArgument, match="@artifacts decorates subclasses"):
        artifacts([PickleArtifact("x")])(object)
    with pytest.raises(InvalidArgument, match="input adapter such as DataframeInput"):
        legacy_api(input=NumpyNdarray())  # a 1.x descriptor in a BentoService's @api
    with pytest.raises(InvalidArgument, match="mb_max_batch_size must be an int"):
        dosirak.api(input=DataframeInput(), batch=True, mb_max_batch_size=0)


def test_bad_requests_are_4xx_and_good_ones_keep_0x_shapes(tmp_path: Path) -> None:
    svc = Flowers().pack("model", _clf()).pack("labels", {"0": "setosa", "1": "versicolor",
                                                          "2": "virginica"})
    with serve(svc.to_service()) as url:
        answer = httpx.post(f"{url}/predict", json=[[5.1, 3.5, 1.4, 0.2]])
        assert (answer.status_code, answer.json()) == (200, [0])
        answer = httpx.post(f"{url}/name", json=2)  # batch=True, one item per request
        assert (answer.status_code, answer.json()) == (200, "virginica")
        answer = httpx.post(f"{url}/one", json=1)  # batch=False: the function's own answer
        assert answer.json() == {"class": 1, "name": "versicolor"}
        for body, media_type in ((b"[[1, 2", "application/json"),
                                 (b"\xff\xfe", "text/csv"),
                                 (b'{"a": 1}', "application/x-yaml")):
            answer = httpx.post(f"{url}/predict", content=body,
                                headers={"content-type": media_type})
            assert 400 <= answer.status_code < 500, (body, answer.text)
            assert answer.json()["error"]
