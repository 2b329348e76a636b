"""The hub's REST API (``/api/v1``): every operation is declared once in ``OPERATIONS``, from
which both the routes and the OpenAPI document at ``/docs.json`` are made.

Requests carry a token (``Authorization: Bearer dsk_...``). Errors are JSON
``{"error": TYPE, "message": ...}`` with the status of the error: 400 bad input, 401 no valid
token, 403 a missing scope, 404, 409 a conflict, 413 too large, 416 a bad range, 429 too many
failed attempts (with Retry-After).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import queue
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from dosirak.exceptions import DosirakError, InvalidArgument
from dosirak.hub import catalog, collector, transfers
from dosirak.hub.hub import Hub
from dosirak.hub.storage import chunk_key
from dosirak.hub.tokens import Principal, parse_duration

PREFIX = "/api/v1"
_KINDS = {"models": "model", "bentos": "bento"}
_RANGE = re.compile(r"bytes=([0-9]+)-([0-9]*)")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_WRITE_STEP = 1 << 20  # bytes of a chunk gathered before each write to the object store

Handler = Callable[[Hub, Request, Principal], Awaitable[Response]]


@dataclass(frozen=True)
class Operation:
    """One endpoint: route, scope, and what the OpenAPI document says of it."""

    method: str
    path: str
    handler: Handler
    summary: str
    scope: str | None = "read"
    query: tuple[tuple[str, str, str], ...] = ()  # (name, type, description)
    body: dict[str, Any] | None = None
    responses: dict[str, str] = field(default_factory=dict)
    operation_id: str = ""


def error_response(error: Exception) -> JSONResponse:
    status = getattr(error, "status", 500)
    headers = dict(getattr(error, "headers", {}) or {})
    body: dict[str, Any] = {"error": type(error).__name__, "message": str(error)}
    if isinstance(error, transfers.MissingChunks):
        body["missing"] = error.missing
    return JSONResponse(body, status, headers=headers)


def bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _kind(request: Request) -> str:
    kinds = request.path_params["kinds"]
    if kinds not in _KINDS:
        raise catalog.NotFound(f"{PREFIX}/{kinds} is not a collection; use models or bentos")
    return _KINDS[kinds]


async def _json(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError as error:
        raise InvalidArgument(f"the request body is not JSON ({error})") from None
    if not isinstance(data, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return data


def _time(request: Request, name: str) -> datetime.datetime | None:
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"{name}={value!r} is not an ISO 8601 time such as "
                              "2024-05-01T12:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _int(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    try:
        return default if value in (None, "") else int(value)
    except ValueError:
        raise InvalidArgument(f"{name}={value!r} is not an integer") from None


# ----- handlers ------------------------------------------------------------------------------


async def whoami(hub: Hub, request: Request, by: Principal) -> Response:
    return JSONResponse({"token_id": by.token_id, "name": by.name, "scopes": sorted(by.scopes)})


async def list_repositories(hub: Hub, request: Request, by: Principal) -> Response:
    found = await run_in_threadpool(catalog.repositories, hub, _kind(request),
                                    request.query_params.get("q"))
    return JSONResponse({"items": found})


async def list_versions(hub: Hub, request: Request, by: Principal) -> Response:
    name = request.path_params.get("name")
    result = await run_in_threadpool(
        lambda: catalog.list_versions(
            hub, _kind(request), name=None if name == "-" else name,
            q=request.query_params.get("q"), selector=request.query_params.get("selector"),
            since=_time(request, "since"), until=_time(request, "until"),
            limit=_int(request, "limit", 100), offset=_int(request, "offset", 0)))
    return JSONResponse(result)


async def get_version(hub: Hub, request: Request, by: Principal) -> Response:
    params = request.path_params
    found = await run_in_threadpool(catalog.get_version, hub, _kind(request), params["name"],
                                    params["ref"])
    return JSONResponse(found)


async def delete_version(hub: Hub, request: Request, by: Principal) -> Response:
    params = request.path_params
    force = request.query_params.get("force", "").lower() in ("1", "true", "yes")
    done = await run_in_threadpool(lambda: catalog.delete_version(
        hub, by, _kind(request), params["name"], params["ref"], force=force))
    return JSONResponse(done)


async def move_alias(hub: Hub, request: Request, by: Principal) -> Response:
    body = await _json(request)
    version = body.get("version")
    if not isinstance(version, str):
        raise InvalidArgument('give the version the alias points at: {"version": "..."}')
    params = request.path_params
    moved = await run_in_threadpool(catalog.move_alias, hub, by, _kind(request), params["name"],
                                    params["alias"], version)
    return JSONResponse(moved)


async def remove_alias(hub: Hub, request: Request, by: Principal) -> Response:
    params = request.path_params
    await run_in_threadpool(catalog.remove_alias, hub, by, _kind(request), params["name"],
                            params["alias"])
    return Response(status_code=204)


async def begin_upload(hub: Hub, request: Request, by: Principal) -> Response:
    body = await _json(request)
    params = request.path_params
    begun = await run_in_threadpool(transfers.begin, hub, by, _kind(request), params["name"],
                                    params["ref"], body.get("digest"), body.get("size"))
    return JSONResponse(begun, 200 if begun["status"] == "exists" else 201)


def _write_hashed(writer: Any, digest: Any, data: bytes) -> None:
    digest.update(data)
    writer.write(data)


async def put_chunk(hub: Hub, request: Request, by: Principal) -> Response:
    upload_id = request.path_params["upload_id"]
    index = request.path_params["index"]
    declared = request.headers.get("x-chunk-sha256", "")
    if not _SHA256.fullmatch(declared):
        raise InvalidArgument("a chunk needs an X-Chunk-Sha256 header: the sha256 of its bytes "
                              "(64 lowercase hex digits)")
    length = request.headers.get("content-length")
    expected, held = await run_in_threadpool(
        transfers.chunk_target, hub, by, upload_id, index,
        int(length) if length and length.isdigit() else None)
    if held:
        return JSONResponse({"status": "held", "index": index})
    if await run_in_threadpool(transfers.assembly_for, hub, upload_id, index, False):
        # In order, to the process assembling it: checked in memory, then fed, no object
        # written. The assembly starts only once a first chunk has proved itself.
        data, actual = await _read_chunk(request, index, expected)
        _check_chunk_sha(index, actual, declared)
        assembly = await run_in_threadpool(transfers.assembly_for, hub, upload_id, index, True)
        if assembly is not None and await run_in_threadpool(
                transfers.feed_chunk, hub, assembly, upload_id, index, data, declared):
            return JSONResponse({"status": "stored", "index": index, "size": expected})
        await run_in_threadpool(_store_chunk, hub, upload_id, index, data)  # it moved on
        await run_in_threadpool(transfers.record_chunk, hub, upload_id, index, expected,
                                declared)
        return JSONResponse({"status": "stored", "index": index, "size": expected})
    writer = await run_in_threadpool(hub.storage.writer, chunk_key(upload_id, index))
    digest = hashlib.sha256()
    received = 0
    pending = bytearray()
    try:
        async for piece in request.stream():
            received += len(piece)
            if received > expected:
                raise transfers.PayloadTooLarge(f"chunk {index} is longer than the "
                                                f"{expected} bytes it declared")
            pending += piece
            if len(pending) >= _WRITE_STEP:
                await run_in_threadpool(_write_hashed, writer, digest, bytes(pending))
                pending.clear()
        if pending:
            await run_in_threadpool(_write_hashed, writer, digest, bytes(pending))
        if received != expected:
            raise InvalidArgument(f"chunk {index} ended after {received} of {expected} bytes; "
                                  "send it again")
        _check_chunk_sha(index, digest.hexdigest(), declared)
        await run_in_threadpool(writer.commit)
    except BaseException:
        await run_in_threadpool(writer.abort)
        raise
    await run_in_threadpool(transfers.record_chunk, hub, upload_id, index, received, declared)
    return JSONResponse({"status": "stored", "index": index, "size": received})


async def _read_chunk(request: Request, index: int,
                      expected: int) -> tuple[list[bytes], str]:
    """The body of a chunk, in memory (at most the chunk size) as the pieces it arrived in (not
    copied into one buffer), and its sha256: a thread hashes each piece as it arrives, while the
    event loop reads the next ones."""
    pieces: list[bytes] = []
    hasher = _PieceHasher()
    received = 0
    try:
        async for piece in request.stream():
            received += len(piece)
            if received > expected:
                raise transfers.PayloadTooLarge(f"chunk {index} is longer than the "
                                                f"{expected} bytes it declared")
            if piece:
                pieces.append(piece)
                hasher.pieces.put(piece)
    finally:
        digest = await hasher.finish()
    if received != expected:
        raise InvalidArgument(f"chunk {index} ended after {received} of {expected} bytes; "
                              "send it again")
    return pieces, digest


class _PieceHasher:
    """A thread hashing the pieces put in its queue, in order (hashlib releases the GIL)."""

    def __init__(self) -> None:
        self.pieces: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[str] = self._loop.create_future()
        threading.Thread(target=self._run, name="dosirak-hub-chunk-sha256", daemon=True).start()

    def _run(self) -> None:
        digest = hashlib.sha256()
        while (piece := self.pieces.get()) is not None:
            digest.update(piece)
        self._loop.call_soon_threadsafe(self._done.set_result, digest.hexdigest())

    async def finish(self) -> str:
        """The sha256 of every piece put, once hashed."""
        self.pieces.put(None)
        return await asyncio.shield(self._done)


def _check_chunk_sha(index: int, actual: str, declared: str) -> None:
    if actual != declared:
        raise InvalidArgument(f"chunk {index} does not match its X-Chunk-Sha256 (its bytes "
                              f"hash to {actual}); it was damaged or altered; nothing was kept")


def _store_chunk(hub: Hub, upload_id: str, index: int, pieces: list[bytes]) -> None:
    writer = hub.storage.writer(chunk_key(upload_id, index))
    try:
        for piece in pieces:
            writer.write(piece)
        writer.commit()
    except BaseException:
        writer.abort()
        raise


async def complete_upload(hub: Hub, request: Request, by: Principal) -> Response:
    body = await _json(request)
    if "chunks_sha256" not in body:
        raise InvalidArgument('complete takes {"chunks_sha256": ...}: the sha256 of the chunks\' '
                              "sha256 digests (32 bytes each, in order)")
    done = await run_in_threadpool(transfers.complete, hub, by, request.path_params["upload_id"],
                                   body["chunks_sha256"])
    return JSONResponse(done, 201 if done["status"] == "pushed" else 200)


async def download(hub: Hub, request: Request, by: Principal) -> Response:
    params = request.path_params
    models = request.query_params.get("models", "true").lower()
    if models not in ("true", "false"):
        raise InvalidArgument(f"models={models!r}: use true (a bento with its models) or false "
                              "(the bento's own archive)")
    found = await run_in_threadpool(lambda: transfers.archive(
        hub, by, _kind(request), params["name"], params["ref"], with_models=models == "true"))
    size, etag = found["size"], found["etag"]
    start, end, status = 0, size, 200
    requested = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if requested and (if_range is None or if_range == etag):
        match = _RANGE.fullmatch(requested.strip())
        if match is None or int(match[1]) >= size or (match[2] and int(match[2]) < int(match[1])):
            return JSONResponse({"error": "RangeNotSatisfiable",
                                 "message": f"range {requested!r} is outside the {size} bytes "
                                            "of the archive"}, 416,
                                headers={"Content-Range": f"bytes */{size}"})
        start = int(match[1])
        end = min(size, int(match[2]) + 1) if match[2] else size
        status = 206
    if start == 0:
        await run_in_threadpool(transfers.record_pull, hub, by, found["row"].kind, found["tag"],
                                found["row"].digest)
    headers = {"Content-Length": str(end - start), "ETag": etag, "Accept-Ranges": "bytes",
               "Content-Disposition": f'attachment; filename="{found["filename"]}"',
               "X-Dosirak-Digest": found["row"].digest, "X-Dosirak-Tag": found["tag"]}
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return StreamingResponse(transfers.read(hub, found["parts"], start, end), status,
                             headers=headers, media_type="application/x-tar")


async def list_events(hub: Hub, request: Request, by: Principal) -> Response:
    before = request.query_params.get("before")
    found = await run_in_threadpool(lambda: hub.events(
        limit=_int(request, "limit", 100), before=int(before) if before else None,
        action=request.query_params.get("action"),
        subject=request.query_params.get("subject")))
    return JSONResponse({"items": found})


async def list_tokens(hub: Hub, request: Request, by: Principal) -> Response:
    return JSONResponse({"items": await run_in_threadpool(hub.list_tokens, by)})


async def create_token(hub: Hub, request: Request, by: Principal) -> Response:
    body = await _json(request)
    scopes = body.get("scopes") or ["read"]
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise InvalidArgument('scopes must be a list such as ["read"]')
    expires = body.get("expires_in")
    lifetime = parse_duration(str(expires)) if expires else None
    row, secret = await run_in_threadpool(hub.create_token, by, str(body.get("name", "")),
                                          scopes, lifetime)
    return JSONResponse({**row, "token": secret}, 201)


async def revoke_token(hub: Hub, request: Request, by: Principal) -> Response:
    done = await run_in_threadpool(hub.revoke_token, by, request.path_params["name"])
    return JSONResponse(done)


async def garbage_collect(hub: Hub, request: Request, by: Principal) -> Response:
    body = await _json(request)
    grace = body.get("grace")
    result = await run_in_threadpool(lambda: collector.collect(
        hub, by, dry_run=bool(body.get("dry_run")),
        grace=parse_duration(str(grace)) if grace else collector.DEFAULT_GRACE))
    return JSONResponse(result)


# ----- the table ---------------------------------------------------------------------------

_KIND = "/{kinds}"
_FILTERS = (
    ("q", "string", "text the name contains"),
    ("selector", "string", "label selector, e.g. stage=prod,team in (a,b),!deprecated"),
    ("since", "string", "pushed at or after this ISO 8601 time"),
    ("until", "string", "pushed before this ISO 8601 time"),
    ("limit", "integer", "most items returned (1-1000, default 100)"),
    ("offset", "integer", "items skipped (the next_offset of the previous page)"),
)
_VERSION = _KIND + "/{name}/versions/{ref}"

OPERATIONS = [
    Operation("GET", "/whoami", whoami, "The token's name and scopes"),
    Operation("GET", _KIND, list_repositories, "Repositories (names) with version counts",
              query=(("q", "string", "text the name contains"),)),
    Operation("GET", _KIND + "/{name}/versions", list_versions,
              "Versions newest first (name '-' searches every name)", query=_FILTERS),
    Operation("GET", _VERSION, get_version,
              "One version (ref: a version, latest or @alias) with its files"),
    Operation("DELETE", _VERSION, delete_version, "Delete a version", scope="write",
              query=(("force", "boolean", "delete a model that bentos use"),),
              responses={"409": "a stored bento uses this model"}),
    Operation("GET", _VERSION + "/archive", download,
              "The version's archive (.dosirakmodel, or .bento with its models); supports "
              "Range and If-Range", responses={"206": "partial content", "416": "bad range"},
              query=(("models", "boolean", "a bento with its models (default true), or its "
                      "own archive alone (false)"),)),
    Operation("POST", _VERSION + "/uploads", begin_upload,
              "Begin (or resume) a push; answers 'exists' when the hub has this version",
              scope="write", body={"digest": "string", "size": "integer"},
              responses={"201": "upload begun or resumed", "409": "other contents"}),
    Operation("PUT", "/uploads/{upload_id}/chunks/{index}", put_chunk,
              "Send one chunk (header X-Chunk-Sha256)", scope="write",
              responses={"413": "larger than the chunk size"}),
    Operation("POST", "/uploads/{upload_id}/complete", complete_upload,
              "Check the whole archive and store the version; chunks_sha256: the sha256 of "
              "the chunks' sha256 digests (32 bytes each, in order)", scope="write",
              body={"chunks_sha256": "string"},
              responses={"201": "pushed", "409": "chunks missing (listed in 'missing')"}),
    Operation("PUT", _KIND + "/{name}/aliases/{alias}", move_alias, "Point an alias at a version",
              scope="write", body={"version": "string"}),
    Operation("DELETE", _KIND + "/{name}/aliases/{alias}", remove_alias, "Remove an alias",
              scope="write", responses={"204": "removed"}),
    Operation("GET", "/events", list_events, "The event log, newest first",
              query=(("limit", "integer", "most events"),
                     ("before", "integer", "events with a smaller id"),
                     ("action", "string", "push, pull, delete, alias.move, token.create..."),
                     ("subject", "string", "text the subject contains"))),
    Operation("GET", "/tokens", list_tokens, "Every token (never their secrets)", scope="admin"),
    Operation("POST", "/tokens", create_token, "Create a token; its text is shown once",
              scope="admin",
              body={"name": "string", "scopes": "array", "expires_in": "string"},
              responses={"201": "created"}),
    Operation("DELETE", "/tokens/{name}", revoke_token, "Revoke a token", scope="admin"),
    Operation("POST", "/gc", garbage_collect, "Collect unused blobs and abandoned uploads",
              scope="admin", body={"dry_run": "boolean", "grace": "string"}),
]


def _endpoint(hub: Hub, operation: Operation) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            principal = await run_in_threadpool(hub.authenticate, bearer(request),
                                                client_of(request))
            if operation.scope:
                principal.require(operation.scope)
            return await operation.handler(hub, request, principal)
        except DosirakError as error:
            return error_response(error)

    return endpoint


def _route_path(path: str) -> str:
    return PREFIX + path.replace("{index}", "{index:int}")


def routes(hub: Hub) -> list[Route]:
    # Fixed paths first: /api/v1/events must not be taken for a collection named "events".
    ordered = sorted(OPERATIONS, key=lambda op: op.path.startswith(_KIND))
    return [Route(_route_path(op.path), _endpoint(hub, op), methods=[op.method])
            for op in ordered]
