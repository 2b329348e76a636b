"""dosirak.spark on a real local[2] Spark bound to 127.0.0.1: scores match the model's own
predictions, models travel as archives, each Python worker loads a model once."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dosirak
import dosirak.spark
from conftest import COLUMNS, iris_rows


@pytest.fixture(scope="session")
def spark():
    """One Spark session for every test here (a session takes seconds to start)."""
    os.environ["PYSPARK_PYTHON"] = sys.executable  # executors run this venv's Python
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("dosirak-tests")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.python.worker.reuse", "true")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def iris_frame(spark, count: int, partitions: int, seed: int = 0):
    rows = iris_rows(count, seed)
    return rows, spark.createDataFrame(pd.DataFrame(rows, columns=COLUMNS)).repartition(
        partitions)


def test_generic_config_api_matches_the_model(spark, generic_config, iris_clf):
    rows, df = iris_frame(spark, 2000, partitions=4)
    scored = dosirak.spark.run_in_spark(df, str(generic_config), "classify").toPandas()
    assert list(scored.columns) == [*COLUMNS, "result"]
    expected = iris_clf.predict(scored[COLUMNS].to_numpy())
    np.testing.assert_array_equal(scored["result"].to_numpy(), expected)
    assert len(scored) == 2000
    # Same rows as the input: every input row scored once, the scores the model's own.
    np.testing.assert_array_equal(np.sort(scored[COLUMNS].to_numpy(), axis=0),
                                  np.sort(rows, axis=0))


def test_service_file_api(spark, service_file, iris_clf):
    _rows, df = iris_frame(spark, 500, partitions=2, seed=1)
    scored = dosirak.spark.run_in_spark(df, f"{service_file}:svc", "classify",
                                        columns=COLUMNS, output_schema="result long",
                                        keep_input=True).toPandas()
    np.testing.assert_array_equal(scored["result"].to_numpy(),
                                  iris_clf.predict(scored[COLUMNS].to_numpy()))


def test_model_method_loaded_once_per_python_worker(spark, tmp_path):
    log = tmp_path / "loads.txt"

    class Scorer:
        """Appends its process id to ``log`` whenever it is unpickled (loaded)."""

        def __init__(self, path: str) -> None:
            self.path = path

        def __setstate__(self, state: dict) -> None:
            self.__dict__.update(state)
            with open(self.path, "a") as stream:
                stream.write(f"{os.getpid()}\n")

        def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
            total = frame.to_numpy().sum(axis=1, keepdims=True)
            return np.hstack([total, total * 2])

    dosirak.picklable_model.save_model(
        "scorer", Scorer(str(log)),
        signatures={"predict_proba": {"batchable": True, "batch_dim": 0}})
    rows, df = iris_frame(spark, 4000, partitions=8, seed=2)
    scored = dosirak.spark.run_model(df, "scorer:latest", keep_input=False,
                                     batch_rows=256).toPandas()
    assert list(scored.columns) == ["result_0", "result_1"]
    np.testing.assert_allclose(np.sort(scored["result_0"]), np.sort(rows.sum(axis=1)))
    np.testing.assert_allclose(scored["result_1"], scored["result_0"] * 2)
    loads = [int(pid) for pid in log.read_text().split()]
    executor_loads = [pid for pid in loads if pid != os.getpid()]  # the driver's sample run
    # 8 partitions in batches of 256 rows ran in at most 2 Python workers: one load each.
    assert 1 <= len(executor_loads) <= 2
    assert len(set(executor_loads)) == len(executor_loads)


def test_models_travel_as_archives_not_through_the_drivers_store(spark, generic_config,
                                                                 iris_clf, dosirak_home):
    _rows, df = iris_frame(spark, 300, partitions=2, seed=3)
    scored = dosirak.spark.run_in_spark(df, str(generic_config), "classify")
    # The driver's store is gone before the job runs: executors only have the shipped archive.
    for model in dosirak.models.list():
        dosirak.models.delete(model.tag)
    result = scored.toPandas()
    np.testing.assert_array_equal(result["result"].to_numpy(),
                                  iris_clf.predict(result[COLUMNS].to_numpy()))
    assert not list(Path(dosirak_home).glob("models/iris_clf/*/model.yaml"))


def test_a_bento_by_tag_travels_as_one_archive(spark, service_file, iris_clf, tmp_path):
    """A bento's tag as the target: its sources and models reach the executors in one .bento
    archive; the driver's stores are emptied before the job runs."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "iris_service.py").write_text(service_file.read_text())
    (project / "bentofile.yaml").write_text("service: iris_service:svc\nname: iris_spark\n"
                                            "models: [iris_clf:latest]\n")
    bento = dosirak.bentos.build(project)
    _rows, df = iris_frame(spark, 400, partitions=2, seed=4)
    scored = dosirak.spark.run_in_spark(df, "iris_spark:latest", "classify", columns=COLUMNS,
                                        output_schema="result long")
    dosirak.bentos.delete(bento.tag, force=True)  # this process imported it: it holds a lease
    for model in dosirak.models.list():
        dosirak.models.delete(model.tag, force=True)
    result = scored.toPandas()
    np.testing.assert_array_equal(result["result"].to_numpy(),
                                  iris_clf.predict(result[COLUMNS].to_numpy()))
