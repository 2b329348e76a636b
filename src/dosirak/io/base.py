"""The IO descriptor contract: how an API reads its input and writes its output.

A descriptor turns a request body into the Python value the API function receives (``parse``),
and the function's return value into a response body (``render``). It also describes itself:
the OpenAPI schema of its body, an example taken from a sample (``from_sample``), and a plain
``to_spec()`` dict that compares equal for equivalent descriptors.

Descriptors know nothing of HTTP servers or processes: they take bytes and a media type and give
values back, so the server, offline batch runs and tests all use them the same way. Everything a
request needs is computed once, in the constructor; ``parse`` and ``render`` do only the work
the body itself requires.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from dosirak.exceptions import BadInput, InvalidArgument, ServiceCodeError

if TYPE_CHECKING:
    from dosirak.io.limits import InputLimits

JSON_MEDIA_TYPE = "application/json"
# curl's ``-d`` sends this type when the user gives none; reading it as the descriptor's own
# default type lets ``curl -d '[[1, 2]]' URL`` work as the tutorials show.
CURL_DEFAULT_MEDIA_TYPE = "application/x-www-form-urlencoded"
BINARY_SCHEMA: dict[str, Any] = {"type": "string", "format": "binary"}


class InvalidOutput(ServiceCodeError):
    """The API function returned a value its output descriptor cannot write (a service bug)."""

    def client_message(self) -> str:
        return f"the API's return value does not fit its output: {self}"


class IODescriptor:
    """Base class of the input and output specifications of an API.

    Subclasses set ``input_media_types`` and ``output_media_types`` (the first of each is the
    default) and implement ``parse``, ``render`` and ``schema``.
    """

    #: Media types ``parse`` reads; a ``type/*`` entry accepts every subtype.
    input_media_types: tuple[str, ...] = (JSON_MEDIA_TYPE,)
    #: Media types ``render`` writes; the request's Accept header chooses among them.
    output_media_types: tuple[str, ...] = (JSON_MEDIA_TYPE,)
    #: True when parsed values hold resources to release after the call (temporary files).
    needs_cleanup: bool = False
    #: Bodies larger than this are parsed in the thread pool, not on the event loop, where the
    #: API is run (the server also learns it from parses that took long). JSON and .npy parse at
    #: hundreds of MB/s, so 1 MiB costs the loop a few milliseconds at most.
    parse_on_loop_below: int = 1 << 20
    #: The Python type the API function receives, for documentation.
    python_type: str = "Any"

    sample: Any = None

    # ----- reading requests ---------------------------------------------------------------

    def media_type_for(self, media_type: str | None) -> str | None:
        """The media type to parse a body of type ``media_type`` as, or None if unsupported."""
        return _resolve_media_type(self.input_media_types, media_type)

    def parse(self, body: bytes | bytearray, media_type: str, params: dict[str, str]) -> Any:
        """Turn a request body into the value the API function receives.

        ``media_type`` is one of ``input_media_types`` (as returned by ``media_type_for``) and
        ``params`` holds the Content-Type parameters (``charset``, ``boundary``). Raises
        ``BadInput`` when the body is malformed or fails validation.
        """
        raise NotImplementedError

    def from_json_value(self, value: Any) -> Any:
        """The value for an already decoded JSON value (a field of a JSON object body)."""
        raise BadInput(f"{type(self).__name__} cannot be given inside a JSON document; send it "
                       "as its own body or as a multipart/form-data part",
                       [{"loc": [], "msg": "not representable in JSON"}])

    def cleanup(self, value: Any) -> None:
        """Release what ``parse`` allocated for ``value``; called after the API function."""

    def apply_limits(self, limits: InputLimits) -> None:
        """Take the server's bounds on what a body may declare (``dosirak.io.limits``); the
        descriptor's own options win. Descriptors whose bodies cost only their bytes ignore it."""

    # ----- writing responses --------------------------------------------------------------

    def negotiate(self, accept: str | None) -> str:
        """The output media type for a request's Accept header (the default when none fits)."""
        return _negotiate(self.output_media_types, accept)

    def render(self, value: Any, media_type: str) -> tuple[bytes, str]:
        """The response body for ``value`` and its exact Content-Type header value."""
        raise NotImplementedError

    def error_body(self, status: int, body: dict[str, Any]) -> dict[str, Any]:
        """The JSON body of a failed call of an API with this output; the server's by default.

        ``body`` is what the server would send (``{"error": ..., "detail": ...}``). An output
        with its own answer shape reshapes it (the generic service's envelope does); the status
        stays the server's.
        """
        return body

    def error_schema(self) -> dict[str, Any] | None:
        """The JSON schema of the bodies ``error_body`` makes; None when it keeps the server's."""
        return None

    # ----- describing itself --------------------------------------------------------------

    def schema(self) -> dict[str, Any]:
        """The JSON schema of the value in its JSON form (or of the binary body)."""
        raise NotImplementedError

    def components(self) -> dict[str, dict[str, Any]]:
        """Named schemas this descriptor's schemas refer to (OpenAPI ``components.schemas``)."""
        return {}

    def example(self) -> Any:
        """An example JSON value for the docs, from the sample; None when there is none."""
        return None

    def openapi_request_body(self) -> dict[str, Any]:
        """The OpenAPI ``requestBody`` object."""
        return {"required": True, "content": self.openapi_content(self.input_media_types)}

    def openapi_response(self) -> dict[str, Any]:
        """The OpenAPI response object of a successful call."""
        return {"description": "Successful response",
                "content": self.openapi_content(self.output_media_types)}

    def openapi_content(self, media_types: tuple[str, ...]) -> dict[str, Any]:
        """The OpenAPI ``content`` map for ``media_types``: JSON schema or binary."""
        content: dict[str, Any] = {}
        for media_type in media_types:
            if media_type == JSON_MEDIA_TYPE:
                entry: dict[str, Any] = {"schema": self.schema()}
                example = self.example()
                if example is not None:
                    entry["example"] = example
            else:
                entry = {"schema": dict(BINARY_SCHEMA)}
            content[media_type] = entry
        return content

    def to_spec(self) -> dict[str, Any]:
        """A plain description (kind and options); equal specs mean equivalent descriptors."""
        return {"type": type(self).__name__}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_spec() == self.to_spec()

    def __hash__(self) -> int:
        return hash(type(self).__name__)

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.to_spec().items() if k != "type")
        return f"{type(self).__name__}({options})"


