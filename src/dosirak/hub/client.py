"""The hub's client: sign in, push and pull models and bentos, manage tokens.

It speaks only the REST API of ``/docs.json``. Pushes send the archive ``dosirak models export``
would write, laid out from the stored files (``layout.py``) and sent chunk by chunk, each with its
sha256; a push that stops (a kill, a lost connection) resumes at the first chunk the hub lacks.
Pulls stream the archive straight through ``unpack_entry`` (every check of an import) into a
draft of the local store, committed once it is whole and has the digest the hub recorded at the
push (a bento: once the models it records are stored too); each byte is written once, and a
connection cut on the way is resumed at the byte reached with HTTP ranges. A bento pull fetches
only the models the local store lacks.

    client = HubClient.from_login()           # `dosirak hub login URL --token T` saved it
    client.push_model("iris_clf:latest")
    client.pull_bento("iris_classifier@prod")
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from dosirak.exceptions import (
    AlreadyExists,
    DosirakError,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    StoreCorrupted,
)
from dosirak.hub import layout
from dosirak.hub.secret_file import write_secret
from dosirak.store import home
from dosirak.store.manifest import INFO_FILE
from dosirak.store.versioned_store import dump_yaml
from dosirak.tag import Tag

if TYPE_CHECKING:
    from dosirak.store.unpack import Unpacked

LOGIN_FILE = "hub-login.json"
Progress = Callable[[int], None] | None
_RETRIES = 4
_TIMEOUT = httpx.Timeout(30.0, read=600.0)  # completing a big push checks every byte


class HubError(DosirakError):
    """The hub refused a request; ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


_ERRORS: dict[int, type[DosirakError]] = {400: InvalidArgument, 404: NotFound,
                                           409: AlreadyExists, 413: PayloadTooLarge}


def login_file() -> Path:
    return home() / LOGIN_FILE


def parse_ref(text: str) -> tuple[str, str]:
    """``name``, ``name:version``, ``name:latest`` or ``name@alias`` -> (name, ref)."""
    if "@" in text:
        name, _, alias = text.partition("@")
        Tag(name, alias)  # both parts follow the tag rules
        return name, "@" + alias
    tag = Tag.parse(text)
    return tag.name, tag.version or "latest"


