"""PandasDataFrame and PandasSeries over real HTTP: JSON orients, CSV, Parquet, validation."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import httpx
import numpy as np
import pandas as pd
import pytest

import dosirak
from dosirak.exceptions import InvalidArgument
from dosirak.io import PandasDataFrame, PandasSeries
from live_server import serve

PARQUET = "application/vnd.apache.parquet"
FRAME = pd.DataFrame({"sepal_length": [5.1, 6.2], "species": ["setosa", "2020-01-01"],
                      "count": [1, 2]})


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    svc = dosirak.Service("pandas_io")

    @svc.api(input=PandasDataFrame(), output=PandasDataFrame())
    def echo(df: pd.DataFrame) -> pd.DataFrame:
        return df

    for orient in ("columns", "index", "split", "values"):
        def same(df: pd.DataFrame) -> pd.DataFrame:
            return df

        svc.api(input=PandasDataFrame(orient=orient), output=PandasDataFrame(orient=orient),
                name=f"echo_{orient}")(same)

    @svc.api(input=PandasDataFrame(columns=["a", "b"], dtype={"a": "float64", "b": "int64"},
                                   enforce_dtype=True, shape=(-1, 2), enforce_shape=True),
             output=PandasSeries())
    def total(df: pd.DataFrame) -> pd.Series:
        assert str(df["a"].dtype) == "float64" and str(df["b"].dtype) == "int64"
        return df["a"] + df["b"]

    @svc.api(input=PandasDataFrame(orient="values", columns=["x", "y"],
                                   apply_column_names=True),
             output=PandasDataFrame(default_format="csv"))
    def named(df: pd.DataFrame) -> pd.DataFrame:
        return df

    @svc.api(input=PandasSeries(dtype="float32", enforce_dtype=True, shape=(3,),
                                enforce_shape=True),
             output=PandasSeries())
    def series(s: pd.Series) -> pd.Series:
        assert s.dtype == np.float32
        return s * 2

    with serve(svc) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


def test_records_json_round_trip_keeps_strings_as_strings(client: httpx.Client) -> None:
    records = FRAME.to_dict(orient="records")
    response = client.post("/echo", json=records)
    assert response.status_code == 200
    assert response.json() == records  # "2020-01-01" stays text: no read_json guessing


@pytest.mark.parametrize("orient", ["columns", "index", "split", "values"])
def test_every_orient_round_trips(client: httpx.Client, orient: str) -> None:
    body = FRAME.to_json(orient=orient)
    response = client.post(f"/echo_{orient}", content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json() == json.loads(body)


def test_csv_in_csv_out(client: httpx.Client) -> None:
    csv = FRAME.to_csv(index=False)
    response = client.post("/echo", content=csv, headers={"content-type": "text/csv",
                                                          "accept": "text/csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(response.text)),
                                  pd.read_csv(io.StringIO(csv)))


def test_parquet_in_parquet_out(client: httpx.Client) -> None:
    buffer = io.BytesIO()
    FRAME.to_parquet(buffer)
    response = client.post("/echo", content=buffer.getvalue(),
                           headers={"content-type": PARQUET, "accept": PARQUET})
    assert response.status_code == 200
    assert response.headers["content-type"] == PARQUET
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(response.content)), FRAME)


def test_parquet_in_json_out(client: httpx.Client) -> None:
    buffer = io.BytesIO()
    FRAME.to_parquet(buffer)
    response = client.post("/echo", content=buffer.getvalue(),
                           headers={"content-type": "application/octet-stream"})
    assert response.json() == FRAME.to_dict(orient="records")


def test_enforced_columns_and_dtypes_name_the_column(client: httpx.Client) -> None:
    ok = client.post("/total", json=[{"a": 1.5, "b": 2}, {"a": 2, "b": 3}])
    assert ok.status_code == 200 and ok.json() == [3.5, 5.0]
    missing = client.post("/total", json=[{"a": 1.5}])
    assert missing.status_code == 400
    assert {"loc": ["body", "b"], "msg": "column is missing", "type": "missing"} in \
        missing.json()["detail"]
    wrong = client.post("/total", json=[{"a": 1.5, "b": "many"}])
    assert wrong.status_code == 400
    assert wrong.json()["detail"][0]["loc"] == ["body", "b"]
    assert "cannot be int64" in wrong.json()["detail"][0]["msg"]


def test_wrong_json_layout_is_400_with_an_example(client: httpx.Client) -> None:
    response = client.post("/echo", json={"a": [1, 2]})
    assert response.status_code == 400
    assert "orient 'records' expects a JSON array" in response.json()["error"]
    response = client.post("/echo_split", json={"rows": []})
    assert response.status_code == 400 and '"data"' in response.json()["error"]


def test_malformed_csv_and_parquet_are_400(client: httpx.Client) -> None:
    csv = client.post("/echo", content=b'a,b\n"1,2\n', headers={"content-type": "text/csv"})
    assert csv.status_code == 400 and "malformed CSV" in csv.json()["error"]
    parquet = client.post("/echo", content=b"PAR1 nonsense", headers={"content-type": PARQUET})
    assert parquet.status_code == 400 and "malformed Parquet" in parquet.json()["error"]


def test_values_with_column_names_and_csv_default(client: httpx.Client) -> None:
    response = client.post("/named", json=[[1, 2], [3, 4]])
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text.splitlines() == ["x,y", "1,2", "3,4"]
    as_json = client.post("/named", json=[[1, 2]], headers={"accept": "application/json"})
    assert as_json.json() == [{"x": 1, "y": 2}]


def test_series_round_trip_and_validation(client: httpx.Client) -> None:
    assert client.post("/series", json=[1, 2.5, 3]).json() == [2.0, 5.0, 6.0]
    wrong_length = client.post("/series", json=[1, 2])
    assert wrong_length.status_code == 400
    assert wrong_length.json()["detail"][0]["loc"] == ["body", "axis 0"]
    wrong_type = client.post("/series", json=["a", "b", "c"])
    assert wrong_type.status_code == 400 and "float32" in wrong_type.json()["error"]
    nested = client.post("/series", json=[[1], [2], [3]])
    assert nested.status_code == 400


def test_from_sample_documents_columns() -> None:
    descriptor = PandasDataFrame.from_sample(FRAME)
    assert descriptor.columns == ["sepal_length", "species", "count"]
    assert descriptor.schema()["items"]["properties"]["count"] == {"type": "integer"}
    assert descriptor.example() == FRAME.to_dict(orient="records")
    series = PandasSeries.from_sample(pd.Series([1.0, 2.0]))
    # A list, or an {index: value} object (read whatever the orient).
    assert series.schema() == {"anyOf": [
        {"type": "array", "items": {"type": "number", "nullable": True}},
        {"type": "object", "additionalProperties": {"type": "number", "nullable": True}}]}


def test_bad_options_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="orient must be one of"):
        PandasDataFrame(orient="table")
    with pytest.raises(InvalidArgument, match="apply_column_names"):
        PandasDataFrame(apply_column_names=True)
    with pytest.raises(InvalidArgument, match="default_format"):
        PandasDataFrame(default_format="xlsx")