@functools.lru_cache(maxsize=512)
def parse_content_type(header: str | None) -> tuple[str | None, dict[str, str]]:
    """Split a Content-Type header into the lowercased media type and its parameters."""
    if not header:
        return None, {}
    media_type, _, rest = header.partition(";")
    params: dict[str, str] = {}
    while rest:
        item, _, rest = _split_parameter(rest)
        key, sep, value = item.partition("=")
        if sep:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1].replace('\\"', '"')
            params[key.strip().lower()] = value
    return media_type.strip().lower() or None, params


def _split_parameter(text: str) -> tuple[str, str, str]:
    # A quoted value may contain ';' (multipart boundaries may), so split outside quotes only.
    quoted = False
    for index, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            return text[:index], ";", text[index + 1:]
    return text, "", ""


@functools.lru_cache(maxsize=1024)
def _resolve_media_type(supported: tuple[str, ...], media_type: str | None) -> str | None:
    if media_type is None:
        return supported[0]
    if media_type == CURL_DEFAULT_MEDIA_TYPE and CURL_DEFAULT_MEDIA_TYPE not in supported \
            and not supported[0].startswith("multipart/"):
        return supported[0]
    for candidate in supported:
        if candidate == media_type or candidate == "*/*":
            return media_type
        if candidate.endswith("/*") and media_type.startswith(candidate[:-1]):
            return media_type
    return None


@functools.lru_cache(maxsize=1024)
def _negotiate(offered: tuple[str, ...], accept: str | None) -> str:
    """Pick the offered type the Accept header likes best; ties go to the earlier offer."""
    if not accept:
        return offered[0]
    best, best_quality = offered[0], -1.0
    for item in accept.split(","):
        media_type, params = parse_content_type(item)
        if media_type is None:
            continue
        try:
            quality = float(params.get("q", "1"))
        except ValueError:
            quality = 1.0
        for candidate in offered:
            if _matches(media_type, candidate) and quality > best_quality:
                # Exact names beat wildcards at equal quality by coming first in most headers.
                best, best_quality = candidate, quality
                break
    return best if best_quality > 0 else offered[0]


def _matches(pattern: str, media_type: str) -> bool:
    if pattern in ("*/*", media_type):
        return True
    return pattern.endswith("/*") and media_type.startswith(pattern[:-1])


def field_error(loc: list[Any], message: str, kind: str = "value_error") -> dict[str, Any]:
    """One ``detail`` entry of a 400 response."""
    return {"loc": loc, "msg": message, "type": kind}


def check_option(condition: bool, message: str) -> None:
    """Reject a bad descriptor option when the API is declared, not when it is called."""
    if not condition:
        raise InvalidArgument(message)


def prefix_errors(error: BadInput, *loc: Any) -> BadInput:
    """``error`` with ``loc`` put in front of every detail location (a field's name)."""
    detail = [{**item, "loc": [*loc, *item.get("loc", [])]} for item in error.detail]
    if not detail:
        detail = [field_error(list(loc), str(error))]
    where = ".".join(str(part) for part in loc)
    return BadInput(f"{where}: {error}", detail)
