"""Tar streams for archives: headers by ``tarfile``, file data moved in big chunks beside it.

Why not tarfile alone: its stream modes (``w|``, ``r|``) pass every byte through a Python buffer
that they concatenate and slice, about three copies per byte, which made a 1 GiB export take
several times as long as ``tar -cf``. Here tarfile still writes and parses every header (PAX
format), and file data goes straight between files, the sha256 and the (de)compressor:

- writing, uncompressed to a local file, the data never enters Python (``copy_file_range``);
- reading a plain local archive, the kernel copies each member's data into the new file
  (``copy_file_range``) while a second thread hashes the written file through a mapping, one step
  behind; from any other source (a decompressor, a download) one thread reads, a second hashes,
  a third writes. Written pages are handed to the disk as they go (``sync_file_range``), so that
  the fsync before the store's rename finds little left to do. Every byte is still hashed and
  fsynced; the sha256 is the slowest part (about 1.3 GB/s here), so it sets the pace of an
  import.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl as _fcntl
import hashlib
import io
import mmap
import os
import stat
import tarfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from dosirak.exceptions import StoreCorrupted, UnsafeArchive

Progress = Callable[[int], None] | None
CHUNK = 1 << 20  # big enough that per-chunk Python overhead vanishes, small enough for L2 cache
_RING = 4  # chunks in flight between the reading thread and the hashing and writing ones
_WRITEBACK_STEP = 16 << 20  # hand written data to the disk every 16 MiB
_COPY_STEP = 64 << 20  # copy_file_range per call, so that progress keeps moving
_KERNEL_STEP = 8 << 20  # import: copied by the kernel, then hashed while the next step copies
_NO_COPY_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF,
                  errno.EPERM, errno.ETXTBSY}


def header(name: str, size: int, records: dict[str, str] | None = None) -> bytes:
    """The tar header of a plain file, as ``tarfile`` writes it (PAX; mode 0644, mtime 0).

    ``records`` are extra PAX records (keyword: value) written before it.
    """
    member = tarfile.TarInfo(name)
    member.size, member.mode, member.mtime = size, 0o644, 0
    member.pax_headers = dict(records or {})
    return member.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


class TarWriter:
    """Write a tar stream of plain files to ``sink``.

    Pass ``fd`` when ``sink`` is an unbuffered local file written as is (no compression): file
    data is then copied from file to file in the kernel.
    """

    def __init__(self, sink: IO[bytes], *, fd: int | None = None, progress: Progress = None):
        self._sink, self._fd, self._progress = sink, fd, progress
        self._offset = 0

    def _write(self, data: bytes | memoryview) -> None:
        if self._fd is not None:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        else:
            self._sink.write(data)
        self._advance(len(data))

    def _advance(self, count: int) -> None:
        self._offset += count
        if self._progress is not None:
            self._progress(count)

    def add_bytes(self, name: str, data: bytes, records: dict[str, str] | None = None) -> None:
        """Add a file whose content is in memory, with extra PAX ``records`` if given."""
        self._write(header(name, len(data), records))
        self._write(data)
        self._pad()

    def add_file(self, name: str, path: Path, size: int) -> None:
        """Add the file at ``path``, which must be ``size`` bytes long (its manifest size)."""
        with open(path, "rb", buffering=0) as source:
            actual = os.fstat(source.fileno()).st_size
            if actual != size:
                raise StoreCorrupted(f"{path} is {actual} bytes but its manifest says {size}: "
                                     "it changed after it was stored; delete the model and save "
                                     "or import it again")
            self._write(header(name, size))
            copied = self._copy_in_kernel(source.fileno(), size) if self._fd is not None else 0
            self._copy(source, size - copied)
        self._pad()

    def add_nested(self, name: str, size: int, write: Callable[[], None]) -> None:
        """Add a member of ``size`` bytes that ``write()`` writes to the same sink itself (an
        archive nested whole: ``archive.tar_size`` gives its size)."""
        self._write(header(name, size))
        write()
        self._offset += size
        self._pad()

    def _copy_in_kernel(self, source: int, size: int) -> int:
        """copy_file_range as far as the kernel allows; returns how much it copied."""
        assert self._fd is not None
        copied = 0
        while copied < size and hasattr(os, "copy_file_range"):
            try:
                count = os.copy_file_range(source, self._fd, min(_COPY_STEP, size - copied))
            except OSError as error:
                if error.errno not in _NO_COPY_RANGE:
                    raise
                break  # not between these files: the plain copy takes over where this stopped
            if count == 0:
                break  # the file shrank under us; _copy reports it
            copied += count
            self._advance(count)
        return copied

    def _copy(self, source: IO[bytes], remaining: int) -> None:
        buffer = memoryview(bytearray(min(CHUNK, max(remaining, 1))))
        while remaining:
            count = source.readinto(buffer[:min(len(buffer), remaining)])  # type: ignore[attr-defined]
            if not count:
                raise StoreCorrupted(f"{source.name} ended {remaining} bytes early: it changed "
                                     "after it was stored; delete the model and save it again")
            self._write(buffer[:count])
            remaining -= count

    def _pad(self) -> None:
        if remainder := self._offset % tarfile.BLOCKSIZE:
            self._write(bytes(tarfile.BLOCKSIZE - remainder))

    def close(self) -> None:
        """End the archive as tarfile does: two zero blocks, then zeros to a whole record."""
        self._write(bytes(2 * tarfile.BLOCKSIZE))
        if remainder := self._offset % tarfile.RECORDSIZE:
            self._write(bytes(tarfile.RECORDSIZE - remainder))


class CheckedTarInfo(tarfile.TarInfo):
    """A tar header that refuses, as soon as it is parsed, what dosirak never writes and tarfile
    would keep for the rest of the archive: global PAX headers (their records apply to every
    later member, so a hostile archive could pile them up member after member)."""

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:  # type: ignore[override]
        """Parse one 512-byte header block, refusing a global PAX header."""
        member = super().frombuf(buf, encoding, errors)
        if member.type == tarfile.XGLTYPE:
            raise UnsafeArchive("the archive holds a global PAX header, which dosirak never "
                                "writes; the archive was not made by dosirak or was altered; "
                                "refused")
        return member


class ForwardReader:
    """A readable stream that counts its position and seeks forward only, by reading.

    It lets ``tarfile.open(fileobj=..., mode="r:")`` parse headers from a stream that cannot
    rewind (a decompressor, a download) while member data is read here directly, without the
    copies of tarfile's own stream mode. Seeking backwards is refused: an archive is read once.

    ``header_limit`` bounds what tarfile may read for one member's headers: it reads header
    blocks, PAX extended headers and GNU long names with ``read()`` and holds each whole in
    memory (a 23 KB archive once asked it for 753 MB), while member data is read here with
    ``readinto``. A ``read()`` past the limit is refused before a byte is read; call
    ``begin_member()`` before each member's headers.
    """

    def __init__(self, stream: IO[bytes], *, header_limit: int | None = None,
                 name: str = "the archive") -> None:
        self._stream, self._name = stream, name
        self._position = 0
        # Only a stream that reports the offsets as this reader counts them can skip by seeking,
        # and only a regular file's descriptor can be handed to the kernel to copy from.
        self._seekable = _seekable(stream) and stream.tell() == 0
        self._fd = _regular_file(stream) if self._seekable else None
        self._header_limit = header_limit
        self._header_bytes = 0

    def begin_member(self) -> None:
        """Start the header budget of the next member afresh."""
        self._header_bytes = 0

    def _take_header_bytes(self, size: int | None) -> None:
        if self._header_limit is None:
            return
        if size is None or size < 0 or self._header_bytes + size > self._header_limit:
            asked = "all the rest" if size is None or size < 0 else f"{size} more bytes"
            raise UnsafeArchive(
                f"{self._name}: a member's tar headers (PAX extended header, GNU long name) "
                f"ask for {asked} after {self._header_bytes}, over the limit of "
                f"{self._header_limit} bytes; dosirak writes headers of a few kilobytes at "
                "most, so the archive was altered or is hostile; refused")
        self._header_bytes += size

    def tell(self) -> int:
        return self._position

    def kernel_source(self, count: int) -> tuple[int, int] | None:
        """``(fd, offset)``: the file descriptor and the file offset of the next byte, when the
        next ``count`` bytes come plain from a local file (so the kernel can copy them); None
        otherwise."""
        if self._fd is not None:
            return self._fd, self._position
        inner = getattr(self._stream, "kernel_source", None)
        return inner(count) if inner is not None else None

    def skip(self, count: int) -> None:
        """Account for ``count`` bytes that the kernel copied from ``kernel_source()``."""
        if self._seekable:
            self._stream.seek(count, io.SEEK_CUR)
        else:
            self._stream.skip(count)  # type: ignore[attr-defined]
        self._position += count

    def readinto(self, buffer: memoryview | bytearray) -> int:
        count = self._stream.readinto(buffer)  # type: ignore[attr-defined]
        self._position += count or 0
        return count or 0

    def read(self, size: int = -1) -> bytes:
        self._take_header_bytes(size)  # only tarfile calls read(): headers
        if size is None or size < 0:
            data = self._stream.read()
            self._position += len(data)
            return data
        parts, wanted = [], size
        while wanted:  # a decompressor may return less than asked before the end
            part = self._stream.read(wanted)
            if not part:
                break
            parts.append(part)
            wanted -= len(part)
        data = b"".join(parts)
        self._position += len(data)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self._position + offset
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target < self._position:
            raise tarfile.ReadError("the archive is read front to back once and cannot rewind")
        if target > self._position and self._seekable:  # a plain file: skip without reading
            self._position = self._stream.seek(target - self._position, io.SEEK_CUR)
            return self._position
        scratch = memoryview(bytearray(min(CHUNK, target - self._position)))
        while self._position < target:
            if not self.readinto(scratch[:target - self._position]):
                break  # tarfile notices the end itself
        return self._position

    def drain(self) -> None:
        """Read to the end, so that a decompressor checks its trailer (gzip's CRC)."""
        scratch = memoryview(bytearray(CHUNK))
        while self.readinto(scratch):
            pass


def _regular_file(stream: IO[bytes]) -> int | None:
    try:
        fd = stream.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return None


def _seekable(stream: IO[bytes]) -> bool:
    try:
        return bool(stream.seekable()) and isinstance(stream, io.BufferedReader)
    except (AttributeError, OSError, ValueError):
        return False


# ----- writing members out, hashed -----------------------------------------------------------


_libc = ctypes.CDLL(None, use_errno=True)
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range of a file to disk, without waiting for it.

    Only a head start for the later fsync, which still decides durability; a no-op where the
    call does not exist (outside Linux).
    """
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


DIRECT_ALIGN = 4096  # what O_DIRECT asks of addresses, lengths and offsets here


class _Output:
    """A new file, written in order; every _WRITEBACK_STEP bytes go to the disk early.

    With a ``flusher`` the writeback requests run there: on a busy disk the request itself can
    wait for the device's queue, and the writes should not wait with it.

    After ``go_direct``: written with O_DIRECT (straight to the disk, no page cache) while the
    writes are whole pages from page-aligned buffers, and through the page cache from the first
    one that is not (a file's tail); where the file system refuses O_DIRECT, through the page
    cache throughout. A big file is fsynced before it counts anyway, so the page cache only costs a
    copy and memory there: on a VM whose host takes freed memory back, filling fresh page-cache
    memory measured up to 25x slower than the disk (1 GiB: 7.5 s against 0.5 s).
    """

    def __init__(self, path: Path) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        self.fd = os.open(path, flags, 0o644)
        self.direct = False
        self.flusher: ThreadPoolExecutor | None = None
        self._written = self._flushed = 0

    def go_direct(self) -> None:
        """Write with O_DIRECT from now on, where the file system takes it."""
        if not hasattr(os, "O_DIRECT") or self._written % DIRECT_ALIGN:
            return
        try:
            _fcntl.fcntl(self.fd, _fcntl.F_SETFL,
                         _fcntl.fcntl(self.fd, _fcntl.F_GETFL) | os.O_DIRECT)
        except OSError:
            return
        self.direct = True

    def _buffered(self) -> None:
        _fcntl.fcntl(self.fd, _fcntl.F_SETFL, _fcntl.fcntl(self.fd, _fcntl.F_GETFL) & ~os.O_DIRECT)
        self.direct = False

    def write(self, chunk: memoryview) -> None:
        size = len(chunk)
        if self.direct and size % DIRECT_ALIGN:
            self._buffered()
        while chunk:
            try:
                count = os.write(self.fd, chunk)
            except OSError as error:
                if not self.direct or error.errno != errno.EINVAL:
                    raise
                self._buffered()  # a file system that took the flag but not the write
                continue
            chunk = chunk[count:]
            if self.direct and len(chunk) % DIRECT_ALIGN:
                self._buffered()
        self._written += size
        if self.direct:  # already on the disk: nothing to hand to writeback
            self._flushed = self._written
        elif self._written - self._flushed >= _WRITEBACK_STEP:
            span = (self.fd, self._flushed, self._written - self._flushed)
            if self.flusher is None:
                start_writeback(*span)
            else:
                self.flusher.submit(start_writeback, *span)
            self._flushed = self._written


def copy_hashed(source: ForwardReader, size: int, target: Path, progress: Progress = None) -> str:
    """Copy ``size`` bytes of ``source`` into the new file ``target``; returns their sha256.

    Three threads share the work chunk by chunk: this one reads (and decompresses), one hashes
    (hashlib releases the GIL), one writes. Raises EOFError when the source ends early.
    """
    digest = hashlib.sha256()
    output = _Output(target)
    try:
        kernel = source.kernel_source(size) if size > CHUNK else None
        if kernel is not None and _copy_in_kernel(*kernel, source, size, digest, output,
                                                  progress):
            pass
        elif size > CHUNK:
            _copy_in_threads(source, size, digest, output, progress)
        else:  # a small file: threads would cost more than they save
            data = memoryview(bytearray(size))
            if _fill(source, data) < size:
                raise EOFError(f"the archive ends inside a member of {size} bytes")
            digest.update(data)
            output.write(data)
            if progress is not None:
                progress(size)
    finally:
        os.close(output.fd)
    return digest.hexdigest()


def _copy_in_kernel(fd: int, offset: int, source: ForwardReader, size: int, digest: Any,
                    output: _Output, progress: Progress) -> bool:
    """Copy with ``copy_file_range`` (page cache to page cache, no copy through Python) and
    hash what was written, from a read-only mapping of each step of the new file, one step
    behind the copy in a second thread; each mapping is closed once hashed, so the process maps
    at most two steps at a time. The bytes hashed are the stored bytes themselves. Returns
    False, having copied nothing, where the kernel cannot copy between these files."""
    out = output.fd
    with ThreadPoolExecutor(1, thread_name_prefix="dosirak-sha256") as hasher:
        hashing: Future[Any] | None = None
        done = 0
        while done < size:
            step = min(_KERNEL_STEP, size - done)
            copied = 0
            while copied < step:
                try:
                    count = os.copy_file_range(fd, out, step - copied, offset + done + copied,
                                               done + copied)
                except OSError as error:
                    if done + copied == 0 and error.errno in _NO_COPY_RANGE:
                        return False
                    raise
                if count == 0:
                    raise EOFError(f"the archive ends {size - done - copied} bytes into a "
                                   "member")
                copied += count
            start_writeback(out, done, step)
            window = mmap.mmap(out, step, prot=mmap.PROT_READ, offset=done)
            if hashing is not None:
                hashing.result()
            hashing = hasher.submit(_hash_window, digest, window)
            done += step
            if progress is not None:
                progress(step)
        if hashing is not None:
            hashing.result()
    source.skip(size)
    return True


def _hash_window(digest: Any, window: mmap.mmap) -> None:
    try:
        digest.update(window)
    finally:
        window.close()


def _copy_in_threads(source: ForwardReader, size: int, digest: Any, output: _Output,
                     progress: Progress) -> None:
    # Anonymous mappings: page-aligned, as O_DIRECT writes need them.
    buffers = [memoryview(mmap.mmap(-1, CHUNK)) for _ in range(_RING)]
    pending: deque[tuple[Future[Any], Future[Any]]] = deque()
    # The flusher is shut down last: the writer hands it work until the writer stops.
    with ThreadPoolExecutor(1, thread_name_prefix="dosirak-writeback") as flusher, \
            ThreadPoolExecutor(1, thread_name_prefix="dosirak-sha256") as hasher, \
            ThreadPoolExecutor(1, thread_name_prefix="dosirak-write") as writer:
        output.flusher = flusher
        output.go_direct()
        done = turn = 0
        while done < size:
            if len(pending) == len(buffers):
                for future in pending.popleft():  # its buffer is free again
                    future.result()
            buffer = buffers[turn % len(buffers)]
            turn += 1
            count = _fill(source, buffer[:min(CHUNK, size - done)])
            if count == 0:
                raise EOFError(f"the archive ends {size - done} bytes into a member")
            chunk = buffer[:count]
            pending.append((hasher.submit(digest.update, chunk),
                            writer.submit(output.write, chunk)))
            done += count
            if progress is not None:
                progress(count)
        while pending:
            for future in pending.popleft():
                future.result()


class BackgroundWriter:
    """Writes to ``raw`` from a second thread, so that compressing and writing overlap.

    Data is queued (at most _RING * 2 writes ahead); a failed write is raised by a later
    ``write``, ``flush`` or ``close``.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="dosirak-write")
        self._pending: deque[Future[Any]] = deque()

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._raw.write(view)
            view = view[len(view) if written is None else written:]

    def write(self, data: Any) -> int:
        # The caller may reuse its buffer as soon as this returns: keep a copy unless immutable.
        owned = data if isinstance(data, bytes) else bytes(data)
        while len(self._pending) >= 2 * _RING or (self._pending and self._pending[0].done()):
            self._pending.popleft().result()
        self._pending.append(self._executor.submit(self._write_all, owned))
        return len(owned)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        while self._pending:
            self._pending.popleft().result()
        self._raw.flush()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._executor.shutdown(wait=True)

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *failure: object) -> None:
        if failure[0] is None:
            self.close()
        else:  # already failing: stop, but let the first error be the one that is seen
            self._executor.shutdown(wait=True, cancel_futures=True)


def _fill(source: ForwardReader, buffer: memoryview) -> int:
    """Read until ``buffer`` is full or the source ends."""
    filled = 0
    while filled < len(buffer):
        count = source.readinto(buffer[filled:])
        if not count:
            break
        filled += count
    return filled