class HubClient:
    def __init__(self, url: str, token: str, *, transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=_TIMEOUT, transport=transport,
                                  headers={"Authorization": f"Bearer {token}"})

    @classmethod
    def from_login(cls) -> HubClient:
        """The hub of ``DOSIRAK_HUB_URL``/``DOSIRAK_HUB_TOKEN``, else of the saved login."""
        url, token = os.environ.get("DOSIRAK_HUB_URL"), os.environ.get("DOSIRAK_HUB_TOKEN")
        if not (url and token):
            try:
                saved = json.loads(login_file().read_text())
                url, token = url or saved["url"], token or saved["token"]
            except (OSError, ValueError, KeyError):
                raise InvalidArgument("not signed in to a hub: run `dosirak hub login URL "
                                      "--token TOKEN` (or set DOSIRAK_HUB_URL and "
                                      "DOSIRAK_HUB_TOKEN)") from None
        return cls(url, token)

    @classmethod
    def for_url(cls, url: str) -> HubClient:
        """The hub at ``url``, with ``DOSIRAK_HUB_TOKEN`` or the token saved by ``dosirak hub
        login`` for that very URL (a token is never sent to a hub it was not made for)."""
        token = os.environ.get("DOSIRAK_HUB_TOKEN")
        if not token:
            try:
                saved = json.loads(login_file().read_text())
            except (OSError, ValueError):
                saved = {}
            if str(saved.get("url", "")).rstrip("/") == url.rstrip("/"):
                token = saved.get("token")
        if not token:
            raise InvalidArgument(f"no token for the hub at {url}: run `dosirak hub login {url} "
                                  "--token TOKEN` (or set DOSIRAK_HUB_TOKEN)")
        return cls(url, token)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ----- requests ----------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call; connection errors are retried, refusals raised as dosirak errors."""
        for attempt in range(_RETRIES + 1):
            try:
                response = self._http.request(method, "/api/v1" + path, **kwargs)
                break
            except httpx.TransportError as error:
                if attempt == _RETRIES:
                    raise HubError(f"cannot reach the hub at {self.url} ({error}); run the same "
                                   "command again once it is up: transfers resume", 503) from None
                time.sleep(0.2 * 2 ** attempt)
        if response.status_code >= 400:
            raise _error(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def whoami(self) -> dict[str, Any]:
        return self.json("GET", "/whoami")

    # ----- push --------------------------------------------------------------------------------

    def push_model(self, tag: Tag | str, progress: Progress = None) -> dict[str, Any]:
        """Push a model of the local store; a version the hub has already is a no-op."""
        from dosirak import models

        model = models.get(tag)
        return self._push("model", model.tag, model.info.to_dict(), model.path, INFO_FILE,
                          progress)

    def push_bento(self, tag: Tag | str, progress: Progress = None) -> dict[str, Any]:
        """Push a bento: the models it uses first (those the hub lacks), then the bento."""
        from dosirak import bentos
        from dosirak.bentos.store import BENTO_FILE

        bento = bentos.get(tag)
        pushed = [self.push_model(entry["tag"], progress) for entry in bento.models]
        result = self._push("bento", bento.tag, dict(bento.info), bento.path,
                            BENTO_FILE, progress)
        return {**result, "models": pushed}

    def _push(self, kind: str, tag: Tag, info: dict[str, Any], root: Path, info_name: str,
              progress: Progress) -> dict[str, Any]:
        from dosirak.bentos.build import manifest_digest

        manifest = info["manifest"]
        parts = layout.archive_parts(info_name, dump_yaml(info).encode(), manifest,
                                     lambda name, _entry: str(root / name))
        size = layout.total_size(parts)
        digest = manifest_digest(manifest)
        path = f"/{kind}s/{tag.name}/versions/{tag.version}"
        begun = self.json("POST", f"{path}/uploads", json={"digest": digest, "size": size})
        if begun["status"] == "exists":
            return {**begun, "kind": kind}
        upload, chunk_size, count = begun["upload_id"], begun["chunk_size"], begun["chunks"]
        held = set(begun["received"])
        digests: list[str] = []  # every chunk's sha256, held ones too: complete declares them
        # Two buffers of one chunk each, made once and filled in place: the next chunk is read
        # into one (and hashed, by a thread) while the other is sent. Bytes objects of a chunk's
        # size made and dropped per chunk left the heap fragmented (glibc keeps the freed
        # blocks), so the client's memory grew with the model; now it is bounded by the chunk.
        buffers = [bytearray(min(chunk_size, size)) for _ in range(min(count, 2))]

        def chunk(index: int) -> memoryview:
            start = index * chunk_size
            view = memoryview(buffers[index % 2])[:min(chunk_size, size - start)]
            layout.read_into(parts, _open_local, start, view)
            return view

        def send(index: int, data: memoryview, sha256: str) -> None:
            self.request("PUT", f"/uploads/{upload}/chunks/{index}", content=_Body(data),
                         headers={"X-Chunk-Sha256": sha256,
                                  "Content-Type": "application/octet-stream",
                                  "Content-Length": str(len(data))})

        with ThreadPoolExecutor(1, thread_name_prefix="dosirak-push-read") as reader:
            def prepare(index: int) -> tuple[memoryview, str]:
                data = chunk(index)
                return data, hashlib.sha256(data).hexdigest()  # the one pass over the bytes

            ahead = reader.submit(prepare, 0) if count else None
            for index in range(count):
                assert ahead is not None
                data, sha256 = ahead.result()
                digests.append(sha256)
                # The buffer it fills is the one chunk index - 1 was sent from.
                ahead = reader.submit(prepare, index + 1) if index + 1 < count else None
                if index not in held:
                    send(index, data, sha256)
                if progress is not None:
                    progress(len(data))
        for attempt in range(_RETRIES):
            try:
                done = self.json("POST", f"/uploads/{upload}/complete",
                                 json={"chunks_sha256": layout.chunks_digest(digests)})
                break
            except AlreadyExists as error:
                # Chunks the hub took into an assembly it no longer holds (another hub
                # process answered, or it restarted), or a stored one it lost: send them again.
                missing = getattr(error, "missing", None)
                if not missing or attempt == _RETRIES - 1:
                    raise
                for index in missing:
                    send(index, chunk(index), digests[index])
        return {**done, "kind": kind, "resumed_chunks": len(held)}

    # ----- pull --------------------------------------------------------------------------------

    def version(self, kind: str, ref: str) -> dict[str, Any]:
        name, version = parse_ref(ref)
        return self.json("GET", f"/{kind}s/{name}/versions/{version}")

    def pull_model(self, ref: str, *, force: bool = False,
                   progress: Progress = None) -> dict[str, Any]:
        """Pull a model into the local store; one stored with the same digest is kept as is."""
        from dosirak import models
        from dosirak.store import model_store

        found = self.version("model", ref)
        tag = Tag(found["name"], found["version"])
        store = model_store()
        if (held := _held(store, tag, found["digest"], force)) is not None:
            return held
        entry = self._unpack_download(store, "model", found, progress,
                                      validate=models.valid_info, overwrite=force)
        try:
            store.commit(entry.draft, entry.tag, entry.info, overwrite=force)
        except BaseException:
            store.discard(entry.draft)
            raise
        return {"status": "pulled", "tag": str(tag), "digest": found["digest"]}

    def pull_bento(self, ref: str, *, force: bool = False,
                   progress: Progress = None) -> dict[str, Any]:
        """Pull a bento and the models it uses into the local stores. It asks for the bento's
        models first and fetches only those the model store lacks (one held with the digest the
        bento records is kept, and its bytes are not downloaded), then the bento's own archive.
        """
        from dosirak.bentos.store import bento_store

        found = self.version("bento", ref)
        tag = Tag(found["name"], found["version"])
        if (held := _held(bento_store(), tag, found["digest"], force)) is not None:
            return {**held, "models": []}
        pulled = []
        for model in found.get("models", []):
            result = self.pull_model(model["tag"], force=force, progress=progress)
            if result["digest"] != model["digest"]:
                raise StoreCorrupted(f"bento {tag} was pushed with model {model['tag']} of "
                                     f"digest {model['digest'][:12]}, but the hub now holds "
                                     f"{result['digest'][:12]} under that tag (deleted and "
                                     "pushed again); push the bento again")
            pulled.append({**result, "kind": "model"})
        from dosirak.bentos.archive import valid_bento

        entry = self._unpack_download(bento_store(), "bento", found, progress,
                                      validate=valid_bento, overwrite=force, with_models=False)
        _commit_bento_alone(entry, {m["tag"]: m["digest"] for m in found.get("models", [])},
                            force)
        return {"status": "pulled", "tag": str(tag), "digest": found["digest"], "models": pulled}

    def _unpack_download(self, store: Any, kind: str, found: dict[str, Any], progress: Progress,
                         *, validate: Callable[[dict[str, Any]], Any], overwrite: bool,
                         with_models: bool = True) -> Unpacked:
        """Stream a version's archive from the hub straight through ``unpack_entry`` (every
        check of an import) into a draft of ``store``: each byte is written once, and nothing
        is visible before the caller commits the draft. The draft must hold the version the hub
        named, with the digest it recorded at the push (``with_models=False``: a bento's own
        archive, without its models)."""
        from dosirak.bentos.build import manifest_digest
        from dosirak.config import load_config
        from dosirak.store.unpack import unpack_entry

        path = f"/{kind}s/{found['name']}/versions/{found['version']}/archive"
        if not with_models:
            path += "?models=false"
        tag = Tag(found["name"], found["version"])
        what = f"{kind} {tag} from the hub at {self.url}"
        with _Download(self._http, "/api/v1" + path, what, progress) as stream:
            entry = unpack_entry(store, stream, what, overwrite=overwrite, validate=validate,
                                 max_size=int(load_config().model_store.import_max_size))
        try:
            if entry.tag != tag:
                raise StoreCorrupted(f"{what} holds {entry.tag}, not {tag}; refused")
            local = manifest_digest(entry.info.get("manifest") or {})
            if local != found["digest"]:  # whole, but not what the hub recorded at the push
                raise StoreCorrupted(f"{what} has digest {local[:12]}, not the hub's "
                                     f"{found['digest'][:12]}; refused")
        except BaseException:
            store.discard(entry.draft)
            raise
        return entry

    # ----- administration ------------------------------------------------------------------------

    def create_token(self, name: str, scopes: list[str],
                     expires_in: str | None = None) -> dict[str, Any]:
        return self.json("POST", "/tokens", json={"name": name, "scopes": scopes,
                                                  "expires_in": expires_in})

    def list_tokens(self) -> list[dict[str, Any]]:
        return self.json("GET", "/tokens")["items"]

    def revoke_token(self, name: str) -> dict[str, Any]:
        return self.json("DELETE", f"/tokens/{name}")

    def gc(self, *, dry_run: bool = False, grace: str | None = None) -> dict[str, Any]:
        return self.json("POST", "/gc", json={"dry_run": dry_run, "grace": grace})


def _held(store: Any, tag: Tag, digest: str, force: bool) -> dict[str, Any] | None:
    """``exists`` when the local store holds ``tag`` with ``digest``; None when it lacks it
    (or holds other contents and ``force`` replaces them); AlreadyExists otherwise."""
    from dosirak.bentos.build import manifest_digest

    if tag.version not in store.versions(tag.name):
        return None
    local = manifest_digest(store.read_info(tag).get("manifest") or {})
    if local == digest:
        return {"status": "exists", "tag": str(tag), "digest": local}
    if force:
        return None
    raise AlreadyExists(f"the local store holds {store.kind} {tag} with other contents (digest "
                        f"{local[:12]}, the hub's {digest[:12]}); pass --force to replace it")


def _commit_bento_alone(entry: Unpacked, models: dict[str, str], force: bool) -> None:
    """Commit a bento's own archive, unpacked and checked (``entry``), once the models it
    records are in the model store with the digests the hub gave (``models``)."""
    from dosirak.bentos.build import manifest_digest
    from dosirak.bentos.store import bento_store
    from dosirak.store import model_store

    bentos, stored = bento_store(), model_store()
    what = f"bento {entry.tag} from the hub"
    try:
        recorded = {m["tag"]: m["digest"] for m in entry.info.get("models") or []}
        if recorded != models:
            raise StoreCorrupted(f"{what} records the models {sorted(recorded)}, not the "
                                 f"{sorted(models)} the hub listed for it; refused")
        for model, digest in recorded.items():
            try:
                info = stored.read_info(Tag.parse(model))
            except NotFound:
                raise NotFound(f"model {model} was deleted from the model store while bento "
                               f"{entry.tag} was pulled; pull it again") from None
            if manifest_digest(info.get("manifest") or {}) != digest:
                raise AlreadyExists(f"model {model} in the model store changed while bento "
                                    f"{entry.tag} was pulled; pull it again")
        bentos.commit(entry.draft, entry.tag, entry.info, overwrite=force)
    except BaseException:
        if entry.draft.exists():
            bentos.discard(entry.draft)
        raise


def _open_local(path: str) -> Any:
    return open(path, "rb", buffering=0)  # read_into fills the caller's buffer directly


class _Download:
    """A version's archive read from the hub as one stream (``read``/``readinto``). A
    connection cut on the way is picked up at the byte reached (``Range`` with ``If-Range``:
    the same archive or nothing), so the reader never sees the cut."""

    def __init__(self, http: httpx.Client, path: str, what: str, progress: Progress) -> None:
        self._http, self._path, self._what, self._progress = http, path, what, progress
        self.position = 0
        self.size: int | None = None
        self._etag = ""
        self._response: httpx.Response | None = None
        self._pieces: Iterator[bytes] | None = None
        self._current = memoryview(b"")

    def __enter__(self) -> _Download:
        return self

    def __exit__(self, *_: object) -> None:
        self._close()

    def _close(self) -> None:
        if self._response is not None:
            self._response.close()
        self._response = self._pieces = None

    def _open(self) -> Iterator[bytes]:
        headers = {"Range": f"bytes={self.position}-", "If-Range": self._etag} \
            if self.position else {}
        response = self._http.send(self._http.build_request("GET", self._path, headers=headers),
                                   stream=True)
        if response.status_code >= 400:
            response.read()
            response.close()
            raise _error(response)
        if self.position and response.status_code != 206:
            response.close()
            raise HubError(f"{self._what} changed on the hub while it was pulled (deleted and "
                           "pushed again); run the same command again", 409)
        if not self.position:
            self.size = int(response.headers.get("content-length", 0))
            self._etag = response.headers.get("etag", "")
        self._response = response
        return response.iter_raw()

    def _next_piece(self) -> bytes:
        """The next bytes of the archive (b"" at its end), reconnecting after a cut."""
        for attempt in range(_RETRIES + 1):
            try:
                if self._pieces is None:
                    if self.size is not None and self.position >= self.size:
                        return b""
                    self._pieces = self._open()
                piece = next(self._pieces, b"")
                if piece:
                    return piece
                self._close()
                if self.size is not None and self.position >= self.size:
                    return b""
                raise httpx.RemoteProtocolError(f"the answer ended at byte {self.position} of "
                                                f"{self.size}")
            except httpx.TransportError as error:
                self._close()
                if attempt == _RETRIES:
                    raise HubError(f"the download of {self._what} stopped at byte "
                                   f"{self.position} ({error}); run the same command "
                                   "again", 503) from None
                time.sleep(0.2 * 2 ** attempt)
        raise AssertionError("unreachable")

    def readinto(self, buffer: memoryview | bytearray) -> int:
        if not self._current:
            self._current = memoryview(self._next_piece())
            if not self._current:
                return 0
        count = min(len(buffer), len(self._current))
        buffer[:count] = self._current[:count]
        self._current = self._current[count:]
        self.position += count
        if self._progress is not None:
            self._progress(count)
        return count

    def read(self, size: int = -1) -> bytes:
        buffer = bytearray(size if size and size > 0 else 1 << 20)
        count = self.readinto(buffer)
        return bytes(buffer[:count])


class _Body:
    """A request body sent from a buffer in 1 MiB slices, without copying the whole; iterable
    again, so that a retried request sends it once more."""

    def __init__(self, data: memoryview) -> None:
        self.data = data

    def __iter__(self) -> Iterator[memoryview]:
        for start in range(0, len(self.data), layout.PIECE):
            yield self.data[start:start + layout.PIECE]


def _error(response: httpx.Response) -> DosirakError:
    body: Any = None
    try:
        body = response.json()
        message = body["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:500] or response.reason_phrase
    status = response.status_code
    kind = _ERRORS.get(status)
    error = kind(message) if kind is not None else HubError(message, status)
    if isinstance(body, dict) and isinstance(body.get("missing"), list):
        error.missing = [int(index) for index in body["missing"]]  # type: ignore[attr-defined]
    return error


def save_login(url: str, token: str) -> dict[str, Any]:
    """Check the token against the hub, then keep URL and token in ``$DOSIRAK_HOME``
    (mode 0600)."""
    with HubClient(url, token) as client:
        who = client.whoami()
    write_secret(login_file(), json.dumps({"url": url.rstrip("/"), "token": token}) + "\n")
    return who


def forget_login() -> bool:
    try:
        login_file().unlink()
    except FileNotFoundError:
        return False
    return True
