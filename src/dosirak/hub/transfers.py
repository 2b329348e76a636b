"""Pushes and pulls: chunked, resumable, checked like ``dosirak models import``.

A push sends the version's archive (the plain tar ``dosirak models export`` writes; for a bento,
its ``bento.tar`` alone: its models are pushed first as models) in numbered chunks:

1. ``begin``: the hub answers "exists" (same tag and digest: nothing to do), or an upload id with
   the chunks it already holds (a push that was cut resumes there).
2. each chunk is sent with its sha256 and refused (nothing kept) if it is larger than the chunk
   size or does not match. A chunk that comes in order to the process assembling the upload
   (``assembly.py``) goes straight through ``unpack_entry`` (every check of an import: names,
   links, sizes, sha256 of every file, YAML aliases, the model module allow-list, creation
   times) into a scratch draft: each byte is written once. Any other chunk is stored as an
   object under ``uploads/<id>/``.
3. ``complete``: the draft of the assembly, or else the stored chunks read back in order as one
   stream through ``unpack_entry``; the whole archive's sha256 and the digest the client
   declared must match. Chunks an assembly took but that no live assembly of this process holds
   (another process took them, or it was killed) are asked for again (409 with ``missing``).
   Then the files become blobs (stored once by sha256) and the version row, with its files,
   labels and references, is written in one transaction: a version is on the hub whole or not
   at all, whatever is killed when.

A pull reads the same archive, laid out from blobs (``layout.py``), from any byte on.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import yaml
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from dosirak.exceptions import AlreadyExists, InvalidArgument, NotFound, PayloadTooLarge
from dosirak.hub import layout
from dosirak.hub.assembly import Assembly, scratch_store
from dosirak.hub.catalog import check_kind, check_name, resolve
from dosirak.hub.db import (
    Blob,
    Upload,
    UploadChunk,
    Version,
    VersionFile,
    VersionLabel,
    VersionRef,
    utcnow,
)
from dosirak.hub.hub import Hub
from dosirak.hub.storage import blob_key, chunk_key
from dosirak.hub.tokens import Principal
from dosirak.store.manifest import INFO_FILE
from dosirak.store.unpack import Unpacked, unpack_entry
from dosirak.store.versioned_store import YAML_LOADER, VersionedStore, creation_time, dump_yaml
from dosirak.tag import Tag

BENTO_FILE = "bento.yaml"
MAX_ASSEMBLIES = 64  # pushes assembled at once by one process; more are stored as chunks
INFO_FILES = {"model": INFO_FILE, "bento": BENTO_FILE}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ARCHIVE_OVERHEAD = 1 << 20  # tar headers beyond the unpacked bytes, generously


def _check_sha(what: str, value: object) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise InvalidArgument(f"{what} must be 64 lowercase hex digits (a sha256), not "
                              f"{value!r}")
    return value


def digest_of(info: dict[str, Any]) -> str:
    """A version's digest: sha256 over its manifest (what ``dosirak`` stores and checks)."""
    from dosirak.bentos.build import manifest_digest

    return manifest_digest(info.get("manifest") or {})


