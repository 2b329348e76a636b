"""Every class of ``dosirak.exceptions`` raised through a real server: the answer's status, body
and headers come from the error itself, and the client turns the answer back into its class."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import dosirak
from dosirak import exceptions
from dosirak.client import SyncHTTPClient
from dosirak.exceptions import (
    AlreadyExists,
    BadInput,
    BentoNotFound,
    DosirakError,
    InvalidArgument,
    MissingDependency,
    ModelNotFound,
    NotFound,
    PayloadTooLarge,
    RemoteError,
    RunnerError,
    RunnerUnavailable,
    ServiceCodeError,
    ServiceImportFailed,
    ServiceOverloaded,
    ServiceUnreachable,
    StoreCorrupted,
    UnsafeArchive,
    UnsupportedMediaType,
)
from dosirak.io import JSON
from dosirak.io.base import InvalidOutput
from live_server import serve

SECRET = "/srv/private/path holds row 17"
FAILED = "the API raised an exception; the server log has the details under this request id"
DETAIL = [{"loc": ["body", "age"], "msg": "must be positive", "type": "value_error"}]
HIDDEN = None  # the body says FAILED and quotes the request id; the message stays in the log

# class name -> (the error raised, status, the body's fields but request_id, extra headers).
# A body of HIDDEN or with "request_id" is a failure: logged, with the id in body and header.
CASES: dict[str, tuple[Callable[[], DosirakError], int, dict[str, Any] | None,
                       dict[str, str]]] = {
    "DosirakError": (lambda: DosirakError(SECRET), 500, HIDDEN, {}),
    "InvalidArgument": (lambda: InvalidArgument("tag 'x y' has a space"), 400,
                        {"error": "tag 'x y' has a space"}, {}),
    "BadInput": (lambda: BadInput("age must be positive", DETAIL), 400,
                 {"error": "age must be positive", "detail": DETAIL}, {}),
    "UnsupportedMediaType": (lambda: UnsupportedMediaType("send JSON", ["application/json"]),
                             415, {"error": "send JSON", "accepted": ["application/json"]}, {}),
    "PayloadTooLarge": (lambda: PayloadTooLarge("over 1 MiB"), 413, {"error": "over 1 MiB"},
                        {"connection": "close"}),
    "NotFound": (lambda: NotFound("no such thing"), 404, {"error": "no such thing"}, {}),
    "ModelNotFound": (lambda: ModelNotFound("no model 'iris'"), 404,
                      {"error": "no model 'iris'"}, {}),
    "BentoNotFound": (lambda: BentoNotFound("no bento 'b'"), 404, {"error": "no bento 'b'"}, {}),
    "AlreadyExists": (lambda: AlreadyExists("iris:v1 exists"), 409,
                      {"error": "iris:v1 exists"}, {}),
    "InUse": (lambda: exceptions.InUse("bento b:v1 uses it"), 409,
              {"error": "bento b:v1 uses it"}, {}),
    "StoreCorrupted": (lambda: StoreCorrupted(SECRET), 500, HIDDEN, {}),
    "UnsafeArchive": (lambda: UnsafeArchive("a member escapes"), 400,
                      {"error": "a member escapes"}, {}),
    "ServiceImportFailed": (lambda: ServiceImportFailed("service.py:3 failed"), 400,
                            {"error": "service.py:3 failed"}, {}),
    "MissingDependency": (lambda: MissingDependency(SECRET), 500, HIDDEN, {}),
    "ContainerBuildFailed": (lambda: exceptions.ContainerBuildFailed(SECRET), 500, HIDDEN, {}),
    "ServiceCodeError": (lambda: ServiceCodeError("runner.run() on the loop"), 500,
                         {"error": "runner.run() on the loop"}, {}),
    "InvalidOutput": (lambda: InvalidOutput("got a str"), 500,
                      {"error": "the API's return value does not fit its output: got a str"},
                      {}),
    "ServiceOverloaded": (lambda: ServiceOverloaded("queue full", retry_after=2.2), 503,
                          {"error": "queue full"}, {"retry-after": "3"}),
    "RunnerError": (lambda: RunnerError(SECRET, "ValueError"), 500, HIDDEN, {}),
    "RunnerUnavailable": (lambda: RunnerUnavailable("worker 0 died", retry_after=0.2), 503,
                          {"error": "worker 0 died"}, {"retry-after": "1"}),
    "RemoteError": (lambda: RemoteError(SECRET, status=502), 500, HIDDEN, {}),
    "RemoteError404": (lambda: RemoteError("upstream: no route", status=404), 404,
                       {"error": "upstream: no route"}, {}),
    "ServiceUnreachable": (lambda: ServiceUnreachable(SECRET), 500, HIDDEN, {}),
}


def _declared_case(error_class: type[DosirakError]) -> tuple[Callable[[], DosirakError], int,
                                                              dict[str, Any] | None,
                                                              dict[str, str]]:
    """A class without a case above answers as it declares (status, public or kept back)."""
    error = error_class("a message")
    if error.failure:
        return (lambda: error_class(SECRET), 500,
                {"error": error.client_message()} if error.client_message() else HIDDEN, {})
    return (lambda: error_class("a message"), error.status, {"error": "a message"},
            error.headers)


# Every other class of the hierarchy (added since the table was written) is raised too.
for _name, _value in sorted(vars(exceptions).items()):
    if inspect.isclass(_value) and issubclass(_value, DosirakError) and _name not in CASES:
        CASES[_name] = _declared_case(_value)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    svc = dosirak.Service("raises")

    @svc.api(input=JSON(), output=JSON())
    def fail(name: str) -> Any:
        raise CASES[name][0]()

    @svc.api(input=JSON(), output=JSON())
    async def fail_async(name: str) -> Any:
        raise CASES[name][0]()

    with serve(svc) as base:
        yield base


@pytest.mark.parametrize("route", ["/fail", "/fail_async"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_each_error_answers_its_status_body_and_headers(
        url: str, route: str, name: str, caplog: pytest.LogCaptureFixture) -> None:
    _, status, body, headers = CASES[name]
    with caplog.at_level(logging.ERROR, logger="dosirak.server"):
        response = httpx.post(f"{url}{route}", json=name)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    for header, value in headers.items():
        assert response.headers[header] == value
    answer = response.json()
    if status < 500 or status == 503:  # the client's to read: no id, nothing logged
        assert answer == body
        assert not [r for r in caplog.records if "failed" in r.getMessage()]
        return
    request_id = answer.pop("request_id")
    assert response.headers["x-request-id"] == request_id
    assert answer == (body if body is not HIDDEN else {"error": FAILED})
    assert SECRET not in response.text
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None  # the traceback, for the author


# The class the client raises for each status dosirak answers with.
CLIENT_CLASSES = {400: BadInput, 404: NotFound, 409: RemoteError, 413: PayloadTooLarge,
                  415: UnsupportedMediaType, 500: RemoteError, 503: ServiceOverloaded}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_client_raises_the_class_of_the_status(url: str, name: str) -> None:
    _, status, body, headers = CASES[name]
    with SyncHTTPClient(url) as client, pytest.raises(DosirakError) as caught:
        client.fail(name)
    error = caught.value
    assert type(error) is CLIENT_CLASSES[status]
    assert error.status == status
    if body is not HIDDEN and status < 500:
        # A RemoteError (no narrower class) quotes the request id in its message too.
        assert str(error) in (body["error"], f"{body['error']} (request id {error.request_id})")
        assert error.detail == body.get("detail", [])
    if isinstance(error, UnsupportedMediaType):
        assert error.accepted == ["application/json"]
    if isinstance(error, ServiceOverloaded):
        assert error.retry_after == float(headers["retry-after"])
    if status == 500:
        assert error.request_id is not None and error.request_id in str(error)
