"""The one exception hierarchy of dosirak.

Every error says what happened, why, and what to do about it, and maps to one HTTP status
(``error.status``) so the server can answer it without guessing.
"""

from __future__ import annotations

from typing import Any


class DosirakError(Exception):
    """Base class of every error dosirak raises on purpose."""

    status: int = 500


class InvalidArgument(DosirakError):
    """The caller passed a value that can never work (a bad tag, a bad option, bad input)."""

    status = 400


class BadInput(InvalidArgument):
    """A request body or payload could not be parsed or failed validation.

    ``detail`` lists what is wrong, one entry per problem, each naming where (``loc``: the field,
    the column or the array axis) and what (``msg``), so a client can point at it.
    """

    def __init__(self, message: str, detail: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.detail = list(detail or [])


class UnsupportedMediaType(DosirakError):
    """The request's Content-Type is not one the API reads."""

    status = 415


class PayloadTooLarge(DosirakError):
    """The request body is larger than the server's configured limit."""

    status = 413


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


class ServiceOverloaded(DosirakError):
    """The service cannot meet its latency budget; the call was refused early. Retry later."""

    status = 503

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RunnerError(DosirakError):
    """A runner failed to run a call (the model raised, or its worker died)."""

    status = 500

    def __init__(self, message: str, error_type: str | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type


class RunnerUnavailable(RunnerError):
    """A runner could not run the call now (its worker died and is being restarted); nothing
    is wrong with the call itself as far as dosirak can tell. Retry after ``retry_after``
    seconds. Answered 503 with ``Retry-After``."""

    status = 503

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message, "WorkerDied")
        self.retry_after = retry_after


class RemoteError(DosirakError):
    """A service answered a client's call with an error no narrower class describes (5xx).

    ``status`` is the HTTP status of the answer, ``detail`` the server's detail list (if any)
    and ``request_id`` the id the server logged the failure under: quote it when you report it.
    """

    def __init__(self, message: str, status: int = 500,
                 detail: list[dict[str, Any]] | None = None,
                 request_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = list(detail or [])
        self.request_id = request_id


class ServiceUnreachable(RemoteError):
    """A client got no answer from the service: connection refused or reset, a timeout, or the
    service was not ready within the time the client was told to wait."""

    def __init__(self, message: str, status: int = 503) -> None:
        super().__init__(message, status=status)
