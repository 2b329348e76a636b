"""Bounds on what a body may declare (columns, cells, pixels), over real HTTP.

Each of these bodies is small on the wire but costly to parse: before the limits, a 60,000-column
CSV kept the only worker busy for a minute and a 13000x13000 PNG decoded to 640 MB (issue 10).
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow
import pyarrow.parquet as parquet
import pytest
from PIL import Image as PILImage

import dosirak
from dosirak.config import ApiServerConfig, InputLimitsConfig, ServingConfig
from dosirak.exceptions import InvalidArgument
from dosirak.io import Image, Multipart, PandasDataFrame
from live_server import serve

PARQUET = "application/vnd.apache.parquet"
# The body: 4 real columns and 60,000 junk ones, about 400 KB.
WIDE_CSV = b"a,b,c,d" + b",x" * 60_000 + b"\n1,2,3,4" + b",0" * 60_000 + b"\n"


def png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("L", size).save(buffer, format="PNG")
    return buffer.getvalue()


def service() -> dosirak.Service:
    svc = dosirak.Service("limits")

    @svc.api(input=PandasDataFrame(), output=dosirak.io.JSON())
    def frame(df: pd.DataFrame) -> list[int]:
        return list(df.shape)

    @svc.api(input=PandasDataFrame(orient="values", max_columns=3), output=dosirak.io.JSON())
    def narrow(df: pd.DataFrame) -> list[int]:
        return list(df.shape)

    @svc.api(input=Image(), output=dosirak.io.JSON())
    def image(picture: PILImage.Image) -> list[int]:
        return list(picture.size)

    @svc.api(input=Multipart(picture=Image(max_pixels=100)), output=dosirak.io.JSON())
    def thumbnail(picture: PILImage.Image) -> list[int]:
        return list(picture.size)

    return svc


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(service()) as address:
        yield address


def refused(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["detail"][0]["type"] == "limit_exceeded"
    for word in words:
        assert word in body["error"]


def post_while_probing(url: str, path: str, body: bytes, content_type: str
                       ) -> tuple[httpx.Response, float]:
    """POST ``body`` in a thread while probing /livez; the answer and the slowest probe."""
    answer: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answer.append(httpx.post(
        f"{url}{path}", content=body, headers={"content-type": content_type}, timeout=120)))
    slowest = 0.0
    with httpx.Client(base_url=url, timeout=30) as probe:
        thread.start()
        while thread.is_alive():
            start = time.monotonic()
            assert probe.get("/livez").status_code == 200
            slowest = max(slowest, time.monotonic() - start)
            time.sleep(0.01)
    thread.join()
    return answer[0], slowest


def test_wide_csv_is_refused_before_pandas_and_the_worker_stays_responsive(url: str) -> None:
    response, slowest = post_while_probing(url, "/frame", WIDE_CSV, "text/csv")
    refused(response, "60,004 columns", "max_dataframe_columns")
    assert slowest < 1.0


def test_bomb_png_is_refused_from_its_header_and_the_worker_stays_responsive(url: str) -> None:
    bomb = png((13_000, 13_000))
    assert len(bomb) < 1_000_000
    response, slowest = post_while_probing(url, "/image", bomb, "image/png")
    refused(response, "169,000,000 pixels", "max_image_pixels")
    assert slowest < 1.0


def test_image_past_pillows_own_bomb_limit_is_a_400_not_a_500(url: str) -> None:
    # Pillow warns past 89 Mpx (an error under pytest's filterwarnings) and raises past 179 Mpx.
    for side in (10_000, 14_000):
        response = httpx.post(f"{url}/image", content=png((side, side)),
                              headers={"content-type": "image/png"}, timeout=60)
        refused(response, "pixels")


def test_images_within_the_limit_pass_and_a_field_option_wins(url: str) -> None:
    assert httpx.post(f"{url}/image", content=png((640, 480)),
                      headers={"content-type": "image/png"}).json() == [640, 480]
    small = httpx.post(f"{url}/thumbnail", files={"picture": ("a.png", png((10, 10)),
                                                              "image/png")})
    assert small.json() == [10, 10]
    large = httpx.post(f"{url}/thumbnail", files={"picture": ("a.png", png((11, 10)),
                                                              "image/png")})
    refused(large, "110 pixels (11x10)", "max_pixels")
    assert large.json()["detail"][0]["loc"][0] == "picture"


def test_first_data_row_wider_than_the_header_is_refused(url: str) -> None:
    # pandas would make the surplus fields of the first row index levels: seconds per request.
    body = b"a,b\n1,2" + b",3" * 60_000 + b"\n"
    response = httpx.post(f"{url}/frame", content=body, headers={"content-type": "text/csv"})
    refused(response, "60,002 columns")


def test_quoted_commas_do_not_count_as_columns(url: str) -> None:
    body = b'a,b\n"' + b"," * 5000 + b'",2\n'
    response = httpx.post(f"{url}/frame", content=body, headers={"content-type": "text/csv"})
    assert response.json() == [1, 2]


def table(orient: str, width: int) -> Any:
    return {"records": [{f"c{i}": 1 for i in range(width)}], "values": [[1] * width],
            "columns": {f"c{i}": {"0": 1} for i in range(width)},
            "index": {"0": {f"c{i}": 1 for i in range(width)}},
            "split": {"data": [[1] * width]}}[orient]


@pytest.mark.parametrize("orient", ["records", "values", "columns", "index", "split"])
def test_wide_json_tables_are_refused_before_the_frame_is_built(orient: str) -> None:
    svc = dosirak.Service("json_width")

    @svc.api(input=PandasDataFrame(orient=orient), output=dosirak.io.JSON())
    def frame(df: pd.DataFrame) -> list[int]:
        return list(df.shape)

    with serve(svc) as address:
        refused(httpx.post(f"{address}/frame", json=table(orient, 1001)), "1,001 columns")
        assert httpx.post(f"{address}/frame", json=table(orient, 1000)).json() == [1, 1000]


def test_per_descriptor_column_limit_and_its_schema(url: str) -> None:
    refused(httpx.post(f"{url}/narrow", json=[[1, 2, 3, 4]]), "4 columns", "max_columns")
    assert httpx.post(f"{url}/narrow", json=[[1, 2, 3]]).json() == [1, 3]
    schema = httpx.get(f"{url}/docs.json").json()["paths"]["/narrow"]["post"]["requestBody"]
    assert schema["content"]["application/json"]["schema"]["items"]["maxItems"] == 3


def test_configured_limits_apply_to_every_api_and_are_in_the_schema() -> None:
    limits = InputLimitsConfig(max_dataframe_columns=5, max_dataframe_cells=1000,
                               max_image_pixels=400)
    config = ServingConfig(api_server=ApiServerConfig(input_limits=limits))
    with serve(service(), config=config) as address:
        refused(httpx.post(f"{address}/frame", json=[{f"c{i}": 1 for i in range(6)}]),
                "6 columns")
        refused(httpx.post(f"{address}/image", content=png((21, 20)),
                           headers={"content-type": "image/png"}), "420 pixels")
        # The descriptor's own option wins over the configuration.
        assert httpx.post(f"{address}/narrow", json=[[1, 2, 3]]).json() == [1, 3]
        table = pyarrow.table({"x": np.zeros(1001, dtype=np.int8)})
        buffer = io.BytesIO()
        parquet.write_table(table, buffer)
        refused(httpx.post(f"{address}/frame", content=buffer.getvalue(),
                           headers={"content-type": PARQUET}), "1,001 cells",
                "max_dataframe_cells")
        document = httpx.get(f"{address}/docs.json").json()
        body = document["paths"]["/frame"]["post"]["requestBody"]["content"]
        assert body["application/json"]["schema"]["items"]["maxProperties"] == 5


def test_wide_parquet_is_refused_from_its_footer(url: str) -> None:
    table = pyarrow.table({f"c{i}": [1] for i in range(1001)})
    buffer = io.BytesIO()
    parquet.write_table(table, buffer)
    response = httpx.post(f"{url}/frame", content=buffer.getvalue(),
                          headers={"content-type": PARQUET})
    refused(response, "1,001 columns")


def test_bad_limit_options_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="max_columns"):
        PandasDataFrame(max_columns=0)
    with pytest.raises(InvalidArgument, match="max_pixels"):
        Image(max_pixels=-1)
