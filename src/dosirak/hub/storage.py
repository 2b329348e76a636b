"""Where the hub keeps bytes: a folder on disk or an object store (``s3://bucket/prefix``),
through fsspec.

Files of versions are stored once, under their sha256 (``blobs/sha256/ab/abcd...``): identical
files across versions and models cost nothing more. Chunks of pushes in progress sit under
``uploads/<id>/``. Every object appears whole or not at all: a local one is written beside its
name, fsynced and renamed into place; a remote one is committed only once complete (an S3 upload
is invisible until then).
"""

from __future__ import annotations

import contextlib
import errno
import io
import mmap
import os
import secrets
import shutil
from pathlib import Path
from typing import IO, Any

import fsspec

from dosirak.store.archive import is_local, local_path, remote
from dosirak.store.tar_stream import DIRECT_ALIGN
from dosirak.store.versioned_store import fsync_dir

_PART_SIZE = 5 << 20  # S3's smallest multipart part: what a remote writer buffers at most
_READ_BLOCK = 4 << 20


def blob_key(sha256: str) -> str:
    return f"blobs/sha256/{sha256[:2]}/{sha256}"


def chunk_key(upload_id: str, index: int) -> str:
    return f"uploads/{upload_id}/{index:08d}"


class Writer:
    """One object being written: ``write`` pieces, then ``commit`` (publish) or ``abort``."""

    def write(self, data: bytes | memoryview) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class _LocalWriter(Writer):
    def __init__(self, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        self._final = final
        self._partial = final.with_name(f".{final.name}.{secrets.token_hex(6)}.partial")
        self._file = open(self._partial, "xb", buffering=0)  # noqa: SIM115 - closed below

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[self._file.write(view):]

    def commit(self) -> None:
        try:
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._partial, self._final)
            fsync_dir(self._final.parent)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        self._file.close()
        self._partial.unlink(missing_ok=True)


class _RemoteWriter(Writer):
    def __init__(self, fs: Any, path: str) -> None:
        self._fs = fs
        self._file = fs.open(path, "wb", autocommit=False, block_size=_PART_SIZE)

    def write(self, data: bytes | memoryview) -> None:
        self._file.write(data)

    def commit(self) -> None:
        try:
            self._file.close()
            self._file.commit()
        except BaseException:
            self.abort()
            raise
        finally:
            with contextlib.suppress(ValueError, AttributeError):
                self._fs.transaction.files.remove(self._file)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._file.discard()
        with contextlib.suppress(ValueError, AttributeError):
            self._fs.transaction.files.remove(self._file)


class Storage:
    """The hub's objects at ``url`` (a local folder or an fsspec URL such as ``s3://b/p``)."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self.local = is_local(self.url)
        if self.local:
            self.root = local_path(self.url).resolve()
            self.root.mkdir(parents=True, exist_ok=True)
            self.fs = fsspec.filesystem("file")
            self._base = str(self.root)
        else:
            self.fs, self._base = remote(self.url, storage_options)
            self._base = self._base.rstrip("/")

    def path(self, key: str) -> str:
        return f"{self._base}/{key}"

    def exists(self, key: str) -> bool:
        if self.local:
            return os.path.isfile(self.path(key))
        return bool(self.fs.exists(self.path(key)))

    def open(self, key: str) -> IO[bytes]:
        """Read an object (seekable)."""
        if self.local:
            return _DirectReader(self.path(key))  # type: ignore[return-value]
        return self.fs.open(self.path(key), "rb", block_size=_READ_BLOCK, cache_type="readahead")

    def size(self, key: str) -> int:
        if self.local:
            return os.path.getsize(self.path(key))
        return int(self.fs.size(self.path(key)))

    def writer(self, key: str) -> Writer:
        if self.local:
            return _LocalWriter(Path(self.path(key)))
        return _RemoteWriter(self.fs, self.path(key))

    def put_file(self, key: str, source: Path) -> None:
        """Publish the local file ``source`` under ``key``; it may be moved, not copied."""
        if self.local:
            final = Path(self.path(key))
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(source, final)  # the file was fsynced when it was unpacked
            except OSError:  # another file system
                writer = self.writer(key)
                with open(source, "rb") as stream:
                    shutil.copyfileobj(stream, _WriterFile(writer), 1 << 20)
                writer.commit()
                return
            fsync_dir(final.parent)
            return
        self.fs.put_file(str(source), self.path(key))

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.local:
                os.unlink(self.path(key))
            else:
                self.fs.rm_file(self.path(key))

    def delete_prefix(self, prefix: str) -> None:
        """Remove everything under ``prefix`` (a folder of chunks)."""
        path = self.path(prefix.rstrip("/"))
        if self.local:
            shutil.rmtree(path, ignore_errors=True)
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(path, recursive=True)

    def keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (for the collector)."""
        path = self.path(prefix.rstrip("/"))
        try:
            found = self.fs.find(path)
        except FileNotFoundError:
            return []
        base = self._base + "/"
        keys = [name.removeprefix(base) if name.startswith(base)
                else name.split(self._base.lstrip("/") + "/", 1)[-1] for name in found]
        return [key for key in keys if not key.rsplit("/", 1)[-1].startswith(".")]


