"""The one exception hierarchy of dosirak.

Every error says what happened, why, and what to do about it, and carries what an HTTP answer
needs: ``status``, ``detail`` (one entry per problem), ``request_id`` (the id a server logged it
under) and ``headers`` (extra response headers, such as ``Retry-After``). The server answers any
``DosirakError`` from these alone (``dosirak.server.errors``), and the client turns an error
answer back into the class of its status (``dosirak.client.errors``).

    >>> raise ServiceOverloaded("the queue is full", retry_after=2)   # 503, Retry-After: 2
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


class DosirakError(Exception):
    """Base class of every error dosirak raises on purpose.

    ``status`` is the HTTP status that answers it (the class's, unless given). An error of a
    5xx status that is not a ``retryable`` refusal is a failure inside the service: the server
    answers it 500, logs it with its traceback under the request id and tells the client only
    that id, since its text may hold data and paths. Other errors are the client's to read.
    """

    status: int = 500
    #: A refusal of a call that may succeed later (with ``Retry-After``), not a failure.
    retryable: bool = False
    #: Whether the answer may carry the message; ``None``: unless the error is a failure.
    public: bool | None = None

    def __init__(self, message: str = "", *, status: int | None = None,
                 detail: list[dict[str, Any]] | None = None, request_id: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        self.detail: list[dict[str, Any]] = list(detail or [])
        self.request_id = request_id
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def failure(self) -> bool:
        """True for a failure inside the service: answered 500, logged, its text kept back."""
        return self.status >= 500 and not self.retryable

    def body(self) -> dict[str, Any]:
        """The JSON answer's fields besides ``error`` and ``request_id`` (``detail`` when the
        error has some; subclasses add their own)."""
        return {"detail": self.detail} if self.detail else {}

    @classmethod
    def from_answer(cls, message: str, *, status: int, body: Mapping[str, Any],
                    headers: Mapping[str, str], detail: list[dict[str, Any]],
                    request_id: str | None) -> DosirakError:
        """The error an HTTP answer describes (what a client raises): the mirror of ``body()``
        and ``headers``. Subclasses read the fields they add."""
        return cls(message, status=status, detail=detail, request_id=request_id)

    def client_message(self) -> str | None:
        """The ``error`` text of the answer; None when the message must stay in the log."""
        public = self.public if self.public is not None else not self.failure
        return str(self) if public else None


class InvalidArgument(DosirakError):
    """The caller passed a value that can never work (a bad tag, a bad option, bad input)."""

    status = 400


class BadInput(InvalidArgument):
    """A request body or payload could not be parsed or failed validation.

    ``detail`` lists what is wrong, one entry per problem, each naming where (``loc``: the field,
    the column or the array axis) and what (``msg``), so a client can point at it.
    """

    def __init__(self, message: str = "", detail: list[dict[str, Any]] | None = None,
                 **fields: Any) -> None:
        super().__init__(message, detail=detail, **fields)

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail}  # always there: clients branch on its entries


class UnsupportedMediaType(DosirakError):
    """The request's Content-Type is not one the API reads; ``accepted`` lists those it does."""

    status = 415

    def __init__(self, message: str = "", accepted: list[str] | None = None,
                 **fields: Any) -> None:
        super().__init__(message, **fields)
        self.accepted = list(accepted or [])

    def body(self) -> dict[str, Any]:
        return {**super().body(), "accepted": self.accepted}

    @classmethod
    def from_answer(cls, message: str, *, status: int, body: Mapping[str, Any],
                    headers: Mapping[str, str], detail: list[dict[str, Any]],
                    request_id: str | None) -> DosirakError:
        accepted = body.get("accepted")
        return cls(message, [str(item) for item in accepted or []], status=status,
                   detail=detail, request_id=request_id)


class PayloadTooLarge(DosirakError):
    """The request body is larger than the server's configured limit.

    The rest of the body is not read, so the connection cannot carry another request.
    """

    status = 413

    def __init__(self, message: str = "", **fields: Any) -> None:
        super().__init__(message, **fields)
        self.headers.setdefault("connection", "close")


