"""SyncHTTPClient against real servers: every kind of input and output, compared with direct
calls of the same code, and what went over the socket checked on the server's side."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image as PILImage
from sklearn.linear_model import LogisticRegression

import dosirak
from dosirak.client import Body, SyncHTTPClient
from dosirak.exceptions import InvalidArgument
from server.example_services import Flower

from .conftest import Served
from .services import file_facts, image_bytes, mirror, png, scale_rows, stamp_info

SAMPLE = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])


def test_iris_classify_sends_and_receives_npy(iris: Served,
                                              iris_model: LogisticRegression) -> None:
    with dosirak.SyncHTTPClient(iris.url) as client:
        result = client.classify(np.array([[5.1, 3.5, 1.4, 0.2]]))
        assert isinstance(result, np.ndarray)
        assert result.tolist() == [0]
        seen = iris.recorder.last("/classify")
        assert seen["content-type"] == "application/x-npy"
        assert seen["accept"] == "application/x-npy"
        assert seen["answer"] == "application/x-npy"
        np.testing.assert_array_equal(client.classify(SAMPLE), iris_model.predict(SAMPLE))
        np.testing.assert_array_equal(client.call("classify_async", SAMPLE),
                                      iris_model.predict(SAMPLE))


def test_iris_matches_a_local_runner(iris: Served) -> None:
    # The same model saved here and run in-process through init_local, the seed's direct call.
    from .services import save_iris

    save_iris()
    runner = dosirak.sklearn.get("iris_clf:latest").to_runner()
    runner.init_local()
    with SyncHTTPClient(iris.url) as client:
        np.testing.assert_array_equal(client.classify(SAMPLE), runner.predict.run(SAMPLE))


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.array([[1, -2], [3, 4]], dtype=np.int16),
    np.array([True, False]),
    np.array(["setosa", "virginica"]),
    np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    np.float64(2.5),
    np.zeros((0, 4)),
])
def test_arrays_keep_dtype_and_shape(iris: Served, array: np.ndarray) -> None:
    # JSON would turn float32 into float64 and int16 into int64: .npy keeps them both ways.
    with SyncHTTPClient(iris.url) as client:
        result = client.echo(array)
    assert result.dtype == np.asarray(array).dtype
    np.testing.assert_array_equal(result, array)


def test_object_arrays_go_as_json(iris: Served) -> None:
    with SyncHTTPClient(iris.url) as client:
        result = client.echo(np.array([1, "a"], dtype=object))
    assert iris.recorder.last("/echo")["content-type"] == "application/json"
    assert result.tolist() == ["1", "a"]  # the server reads mixed JSON as text


def test_lists_go_as_json(iris: Served, iris_model: LogisticRegression) -> None:
    with SyncHTTPClient(iris.url) as client:
        assert client.classify(SAMPLE.tolist()).tolist() == iris_model.predict(SAMPLE).tolist()
    assert iris.recorder.last("/classify")["content-type"] == "application/json"


def test_api_named_like_a_client_method(iris: Served) -> None:
    with SyncHTTPClient(iris.url) as client:
        assert client.call("close", np.array([1.0])).tolist() == [-1.0]
        assert "close" in client.apis
    # ``close`` stayed the client's own method: the pool is closed.
    with pytest.raises(RuntimeError):
        client.classify(SAMPLE)


def test_methods_are_documented(iris: Served) -> None:
    with SyncHTTPClient(iris.url) as client:
        assert client.classify.__name__ == "classify"
        assert client.classify.__doc__.startswith("Classify iris flowers")
        assert "POST /classify" in client.classify.__doc__
        assert client.service_name == "iris_classifier"
        assert sorted(client.apis) == ["classify", "classify_async", "close", "echo"]
        with pytest.raises(AttributeError, match=r"no API 'predict'.*classify"):
            client.predict  # noqa: B018


def test_wrong_calls_are_refused_before_sending(iris: Served) -> None:
    with SyncHTTPClient(iris.url) as client:
        before = len(iris.recorder.seen)
        with pytest.raises(InvalidArgument, match=r"takes one value.*classify"):
            client.classify(SAMPLE, SAMPLE)
        with pytest.raises(InvalidArgument, match="takes one value"):
            client.classify(x=SAMPLE)
        with pytest.raises(InvalidArgument, match="no API 'nope'"):
            client.call("nope", SAMPLE)
        with pytest.raises(InvalidArgument, match="cannot send the input of 'classify' as JSON"):
            client.classify(object())
        assert len(iris.recorder.seen) == before


def test_one_client_many_threads(iris: Served) -> None:
    results: dict[int, list[np.ndarray]] = {}
    with SyncHTTPClient(iris.url) as client:
        def work(worker: int) -> None:
            results[worker] = [client.echo(np.full((2, 2), worker * 100 + i)) for i in range(10)]

        threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert {w: [int(a[0, 0]) for a in arrays] for w, arrays in results.items()} == \
        {w: [w * 100 + i for i in range(10)] for w in range(4)}


# ----- tables ---------------------------------------------------------------------------------

FRAME = pd.DataFrame({"a": [1.0, 2.5, -3.0], "b": [4.0, 5.0, 6.0]})


@pytest.mark.parametrize(("api", "sent_as"), [
    ("scale_split", "application/json"),
    ("scale_columns", "application/json"),
    ("scale_index", "application/json"),
    ("scale_unnamed", "application/vnd.apache.parquet"),  # the JSON layout cannot be told
])
def test_frames_follow_the_schema_layout(tables: Served, api: str, sent_as: str) -> None:
    with SyncHTTPClient(tables.url) as client:
        result = client.call(api, FRAME)
    assert tables.recorder.last(f"/{api}")["content-type"] == sent_as
    expected = scale_rows(FRAME)
    if api == "scale_split":  # the answer is in the API's split layout
        assert result == {"columns": ["a", "b"], "index": [0, 1, 2],
                          "data": expected.to_numpy().tolist()}
    else:
        assert pd.DataFrame(result).equals(expected)


def test_small_frames_are_json_records(tables: Served) -> None:
    with SyncHTTPClient(tables.url) as client:
        assert client.info(FRAME) == stamp_info(FRAME)
    assert tables.recorder.last("/info")["content-type"] == "application/json"


def test_frames_json_cannot_carry_go_as_parquet(tables: Served) -> None:
    frame = pd.DataFrame({"when": pd.to_datetime(["2024-01-02", "2024-03-04"]),
                          "kind": pd.Categorical(["x", "y"])})
    with SyncHTTPClient(tables.url) as client:
        facts = client.info(frame)
    assert tables.recorder.last("/info")["content-type"] == "application/vnd.apache.parquet"
    assert facts == stamp_info(frame)
    assert facts["dtypes"] == {"when": "datetime64[ns]", "kind": "category"}


def test_large_frames_go_as_parquet(tables: Served) -> None:
    frame = pd.DataFrame(np.random.default_rng(0).random((5000, 4)), columns=list("abcd"))
    with SyncHTTPClient(tables.url) as client:
        assert client.info(frame) == stamp_info(frame)
    assert tables.recorder.last("/info")["content-type"] == "application/vnd.apache.parquet"


def test_parquet_answers_are_frames(tables: Served) -> None:
    with SyncHTTPClient(tables.url) as client:
        result = client.as_parquet(FRAME)
    assert tables.recorder.last("/as_parquet")["answer"] == "application/vnd.apache.parquet"
    assert isinstance(result, pd.DataFrame)
    pd.testing.assert_frame_equal(result, FRAME)


def test_series(tables: Served) -> None:
    series = pd.Series([1.0, 2.0, 3.5])
    with SyncHTTPClient(tables.url) as client:
        assert client.cumulative(series) == series.cumsum().tolist()


def test_raw_body(tables: Served) -> None:
    with SyncHTTPClient(tables.url) as client:
        facts = client.info(Body(b"a,b\n1,x\n2,y\n", "text/csv"))
    assert tables.recorder.last("/info")["content-type"] == "text/csv"
    assert facts["rows"] == 2
    assert facts["dtypes"]["a"] == "int64"


# ----- JSON, pydantic, text -------------------------------------------------------------------

def test_pydantic_and_dicts(media: Served) -> None:
    with SyncHTTPClient(media.url) as client:
        flower = Flower(sepal_length=5.1, sepal_width=3.5, name="setosa")
        assert client.sepal_area(flower) == {"area": pytest.approx(5.1 * 3.5), "name": "setosa"}
        assert client.sepal_area({"sepal_length": 2, "sepal_width": 3}) == \
            {"area": 6.0, "name": None}
        assert client.keys({"b": 1, "a": [1, 2]}) == ["a", "b"]
        assert client.keys("a string is JSON here") == "a string is JSON here"
        assert client.keys(np.arange(3)) == [0, 1, 2]
        assert media.recorder.last("/keys")["content-type"] == "application/json"


def test_text(media: Served) -> None:
    with SyncHTTPClient(media.url) as client:
        assert client.shout("안녕, dosirak") == "안녕, DOSIRAK"
    seen = media.recorder.last("/shout")
    assert seen["content-type"] == "text/plain; charset=utf-8"
    assert seen["answer"] == "text/plain; charset=utf-8"


# ----- images and files -----------------------------------------------------------------------

def test_images_in_and_out(media: Served) -> None:
    picture = png()
    with SyncHTTPClient(media.url) as client:
        result = client.flip(picture)
    assert media.recorder.last("/flip")["content-type"] == "image/png"
    assert isinstance(result, PILImage.Image)
    assert list(result.getdata()) == list(mirror(picture).getdata())


def test_image_formats_the_api_names(media: Served, tmp_path: Path) -> None:
    picture = png((5, 7))
    with SyncHTTPClient(media.url) as client:
        assert client.jpeg_size(picture) == [5, 7]
        assert media.recorder.last("/jpeg_size")["content-type"] == "image/jpeg"
        assert client.jpeg_size(image_bytes(picture, "JPEG")) == [5, 7]
        assert media.recorder.last("/jpeg_size")["content-type"] == "image/jpeg"
        path = tmp_path / "flower.jpg"
        picture.save(path)
        assert client.flip(path).size == (5, 7)
        assert media.recorder.last("/flip")["content-type"].startswith("multipart/form-data")


def test_files(media: Served, tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF-1.4 a small file")
    with SyncHTTPClient(media.url) as client:
        facts = client.facts(path)
        assert media.recorder.last("/facts")["content-type"].startswith("multipart/form-data")
        with path.open("rb") as stream:
            assert client.facts(stream) == facts
        raw = client.facts(b"\x00\x01 raw bytes")
        assert media.recorder.last("/facts")["content-type"] == "application/octet-stream"
        reversed_body = client.reverse(b"abc")
        assert media.recorder.last("/reverse")["answer"] == "application/pdf"
    upload = dosirak.io.UploadedFile(path.read_bytes(), "report.pdf", "application/pdf")
    assert facts == file_facts(upload)
    assert raw == {"name": None, "type": "application/octet-stream", "size": 12,
                   "head": b"\x00\x01 raw b".hex()}
    assert reversed_body == b"cba"


# ----- multipart ------------------------------------------------------------------------------

def test_multipart_fields_as_keywords(media: Served, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("field notes")
    table = pd.DataFrame({"x": [1, 2]}, index=[10, 20])
    with SyncHTTPClient(media.url) as client:
        result = client.everything(image=png((2, 2)), rows=np.ones((2, 3)), note="hello",
                                   flower=Flower(sepal_length=4.0, sepal_width=1.0),
                                   upload=path, table=table)
        with pytest.raises(InvalidArgument, match="keyword arguments"):
            client.everything(png())
        with pytest.raises(InvalidArgument, match=r"no field\(s\) \['colour'\]"):
            client.everything(colour="red")
    assert media.recorder.last("/everything")["content-type"].startswith("multipart/form-data")
    assert result == {"size": [2, 2], "sum": 6.0, "note": "hello", "flower": 4.0,
                      # Multipart's File field does not pass the part's file name on (io).
                      "upload": {"name": None, "type": "text/plain", "size": 11,
                                 "head": b"field no".hex()},
                      "table": {"x": [1, 2]}}


def test_multipart_answers_are_dicts(media: Served) -> None:
    with SyncHTTPClient(media.url) as client:
        result = client.parts({})
    assert result["label"] == "setosa"
    assert result["scores"] == [0.9, 0.1]
    assert isinstance(result["picture"], PILImage.Image)
    assert result["picture"].size == (3, 2)
