"""``dosirak.monitor`` over a real ``dosirak serve``: one JSON line per request, a schema file,
rotation past the configured size, written the way BentoML 1.x's docs use it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import dosirak as bentoml
from dosirak.exceptions import InvalidArgument

from .serving import served

SERVICE = '''
import numpy as np

import dosirak as bentoml
from dosirak.io import NumpyNdarray

svc = bentoml.Service("iris_monitored")


@svc.api(input=NumpyNdarray(), output=NumpyNdarray())
def classify(input_series: np.ndarray) -> np.ndarray:
    with bentoml.monitor("iris_classifier_prediction") as mon:
        mon.log(input_series[0][0], name="sepal length", role="feature", data_type="numerical")
        mon.log(input_series[0][1], name="sepal width", role="feature", data_type="numerical")
        result = (input_series.sum(axis=1) > 10).astype(int)
        mon.log(int(result[0]), name="pred", role="prediction", data_type="categorical")
    return result
'''


def test_one_record_per_request_with_schema_and_rotation(tmp_path: Path) -> None:
    (tmp_path / "dosirak.yaml").write_text(
        "monitoring:\n  log_path: drift\n  max_bytes: 1500\n  backup_count: 2\n")
    with served(tmp_path, SERVICE, "svc", "--config", "dosirak.yaml") as server:
        for index in range(40):
            status, _, _ = server.post("/classify", [[5.0 + index, 3.5, 1.4, 0.2]])
            assert status == 200
        assert server.stop() == 0
    directory = tmp_path / "drift" / "iris_classifier_prediction"
    schema = json.loads((directory / "schema.json").read_text())
    assert schema["columns"] == [
        {"name": "sepal length", "role": "feature", "data_type": "numerical"},
        {"name": "sepal width", "role": "feature", "data_type": "numerical"},
        {"name": "pred", "role": "prediction", "data_type": "categorical"}]
    files = sorted(directory.glob("data.*.jsonl*"))
    names = {path.name.split(".jsonl")[1] for path in files}
    assert names == {"", ".1", ".2"}  # rotated, two backups kept, the oldest dropped
    assert all(path.stat().st_size <= 1500 for path in files)
    records = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    assert 10 < len(records) < 40  # the oldest went with rotation
    lengths = sorted(record["sepal length"] for record in records)
    assert lengths[-1] == 44.0 and lengths == sorted(set(lengths))  # the newest kept, no dups
    record = records[0]
    assert set(record) == {"timestamp", "request_id", "sepal length", "sepal width", "pred"}
    assert record["timestamp"].endswith("+00:00")


def test_a_block_that_raises_writes_nothing_and_names_are_checked(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    monkeypatch.chdir(tmp_path)
    bentoml.monitoring.configure(tmp_path / "mon")
    with pytest.raises(ZeroDivisionError), bentoml.monitor("m") as mon:
        mon.log(1, name="x", role="feature", data_type="numerical")
        _ = 1 / 0
    assert not (tmp_path / "mon" / "m").exists()
    with bentoml.monitor("m") as mon:
        mon.log_batch([1, 2], name="xs", role="feature", data_type="numerical_sequence")
    (line,) = next((tmp_path / "mon" / "m").glob("data.*.jsonl")).read_text().splitlines()
    assert json.loads(line)["xs"] == [1, 2] and json.loads(line)["request_id"] is None
    with pytest.raises(InvalidArgument, match="monitor name"), bentoml.monitor("../x"):
        pass
    with pytest.raises(InvalidArgument, match="timestamp"), bentoml.monitor("m") as mon:
        mon.log(1, name="timestamp", role="feature", data_type="numerical")
    bentoml.monitoring.configure("monitoring")
