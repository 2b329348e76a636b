"""The API endpoint's request path over real HTTP: Content-Type checks and where bodies are parsed.

A parse that holds the event loop holds every other request of the worker; the endpoint times
its parses on the loop and moves the costly kind to the thread pool.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import dosirak
from dosirak.io import JSON, Text
from dosirak.io.base import JSON_MEDIA_TYPE
from dosirak.server import endpoint
from live_server import serve

#: Set when a slow parse begins (the test server runs in this process).
PARSING = threading.Event()


class SlowText(Text):
    """Text whose parse takes as long as the body says (``sleep=SECONDS`` on its first line),
    on whatever thread parses it: a stand-in for a parser that a body makes costly."""

    def parse(self, body: bytes | bytearray, media_type: str, params: dict[str, str]) -> Any:
        first = bytes(body).split(b"\n", 1)[0]
        if first.startswith(b"sleep="):
            PARSING.set()
            time.sleep(float(first[6:]))
        return threading.current_thread().name


class CostlyText(SlowText):
    """A descriptor that knows its parse is costly per byte."""

    parse_on_loop_below = 100


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    svc = dosirak.Service("endpoint")

    @svc.api(input=SlowText(), output=JSON())
    async def where(thread: str) -> str:
        return thread

    @svc.api(input=CostlyText(), output=JSON())
    async def where_costly(thread: str) -> str:
        return thread

    @svc.api(input=JSON(), output=JSON())
    def echo(value: Any) -> Any:
        return value

    with serve(svc) as base:
        yield base


def post_text(url: str, body: bytes, **options: Any) -> httpx.Response:
    return httpx.post(f"{url}/where", content=body, headers={"content-type": "text/plain"},
                      **options)


@pytest.mark.parametrize("header", ["garbage", "application/", "/json", "a/b/c", ";charset=utf-8",
                                    "text plain", ""])
def test_an_unparsable_content_type_is_415(url: str, header: str) -> None:
    response = httpx.post(f"{url}/echo", content=b"[1]", headers={"content-type": header})
    assert response.status_code == 415
    assert "is not a media type" in response.json()["error"]
    assert JSON_MEDIA_TYPE in response.json()["error"]


def test_a_missing_content_type_means_the_api_default(url: str) -> None:
    request = httpx.Request("POST", f"{url}/echo", content=b"[1]")
    assert "content-type" not in request.headers
    response = httpx.Client().send(request)
    assert response.status_code == 200, response.text
    assert response.json() == [1]


def test_small_bodies_are_parsed_on_the_loop(url: str) -> None:
    # The test server runs its event loop on the thread live_server names "uvicorn-test".
    assert post_text(url, b"hello").json() == "uvicorn-test"


def test_a_kind_of_body_that_held_the_loop_is_parsed_off_it_from_then_on(url: str) -> None:
    padding = b"\n" + b"x" * 4000
    # The first costly parse runs on the loop (nothing was known of it) and is measured.
    blocking = endpoint.BLOCKING_PARSE * 2
    assert post_text(url, b"sleep=%g" % blocking + padding).json() == "uvicorn-test"
    # From then on a body of that size goes to the thread pool: while one takes 3 s to parse,
    # the worker answers others at once.
    PARSING.clear()
    slow = threading.Thread(target=post_text, args=(url, b"sleep=3" + padding),
                            kwargs={"timeout": 30})
    slow.start()
    try:
        assert PARSING.wait(10)  # the slow body is being parsed
        started = time.monotonic()
        assert httpx.get(f"{url}/livez", timeout=10).status_code == 200
        assert time.monotonic() - started < 1.0
    finally:
        slow.join()
    assert post_text(url, b"fast" + padding).json() != "uvicorn-test"
    # Small bodies of that type still stay on the loop, where they cost least.
    assert post_text(url, b"hello").json() == "uvicorn-test"


def test_bodies_over_the_descriptors_own_bound_are_parsed_off_the_loop(url: str) -> None:
    def where(body: bytes) -> str:
        return httpx.post(f"{url}/where_costly", content=body,
                          headers={"content-type": "text/plain"}).json()

    assert where(b"x" * 100) == "uvicorn-test"
    assert where(b"x" * 101) != "uvicorn-test"


def test_the_descriptors_bounds_follow_their_parse_costs() -> None:
    from dosirak.io import Image, Multipart, NumpyNdarray, PandasDataFrame

    assert NumpyNdarray().parse_on_loop_below == endpoint.OFF_LOOP_BYTES
    assert Image().parse_on_loop_below < PandasDataFrame().parse_on_loop_below \
        < NumpyNdarray().parse_on_loop_below
    assert Multipart(a=NumpyNdarray(), b=Image()).parse_on_loop_below == \
        Image().parse_on_loop_below