def stale_partials(storage: Storage, older_than: float) -> list[str]:
    """The partial files (``.NAME.XXXX.partial``) a killed writer left in a local storage,
    not written to for ``older_than`` seconds (a writer in progress keeps its file fresh).
    On an object store an unfinished upload is invisible and nothing is listed: the bucket's
    lifecycle rule for incomplete multipart uploads removes those."""
    if not storage.local:
        return []
    import time

    now, found = time.time(), []
    for folder, _dirs, files in os.walk(storage.root):
        for name in files:
            if not (name.startswith(".") and name.endswith(".partial")):
                continue
            path = os.path.join(folder, name)
            try:
                modified = os.stat(path).st_mtime
            except FileNotFoundError:  # committed or removed meanwhile
                continue
            if now - modified > older_than:
                found.append(os.path.relpath(path, storage.root))
    return sorted(found)


_DIRECT_STEP = 4 << 20  # the most one direct read asks for


class _DirectReader(io.RawIOBase):
    """A local object read past the page cache (O_DIRECT) in whole pages where it can: reads
    from a page-aligned offset go through a page-aligned buffer of its own, anything else (a
    ragged tail, a range that starts mid-page, a file system refusing O_DIRECT) through the page
    cache. Objects are written past the page cache too (``store.tar_stream``); reading a blob
    through it would fill fresh page-cache memory with bytes a pull sends once, which on a VM
    whose host takes freed memory back cost the hub 2.4 s of CPU a GiB against 0.5 s."""

    def __init__(self, path: str) -> None:
        super().__init__()
        flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(path, flags)
        self._direct: int | None = None
        if hasattr(os, "O_DIRECT"):
            with contextlib.suppress(OSError):
                self._direct = os.open(path, flags | os.O_DIRECT)
        self._size = os.fstat(self._fd).st_size
        self._position = 0
        self._buffer: mmap.mmap | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"cannot seek to {base + offset}")
        self._position = base + offset
        return self._position

    def _read_direct(self, size: int) -> memoryview | None:
        if self._direct is None or self._position % DIRECT_ALIGN or size < DIRECT_ALIGN:
            return None
        if self._buffer is None:
            self._buffer = mmap.mmap(-1, _DIRECT_STEP)
        step = min(size - size % DIRECT_ALIGN, _DIRECT_STEP)
        view = memoryview(self._buffer)[:step]
        try:
            count = os.preadv(self._direct, [view], self._position)
        except OSError as error:
            view.release()
            if error.errno != errno.EINVAL:
                raise
            os.close(self._direct)  # the file system took the flag but not the read
            self._direct = None
            return None
        self._position += count
        return view[:count]

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (fewer near a page boundary); everything left without one."""
        if size is None or size < 0:
            pieces = []
            while piece := self.read(max(self._size - self._position, 0)):
                pieces.append(piece)
            return b"".join(pieces)
        view = self._read_direct(size)
        if view is not None:
            with view:
                return bytes(view)
        data = os.pread(self._fd, size, self._position)
        self._position += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        view = self._read_direct(len(target))
        if view is not None:
            with view:
                target[:len(view)] = view
                return len(view)
        count = os.preadv(self._fd, [target], self._position)
        self._position += count
        return count

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
            if self._direct is not None:
                os.close(self._direct)
            if self._buffer is not None:
                self._buffer.close()
        super().close()


class _WriterFile:
    def __init__(self, writer: Writer) -> None:
        self.write = writer.write


def age_seconds(storage: Storage, key: str) -> float:
    """How long ago the object ``key`` was written."""
    import time

    if storage.local:
        return time.time() - os.path.getmtime(storage.path(key))
    info = storage.fs.info(storage.path(key))
    modified = info.get("LastModified") or info.get("mtime")
    if modified is None:
        return float("inf")
    stamp = modified.timestamp() if hasattr(modified, "timestamp") else float(modified)
    return time.time() - stamp