class NotFound(DosirakError):
    """The thing asked for does not exist."""

    status = 404


class ModelNotFound(NotFound):
    """No model in the store matches the tag."""


class BentoNotFound(NotFound):
    """No bento in the bento store matches the tag."""


class AlreadyExists(DosirakError):
    """The thing being created exists already."""

    status = 409


class InUse(DosirakError):
    """The thing cannot be deleted: something stored depends on it (a bento on its models)."""

    status = 409


class StoreCorrupted(DosirakError):
    """Stored files do not match their manifest (truncated, edited or missing)."""

    status = 500


class UnsafeArchive(InvalidArgument):
    """An archive was refused before anything was unpacked (traversal, link, device, tamper)."""


class ServiceImportFailed(InvalidArgument):
    """``dosirak build`` could not import the bentofile's service (the message names the file and
    line of the failing import)."""


class MissingDependency(DosirakError):
    """An optional framework is needed but not installed."""

    status = 500


class ContainerBuildFailed(DosirakError):
    """``dosirak containerize`` could not build the image: no container engine answered, the
    engine's daemon is not running, or the build itself failed (the message ends with the
    engine's last lines)."""

    status = 500


class ServiceCodeError(DosirakError):
    """The service's own code did something dosirak cannot carry out, found while answering a
    request: ``runner.run()`` called on the event loop, a runnable lacking the method its
    signature names, a return value the output cannot write. A bug for the service's author,
    not the client: answered 500 (logged under the request id), with the message, which names
    code rather than data."""

    status = 500
    public = True


class ServiceOverloaded(DosirakError):
    """The service cannot meet its latency budget; the call was refused early. Retry after
    ``retry_after`` seconds (the ``Retry-After`` header, in whole seconds)."""

    status = 503
    retryable = True

    def __init__(self, message: str = "", retry_after: float = 1.0, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.retry_after = retry_after
        self.headers.setdefault("retry-after", str(max(1, math.ceil(retry_after))))

    @classmethod
    def from_answer(cls, message: str, *, status: int, body: Mapping[str, Any],
                    headers: Mapping[str, str], detail: list[dict[str, Any]],
                    request_id: str | None) -> DosirakError:
        # Whole seconds from dosirak; an HTTP date (rare from services) waits the default.
        value = headers.get("retry-after")
        try:
            retry_after = max(0.0, float(value)) if value is not None else 1.0
        except ValueError:
            retry_after = 1.0
        return cls(message, retry_after, status=status, detail=detail, request_id=request_id)


class RunnerError(DosirakError):
    """A runner failed to run a call (the model raised, or its worker died).

    ``error_type`` names the exception the model raised; ``remote_traceback`` is its traceback
    as the runner worker process formatted it (None for a call that ran in this process).
    """

    status = 500

    def __init__(self, message: str = "", error_type: str | None = None,
                 remote_traceback: str | None = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.error_type = error_type
        self.remote_traceback = remote_traceback


class RunnerUnavailable(RunnerError):
    """A runner could not run the call now (its worker died and is being restarted); nothing
    is wrong with the call itself as far as dosirak can tell. Retry after ``retry_after``
    seconds. Answered 503 with ``Retry-After``."""

    status = 503
    retryable = True

    def __init__(self, message: str = "", retry_after: float = 1.0, **fields: Any) -> None:
        super().__init__(message, "WorkerDied", **fields)
        self.retry_after = retry_after
        self.headers.setdefault("retry-after", str(max(1, math.ceil(retry_after))))


class RemoteError(DosirakError):
    """A service answered a client's call with an error no narrower class describes.

    ``status`` is the HTTP status of the answer, ``detail`` the server's detail list (if any)
    and ``request_id`` the id the server logged the failure under: quote it when you report it.
    """


class ServiceUnreachable(RemoteError):
    """A client got no answer from the service: connection refused or reset, a timeout, or the
    service was not ready within the time the client was told to wait."""

    status = 503
