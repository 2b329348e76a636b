"""Batch inference on Spark: an API of a service, or a stored model's method, over a DataFrame.

    >>> from dosirak import spark as dosirak_spark
    >>> scored = dosirak_spark.run_in_spark(df, "iris.yaml", "classify")      # an API
    >>> scored = dosirak_spark.run_model(df, "iris_clf:latest", columns=[...])  # a model

The result is ``df`` with the result columns added (``result``, or ``result_0 ...``; a DataFrame
answer keeps its own column names), computed with ``mapInPandas``: each executor task gets Arrow
batches of rows as pandas DataFrames and calls the API once per batch.

How models reach the executors. The driver exports every model the service uses to an archive
(``dosirak.models.export_model``) and ships it with ``SparkContext.addFile``; a service file
(``path/to/service.py:svc``) is shipped with ``addPyFile``; a bento (``iris_classifier:latest``)
travels whole, its sources and models in one ``.bento`` archive (``dosirak.bentos.export_bento``).
Nothing assumes a disk shared with the driver. Each executor's Python worker imports the archives
into a private store of its own, builds the service and starts its runners in the worker itself
(no HTTP server, no extra processes), once:
the loaded service is cached in this module, so later tasks in the same Python worker (Spark
reuses them) find it loaded. A row that fails fails its Spark task, as any Spark function does.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dosirak.exceptions import InvalidArgument

#: Rows per Arrow batch handed to the API (Spark's own default is 10,000).
DEFAULT_BATCH_ROWS = 10_000
_HOME_PREFIX = "dosirak-spark-"


@dataclass(frozen=True)
class _Spec:
    """What an executor needs to rebuild the service: plain data, shipped with the function."""

    key: str
    archives: tuple[str, ...]  # file names registered with SparkContext.addFile
    api: str
    config: str | None = None  # a generic service config, as JSON
    target: str | None = None  # "module:attribute" of a service file shipped with addPyFile
    columns: tuple[str, ...] | None = None
    keep_input: bool = True
    bento: bool = False  # target is a bento's full tag; archives holds its .bento archive


def run_in_spark(df: Any, target: str, api_name: str, *, columns: list[str] | None = None,
                 output_schema: Any = None, keep_input: bool = True,
                 batch_rows: int = DEFAULT_BATCH_ROWS) -> Any:
    """Score ``df`` with API ``api_name`` of ``target`` (``module:svc``, ``file.py:svc``, a
    bento's tag such as ``iris_classifier:latest``, or a generic service config file); returns
    a new Spark DataFrame.

    ``columns`` picks (and orders) the input columns the API gets; all by default.
    ``output_schema`` (a ``StructType`` or DDL string of the result columns) skips the sample
    run on the driver that otherwise finds the result's types. ``keep_input=False`` returns the
    result columns only.
    """
    from dosirak.offline.target import is_config_target, load_target

    sc = df.sparkSession.sparkContext
    if is_config_target(target):
        from dosirak.generic import build_service, load_config

        config = _pinned_config(load_config(target).model_dump(by_alias=False))
        svc = build_service(config)
        return _run(df, svc, api_name, config=json.dumps(config), target=None,
                    columns=columns, output_schema=output_schema, keep_input=keep_input,
                    batch_rows=batch_rows)
    from dosirak.target import parse_target

    bento = parse_target(target).bento
    svc = load_target(bento or target)
    if bento is not None:  # the bento and its models travel as one .bento archive
        return _run(df, svc, api_name, config=None, target=bento, columns=columns,
                    output_schema=output_schema, keep_input=keep_input, batch_rows=batch_rows,
                    archives=(_ship_bento(sc, bento),), bento=True)
    return _run(df, svc, api_name, config=None, target=_ship_module(sc, target),
                columns=columns, output_schema=output_schema, keep_input=keep_input,
                batch_rows=batch_rows)


def run_model(df: Any, tag: str, method: str | None = None, *, columns: list[str] | None = None,
              output_schema: Any = None, keep_input: bool = True,
              batch_rows: int = DEFAULT_BATCH_ROWS) -> Any:
    """Score ``df`` with a stored model's ``method`` (default: from its signatures).

    Tabular models (scikit-learn, XGBoost, LightGBM) get the rows as a pandas DataFrame, tensor
    models (PyTorch, TensorFlow, Keras, ONNX) as a float32 array, as in the generic service.
    """
    from dosirak import models
    from dosirak.generic import build_service

    model = models.get(tag)
    config = {"service": "spark", "endpoints": [{
        "name": "predict", "model": str(model.tag), "method": method,
        "input": "PandasDataFrame", "output": "NumpyNdarray", "envelope": False}]}
    svc = build_service(config)
    return _run(df, svc, "predict", config=json.dumps(config), target=None, columns=columns,
                output_schema=output_schema, keep_input=keep_input, batch_rows=batch_rows)


# ----- the driver -------------------------------------------------------------------------


def _run(df: Any, svc: Any, api_name: str, *, config: str | None, target: str | None,
         columns: list[str] | None, output_schema: Any, keep_input: bool,
         batch_rows: int, archives: tuple[str, ...] | None = None, bento: bool = False) -> Any:
    from dosirak.offline import tables

    api = svc.apis.get(api_name)
    if api is None:
        raise InvalidArgument(f"service {svc.name!r} has no API {api_name!r}; its APIs: "
                              f"{sorted(svc.apis)}")
    tables.table_mode(api.input, api_name)  # refuses inputs that are not rows of a table
    if columns is not None:
        missing = [column for column in columns if column not in df.columns]
        if missing:
            raise InvalidArgument(f"columns {missing} are not in the DataFrame; it has "
                                  f"{df.columns}")
    session = df.sparkSession
    session.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_rows))
    if archives is None:
        archives = tuple(_ship_models(session.sparkContext, _models_of(svc)))
    key = hashlib.sha256(json.dumps([archives, api_name, config, target]).encode()).hexdigest()
    spec = _Spec(key=key, archives=archives, api=api_name, config=config, target=target,
                 columns=tuple(columns) if columns is not None else None,
                 keep_input=keep_input, bento=bento)
    result_schema = _result_schema(df, svc, spec, output_schema)
    if keep_input:
        clash = [field.name for field in result_schema.fields if field.name in df.columns]
        if clash:
            raise InvalidArgument(f"result columns {clash} are already in the DataFrame; "
                                  "rename them first or pass keep_input=False")
        from pyspark.sql.types import StructType

        schema = StructType(list(df.schema.fields) + list(result_schema.fields))
    else:
        schema = result_schema

    def score(frames: Iterator[Any]) -> Iterator[Any]:
        return _score(frames, spec)

    return df.mapInPandas(score, schema)


def _models_of(svc: Any) -> list[Any]:
    found: dict[str, Any] = {}
    for model in list(svc.models) + [m for runner in svc.runners for m in runner.models]:
        found[str(model.tag)] = model
    return list(found.values())


_EXPORTS: dict[str, str] = {}  # model's full tag, or "bento TAG" -> archive on the driver
_EXPORT_LOCK = threading.Lock()


def _ship_models(sc: Any, models_used: list[Any]) -> list[str]:
    from dosirak import models

    names = []
    with _EXPORT_LOCK:
        for model in models_used:
            tag = str(model.tag)
            if tag not in _EXPORTS:
                directory = tempfile.mkdtemp(prefix="dosirak-spark-export-")
                # The archives must outlive this call: Spark reads them when tasks run.
                atexit.register(shutil.rmtree, directory, True)
                path = models.export_model(tag, directory + os.sep)
                sc.addFile(path)
                _EXPORTS[tag] = path
            names.append(os.path.basename(_EXPORTS[tag]))
    return names


def _ship_bento(sc: Any, tag: str) -> str:
    """Export the bento ``tag`` (with its models) once and ship it; returns its file name."""
    from dosirak import bentos

    with _EXPORT_LOCK:
        key = f"bento {tag}"
        if key not in _EXPORTS:
            directory = tempfile.mkdtemp(prefix="dosirak-spark-export-")
            atexit.register(shutil.rmtree, directory, True)  # Spark reads it when tasks run
            path = bentos.export_bento(tag, directory + os.sep)
            sc.addFile(path)
            _EXPORTS[key] = path
        return os.path.basename(_EXPORTS[key])


def _ship_module(sc: Any, target: str) -> str:
    """Ship the service's file with addPyFile; returns ``module:attribute`` for the executors."""
    import sys

    from dosirak.target import parse_target

    parsed = parse_target(target)
    module = sys.modules.get(parsed.module)
    file = parsed.file or (Path(module.__file__) if module is not None and
                           module.__file__ else None)
    if file is not None and file.name != "__init__.py":
        sc.addPyFile(str(file))
    return f"{parsed.module}:{parsed.attribute or 'svc'}"


def _pinned_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config with each model tag resolved to its version: executors get those versions."""
    from dosirak import models

    for endpoint in config["endpoints"]:
        endpoint["model"] = str(models.get(endpoint["model"]).tag)
    return config


def _result_schema(df: Any, svc: Any, spec: _Spec, given: Any) -> Any:
    """The result columns' Spark schema: given, or found by scoring a few rows on the driver."""
    from pyspark.sql.types import StructType

    if given is not None:
        return StructType.fromDDL(given) if isinstance(given, str) else given
    sample = df.limit(8).toPandas()
    if sample.empty:
        raise InvalidArgument("the DataFrame is empty, so the result's types cannot be found "
                              "by scoring a sample; pass output_schema=")
    loaded = _Loaded(svc, spec.api)
    try:
        result = _result_frame(loaded, _inputs(sample, spec))
    finally:
        loaded.close()
    return df.sparkSession.createDataFrame(result).schema


# ----- the executors ----------------------------------------------------------------------


class _Loaded:
    """A started service in this process, with an event loop of its own in a thread."""

    def __init__(self, svc: Any, api_name: str) -> None:
        self.svc = svc
        self.api = svc.apis[api_name]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="dosirak-spark",
                                       daemon=True)
        self.thread.start()
        for runner in svc.runners:  # each Arrow batch is a batch already
            for method in runner.methods.values():
                method.max_batch_size = 1
        self._await(svc.startup(runner_mode="local"))

    def _await(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def call(self, value: Any) -> Any:
        if self.api.is_async:
            return self._await(self.api.callable(value))
        return self.api.callable(value)  # sync code may call runner.method.run() from here

    def close(self) -> None:
        self._await(self.svc.shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


_CACHE: dict[str, _Loaded] = {}
_CACHE_LOCK = threading.Lock()


def _load(spec: _Spec) -> _Loaded:
    """The service of ``spec`` in this Python worker, loaded on first use."""
    with _CACHE_LOCK:
        loaded = _CACHE.get(spec.key)
        if loaded is None:
            loaded = _CACHE[spec.key] = _Loaded(_build(spec), spec.api)
        return loaded


def _build(spec: _Spec) -> Any:
    from pyspark import SparkFiles

    from dosirak import models

    # A store of this worker's own: the driver's store is not reachable from here.
    home = tempfile.mkdtemp(prefix=_HOME_PREFIX)
    atexit.register(shutil.rmtree, home, True)
    os.environ["DOSIRAK_HOME"] = home
    for name in spec.archives:
        if spec.bento:
            from dosirak import bentos

            bentos.import_bento(SparkFiles.get(name))
        else:
            models.import_model(SparkFiles.get(name))
    if spec.config is not None:
        from dosirak.generic import build_service

        return build_service(json.loads(spec.config))
    from dosirak.target import load_service

    return load_service(spec.target or "")


def _score(frames: Iterator[Any], spec: _Spec) -> Iterator[Any]:
    import pandas as pd

    loaded = _load(spec)
    for frame in frames:
        if frame.empty:
            continue
        result = _result_frame(loaded, _inputs(frame, spec))
        if spec.keep_input:
            result = pd.concat([frame.reset_index(drop=True), result], axis=1)
        yield result


def _inputs(frame: Any, spec: _Spec) -> Any:
    return frame[list(spec.columns)] if spec.columns is not None else frame


def _result_frame(loaded: _Loaded, frame: Any) -> Any:
    """The API's answers for the rows of ``frame``, as a DataFrame of result columns."""
    from dosirak.offline import tables
    from dosirak.offline.readers import Chunk
    from dosirak.offline.writers import as_frame

    api = loaded.api
    chunk = Chunk(0, frame.reset_index(drop=True), len(frame))
    if tables.table_mode(api.input, api.name):
        prepared = tables.prepare(chunk, api.input)
        if prepared.bad:
            row, message = prepared.bad[0]
            raise InvalidArgument(f"row {row} of this Spark batch cannot be the API's input: "
                                  f"{message}")
        answer = tables.results_of(loaded.call(prepared.value), len(frame), api.name)
    else:
        answers = []
        for row, value, error in tables.prepare_rows(chunk, api.input):
            if error is not None:
                raise InvalidArgument(f"row {row} of this Spark batch cannot be the API's "
                                      f"input: {error}")
            one = loaded.call(value)
            answers.append(one[0] if isinstance(one, list | tuple) and len(one) == 1 else one)
        answer = tables.rows_of(answers)
    return as_frame(answer).reset_index(drop=True)