def begin(hub: Hub, by: Principal, kind: str, name: str, version: str, digest: str,
          size: int) -> dict[str, Any]:
    by.require("write")
    check_kind(kind)
    Tag(check_name("name", name), check_name("version", version))
    _check_sha("digest", digest)
    if type(size) is not int or not 0 < size <= hub.settings.max_size + _ARCHIVE_OVERHEAD:
        raise PayloadTooLarge(f"an archive of {size!r} bytes is refused: the hub accepts "
                              f"versions up to {hub.settings.max_size} bytes (hub serve "
                              "--max-size)")
    with hub.db.write() as session:
        row = session.scalar(select(Version).where(
            Version.kind == kind, Version.name == name, Version.version == version))
        if row is not None:
            return _existing(row, digest)
        cutoff = utcnow() - hub.settings.upload_ttl
        upload = session.scalar(select(Upload).where(
            Upload.kind == kind, Upload.name == name, Upload.version == version,
            Upload.digest == digest, Upload.archive_size == size,
            Upload.created_at > cutoff).order_by(Upload.created_at.desc()).limit(1))
        if upload is None:
            upload = Upload(id=secrets.token_hex(16), kind=kind, name=name, version=version,
                            digest=digest, archive_size=size,
                            chunk_size=hub.settings.chunk_size, token_id=by.token_id,
                            created_at=utcnow())
            session.add(upload)
            received: list[int] = []
        else:
            received = sorted({row.index for row in _rows(session, upload.id)}
                              | set(range(_streamed(hub, upload.id))))
    return {"status": "upload", "upload_id": upload.id, "chunk_size": upload.chunk_size,
            "chunks": -(-size // upload.chunk_size), "received": received}


def _existing(row: Version, digest: str) -> dict[str, Any]:
    if row.digest != digest:
        raise AlreadyExists(
            f"the hub holds {row.kind} {row.name}:{row.version} with other contents (digest "
            f"{row.digest[:12]}, yours {digest[:12]}); versions are immutable: save a new "
            "version, or delete the hub's first")
    return {"status": "exists", "tag": f"{row.name}:{row.version}", "digest": row.digest}


def chunk_target(hub: Hub, by: Principal, upload_id: str, index: int,
                 length: int | None) -> tuple[int, bool]:
    """How many bytes chunk ``index`` must have, and whether the hub holds it already."""
    by.require("write")
    assembly = _live_assembly(hub, upload_id)
    if assembly is not None and index == assembly.next < assembly.chunks:
        # The chunk this process's assembly waits for: the upload's shape is known here.
        chunk_size, expected, held = assembly.chunk_size, assembly.chunk_length(index), False
    else:
        with hub.db.read() as session:
            upload = session.get(Upload, upload_id)
            if upload is None:
                raise NotFound(f"no upload {upload_id!r} on the hub (finished, or expired "
                               f"after {hub.settings.upload_ttl}); start the push again")
            chunk_size = upload.chunk_size
            chunks = -(-upload.archive_size // chunk_size)
            if not 0 <= index < chunks:
                raise InvalidArgument(f"chunk {index} is out of range: this upload has chunks "
                                      f"0 to {chunks - 1}")
            expected = min(chunk_size, upload.archive_size - index * chunk_size)
            held = (session.get(UploadChunk, (upload_id, index)) is not None
                    or index < _streamed(hub, upload_id))
    if length is None:
        raise InvalidArgument("a chunk needs a Content-Length header")
    if length > expected:
        raise PayloadTooLarge(f"chunk {index} is {length} bytes; this upload's chunks are "
                              f"{expected} bytes (chunk size {chunk_size})")
    if length != expected:
        raise InvalidArgument(f"chunk {index} is {length} bytes but must be {expected}")
    return expected, held


def _rows(session: Any, upload_id: str) -> list[UploadChunk]:
    return list(session.scalars(select(UploadChunk).where(UploadChunk.upload_id == upload_id)))


def _live_assembly(hub: Hub, upload_id: str) -> Assembly | None:
    with hub.assemblies_lock:
        assembly = hub.assemblies.get(upload_id)
        if assembly is not None and not assembly.alive and not assembly.refused:
            del hub.assemblies[upload_id]
            return None
        return assembly  # a refused one stays, so that its refusal is what the push hears


def _streamed(hub: Hub, upload_id: str) -> int:
    """How many chunks (0 to n - 1) a live assembly of this process has taken. They have no
    row: a row says an object holds the chunk, and no other process can read an assembly."""
    assembly = _live_assembly(hub, upload_id)
    return assembly.next if assembly is not None and not assembly.refused else 0


def assembly_for(hub: Hub, upload_id: str, index: int, start: bool) -> Assembly | bool | None:
    """The assembly that takes chunk ``index`` now: this process's, if it expects that chunk,
    or, for chunk 0 of an upload that has no chunk yet, a new one (``start``; else True: one
    would start). None: store the chunk as an object."""
    assembly = _live_assembly(hub, upload_id)
    if assembly is not None:
        return assembly if assembly.next == index else None
    if index != 0:
        return None
    with hub.db.read() as session:
        upload = session.get(Upload, upload_id)
        if upload is None or _rows(session, upload_id):
            return None
    with hub.assemblies_lock:
        for stopped in [key for key, held in hub.assemblies.items() if not held.alive]:
            del hub.assemblies[stopped]
        if upload_id in hub.assemblies or len(hub.assemblies) >= MAX_ASSEMBLIES:
            return None  # another request started it meanwhile; or too many at once
        if not start:
            return True
        assembly = Assembly(
            upload_id, scratch_store(hub.scratch, upload.kind, INFO_FILES[upload.kind]),
            upload.archive_size, upload.chunk_size,
            f"pushed {upload.kind} {upload.name}:{upload.version}",
            validate=_validator(upload.kind), max_size=hub.settings.max_size,
            idle=hub.settings.assembly_idle.total_seconds())
        hub.assemblies[upload_id] = assembly
    return assembly


def feed_chunk(hub: Hub, assembly: Assembly, upload_id: str, index: int,
               data: Sequence[bytes], sha256: str) -> bool:
    """Feed a checked chunk to ``assembly`` (which keeps its sha256; no row is written: the
    chunk lives in this process only); False if it expects another one now. A chunk the
    import's checks refuse ends the upload: nothing of it is kept."""
    try:
        return assembly.feed(index, data, sha256)
    except BaseException:
        drop_upload(hub, upload_id)
        raise


def drop_upload(hub: Hub, upload_id: str) -> None:
    """Forget an upload: its assembly, its row and chunk rows, its stored chunks."""
    with hub.assemblies_lock:
        assembly = hub.assemblies.pop(upload_id, None)
    if assembly is not None:
        assembly.abort()
    with hub.db.write() as session:
        session.execute(delete(Upload).where(Upload.id == upload_id))
    hub.storage.delete_prefix(f"uploads/{upload_id}")


def record_chunk(hub: Hub, upload_id: str, index: int, size: int, sha256: str) -> None:
    """Note that an object holds a chunk of the upload."""
    try:
        with hub.db.write() as session:
            if session.get(Upload, upload_id) is None:
                raise NotFound(f"no upload {upload_id!r} on the hub; start the push again")
            row = session.get(UploadChunk, (upload_id, index))
            if row is None:
                session.add(UploadChunk(upload_id=upload_id, index=index, size=size,
                                        sha256=sha256))
            else:
                row.size, row.sha256 = size, sha256
    except IntegrityError:
        pass  # the same chunk, sent twice at once: the object was replaced by equal bytes


class MissingChunks(AlreadyExists):
    """``complete`` before the hub holds every chunk (409); ``missing`` lists them."""

    def __init__(self, message: str, missing: list[int]) -> None:
        super().__init__(message)
        self.missing = missing


class _ChunkReader:
    """The stored chunks of an upload read back in order as one stream; each is checked
    against the sha256 it was stored with as it is read (``StoredChunkDamaged`` if not)."""

    def __init__(self, hub: Hub, upload_id: str, digests: list[str]) -> None:
        self._hub, self._id, self._digests = hub, upload_id, digests
        self._index = 0
        self._current: IO[bytes] | None = None
        self._sha256 = hashlib.sha256()

    def readinto(self, buffer: memoryview | bytearray) -> int:
        view = memoryview(buffer)
        while self._index < len(self._digests):
            if self._current is None:
                self._current = self._hub.storage.open(chunk_key(self._id, self._index))
                self._sha256 = hashlib.sha256()
            count = self._current.readinto(view)  # type: ignore[attr-defined]
            if count:
                self._sha256.update(view[:count])
                return int(count)
            self._current.close()
            self._current = None
            if self._sha256.hexdigest() != self._digests[self._index]:
                raise StoredChunkDamaged(self._index)
            self._index += 1
        return 0

    def read(self, size: int = -1) -> bytes:
        buffer = bytearray(size if size and size > 0 else 1 << 20)
        count = self.readinto(buffer)
        return bytes(buffer[:count])

    def close(self) -> None:
        if self._current is not None:
            self._current.close()


class StoredChunkDamaged(InvalidArgument):
    """A stored chunk no longer matches the sha256 it was checked against on arrival."""

    def __init__(self, index: int) -> None:
        super().__init__(f"stored chunk {index} no longer matches its sha256")
        self.index = index


def complete(hub: Hub, by: Principal, upload_id: str, chunks_sha256: str) -> dict[str, Any]:
    """Check the whole upload and store it as a version (see the module's docstring).

    ``chunks_sha256`` is ``layout.chunks_digest`` of the chunks' sha256 digests: every chunk
    was checked against its digest on arrival (or is checked as it is read back), so the
    archive is what the client hashed without hashing its bytes again."""
    by.require("write")
    _check_sha("chunks_sha256", chunks_sha256)
    with hub.db.read() as session:
        upload = session.get(Upload, upload_id)
        if upload is None:
            raise NotFound(f"no upload {upload_id!r} on the hub; start the push again")
        rows = {row.index: row for row in _rows(session, upload_id)}
        done = session.scalar(select(Version).where(
            Version.kind == upload.kind, Version.name == upload.name,
            Version.version == upload.version))
    if done is not None:
        return _existing(done, upload.digest)
    count = -(-upload.archive_size // upload.chunk_size)
    store = scratch_store(hub.scratch, upload.kind, INFO_FILES[upload.kind])
    assembly = _live_assembly(hub, upload_id)
    if assembly is not None and (assembly.next == count or assembly.refused):
        # Every byte went into its draft (or the checks refused it: finish raises why).
        with hub.assemblies_lock:
            hub.assemblies.pop(upload_id, None)
        try:
            entry = assembly.finish()
        except BaseException:
            drop_upload(hub, upload_id)
            raise
        return _finish(hub, by, upload, store, entry,
                       layout.chunks_digest(assembly.digests), chunks_sha256)
    if missing := [i for i in range(count) if i not in rows]:
        if assembly is not None:  # it took some, not all: they must come again, as objects
            with hub.assemblies_lock:
                hub.assemblies.pop(upload_id, None)
            assembly.abort()
        raise MissingChunks(f"upload {upload_id} lacks {len(missing)} chunk(s) (first: "
                            f"{missing[0]}); send them, then complete it", missing)
    reader = _ChunkReader(hub, upload_id, [rows[index].sha256 for index in range(count)])
    try:
        entry = unpack_entry(store, reader, f"pushed {upload.kind} {upload.name}:"
                             f"{upload.version}", validate=_validator(upload.kind),
                             max_size=hub.settings.max_size)
    except StoredChunkDamaged as damaged:  # the storage lost it: the client sends it again
        with hub.db.write() as session:
            session.execute(delete(UploadChunk).where(UploadChunk.upload_id == upload_id,
                                                      UploadChunk.index == damaged.index))
        hub.storage.delete(chunk_key(upload_id, damaged.index))
        raise MissingChunks(f"upload {upload_id}: {damaged}; send it again, then complete "
                            "the upload", [damaged.index]) from None
    finally:
        reader.close()
    return _finish(hub, by, upload, store, entry, _chunks_digest(rows, count), chunks_sha256)


def _chunks_digest(rows: dict[int, UploadChunk], count: int) -> str | None:
    """``layout.chunks_digest`` of the digests the chunks were checked against on arrival;
    None if a chunk has no row (an upload dropped meanwhile)."""
    if any(index not in rows for index in range(count)):
        return None
    return layout.chunks_digest([rows[index].sha256 for index in range(count)])


def _finish(hub: Hub, by: Principal, upload: Upload, store: VersionedStore, entry: Unpacked,
            whole: str | None, declared: str) -> dict[str, Any]:
    """The checks after the archive was read, the blobs and the version (in that order)."""
    what = f"pushed {upload.kind} {upload.name}:{upload.version}"
    try:
        if whole != declared:
            raise InvalidArgument(f"{what}: the sha256 of its chunks' sha256 digests is "
                                  f"{whole}, not the {declared} declared (chunks_sha256); the "
                                  "archive was damaged or altered in transit; push again")
        if (entry.tag.name, entry.tag.version) != (upload.name, upload.version):
            raise InvalidArgument(f"{what}: the archive holds {entry.tag}, not "
                                  f"{upload.name}:{upload.version}")
        digest = digest_of(entry.info)
        if digest != upload.digest:
            raise InvalidArgument(f"{what}: its files have digest {digest[:12]}, not the "
                                  f"{upload.digest[:12]} declared; refused")
        refs = _check_refs(hub, upload.kind, entry.info) if upload.kind == "bento" else []
        _store_blobs(hub, entry.draft, entry.info["manifest"])
        result = _commit_version(hub, by, upload, entry.info, digest, refs)
    finally:
        if entry.draft.exists():
            store.discard(entry.draft)
    hub.storage.delete_prefix(f"uploads/{upload.id}")
    return result


def _validator(kind: str) -> Any:
    if kind == "model":
        from dosirak.models import valid_info

        return valid_info
    from dosirak.bentos.archive import valid_bento

    return valid_bento


def _check_refs(hub: Hub, kind: str, info: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The models a pushed bento uses must be on the hub, with the digests it records."""
    refs = []
    missing = []
    with hub.db.read() as session:
        for model in info.get("models") or []:
            tag = Tag.parse(model["tag"])
            row = session.scalar(select(Version).where(
                Version.kind == "model", Version.name == tag.name,
                Version.version == (tag.version or "")))
            if row is None or row.digest != model["digest"]:
                missing.append(str(tag))
            else:
                refs.append((tag.name, row.version, row.digest))
    if missing:
        raise AlreadyExists(f"the bento uses models the hub lacks (or holds with another "
                            f"digest): {', '.join(missing)}; push them first (`dosirak push` "
                            "does)")
    return refs


def _store_blobs(hub: Hub, draft: Path, manifest: dict[str, Any]) -> None:
    """Make every file of the version a blob; keep blobs stored already from the collector."""
    now = utcnow()
    wanted = {entry["sha256"]: (name, entry["size"]) for name, entry in manifest.items()}
    with hub.db.write() as session:
        # FOR UPDATE: a collector deleting one of these blobs waits for this transaction, or
        # this one waits for it and then finds the row gone (collector.py).
        found = select(Blob).where(Blob.sha256.in_(list(wanted))).with_for_update()
        for blob in session.scalars(found):
            blob.touched_at = now
            if hub.storage.exists(blob_key(blob.sha256)):
                del wanted[blob.sha256]
    for sha256, (name, _size) in wanted.items():
        hub.storage.put_file(blob_key(sha256), draft / name)
    if wanted:
        with hub.db.write() as session:
            for sha256, (_name, size) in wanted.items():
                blob = session.get(Blob, sha256)
                if blob is None:
                    session.add(Blob(sha256=sha256, size=size, touched_at=now))
                else:
                    blob.touched_at = now


def _plain_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _commit_version(hub: Hub, by: Principal, upload: Upload, info: dict[str, Any], digest: str,
                    refs: list[tuple[str, str, str]]) -> dict[str, Any]:
    manifest = info["manifest"]
    labels = {str(k): str(v) for k, v in (info.get("labels") or {}).items()}
    size = sum(entry["size"] for entry in manifest.values())
    try:
        with hub.db.write() as session:
            row = Version(kind=upload.kind, name=upload.name, version=upload.version,
                          digest=digest, size=size, info=dump_yaml(info), labels=labels,
                          meta=_plain_json(info.get("metadata") or {}),
                          creation_time=creation_time(info), pushed_at=utcnow(),
                          pushed_by=by.name)
            session.add(row)
            session.flush()
            session.add_all(VersionLabel(version_id=row.id, key=k, value=v)
                            for k, v in labels.items())
            session.add_all(VersionFile(version_id=row.id, path=name, size=entry["size"],
                                        sha256=entry["sha256"])
                            for name, entry in manifest.items())
            session.add_all(VersionRef(version_id=row.id, model_name=n, model_version=v,
                                       digest=d) for n, v, d in refs)
            hub.log_event(session, "push", f"{upload.kind} {upload.name}:{upload.version}", by,
                          {"digest": digest, "size": size, "upload_id": upload.id})
            session.execute(delete(Upload).where(Upload.id == upload.id))
    except IntegrityError:  # another completion of the same version won
        with hub.db.read() as session:
            winner = session.scalar(select(Version).where(
                Version.kind == upload.kind, Version.name == upload.name,
                Version.version == upload.version))
        if winner is None:
            raise
        return _existing(winner, digest)
    return {"status": "pushed", "tag": f"{upload.name}:{upload.version}", "digest": digest,
            "size": size}


# ----- pulls -----------------------------------------------------------------------------------


def _version_parts(hub: Hub, row: Version) -> list[layout.Part]:
    info = yaml.load(row.info, Loader=YAML_LOADER)
    return layout.archive_parts(INFO_FILES[row.kind], row.info.encode(), info["manifest"],
                                lambda _name, entry: blob_key(entry["sha256"]))


def archive(hub: Hub, by: Principal, kind: str, name: str, ref: str, *,
            with_models: bool = True) -> dict[str, Any]:
    """What a pull reads: the version, the parts of its archive (a ``.dosirakmodel``, or a
    ``.bento`` with its models), its size and an ETag that changes if they could.

    ``with_models=False``: a bento's own archive alone (the ``bento.tar`` its push sent), for a
    client that fetches the models it lacks one by one."""
    by.require("read")
    check_kind(kind)
    with hub.db.read() as session:
        row = resolve(session, kind, name, ref)
        parts = _version_parts(hub, row)
        tag = f"{row.name}:{row.version}"
        identity = [row.digest]
        suffix = ".dosirakmodel" if kind == "model" else ".bento"
        if kind == "bento" and not with_models:
            identity.append("without models")
            suffix = ".bento.tar"
        elif kind == "bento":
            members = [("bento.tar", parts)]
            for ref_row in session.scalars(select(VersionRef).where(
                    VersionRef.version_id == row.id)):
                model = session.scalar(select(Version).where(
                    Version.kind == "model", Version.name == ref_row.model_name,
                    Version.version == ref_row.model_version))
                if model is None:
                    raise NotFound(f"bento {tag} uses model {ref_row.model_name}:"
                                   f"{ref_row.model_version}, which was deleted from the hub "
                                   "(with --force); push that model again to pull the bento")
                members.append((f"models/{model.name}-{model.version}.dosirakmodel",
                                _version_parts(hub, model)))
                identity.append(model.digest)
            parts = layout.nested_parts(members)
    etag = hashlib.sha256("\n".join([kind, tag, *identity]).encode()).hexdigest()[:32]
    return {"row": row, "tag": tag, "parts": parts, "size": layout.total_size(parts),
            "etag": f'"{etag}"', "filename": f"{row.name}-{row.version}{suffix}"}


def read(hub: Hub, parts: list[layout.Part], start: int, end: int) -> Iterator[bytes]:
    return layout.read_range(parts, hub.storage.open, start, end)


def record_pull(hub: Hub, by: Principal, kind: str, tag: str, digest: str) -> None:
    with hub.db.write() as session:
        hub.log_event(session, "pull", f"{kind} {tag}", by, {"digest": digest})

