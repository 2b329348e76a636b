"""A push assembled as its chunks arrive, so that the hub writes each byte once.

The first chunk of a fresh upload starts an ``Assembly`` in the process that receives it: a
thread that reads the archive through ``store.unpack.unpack_entry`` (every check of an import)
into a scratch draft, fed chunk by chunk, in order, by the requests that bring them. A chunk is
fed only after its own sha256 matched, and the request answers once it is queued: the thread
unpacks one chunk while the next arrives (at most two chunks held per push). An archive the
checks refuse is refused at the next chunk after the one that shows it, or at ``complete``,
and nothing of it is kept. ``complete`` then waits
for the draft, and the files become blobs (a rename on local storage): nothing was written
before. The whole archive is not hashed again: each chunk was checked against its own sha256,
and ``complete`` checks the list of those.

An assembly lives in one process only. A chunk it cannot take (it arrived at another process,
or out of order) is stored as an object instead, and an upload whose streamed chunks are not all
in a live assembly of the process completing it falls back to reading stored chunks: the
streamed ones are asked for again (``MissingChunks``). A killed hub loses its assemblies and
nothing else; their drafts are removed by the scratch store's cleaning of dead processes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dosirak.exceptions import DosirakError
from dosirak.store.unpack import Unpacked, unpack_entry
from dosirak.store.versioned_store import VersionedStore

_POLL = 0.25  # seconds between checks of an abort while waiting


class AssemblyStopped(DosirakError):
    """The assembly ended without a draft: aborted, or idle for too long."""

    status = 409


class Assembly:
    """Chunks fed in order into one ``unpack_entry`` running in a thread of its own."""

    def __init__(self, upload_id: str, store: VersionedStore, size: int, chunk_size: int,
                 what: str, *, validate: Any, max_size: int, idle: float) -> None:
        self.upload_id, self.size, self.chunk_size = upload_id, size, chunk_size
        self.chunks = -(-size // chunk_size)
        self.next = 0  # the index of the chunk it takes next
        self.digests: list[str] = []  # the sha256 of each chunk taken, in order
        self.lock = threading.Lock()  # one feeder at a time
        self._store, self._idle = store, idle
        self._slot: queue.Queue[Sequence[bytes]] = queue.Queue(maxsize=1)
        self._taken = threading.Event()  # set: the chunk fed last was taken whole
        self._taken.set()
        self._done = threading.Event()
        self._stopped = False
        self._position = 0
        self._pieces: deque[memoryview] = deque()  # what is left of the chunk being read
        self._last = time.monotonic()
        self.entry: Unpacked | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(what, validate, max_size), daemon=True,
            name=f"dosirak-hub-assembly-{upload_id[:8]}")
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Still taking chunks, or holding a finished draft nobody has taken."""
        return not self._stopped and (not self._done.is_set() or self.entry is not None)

    # ----- the feeding side (request threads) ------------------------------------------------

    @property
    def refused(self) -> bool:
        """The checks refused the archive; ``error`` says why (kept to be reported)."""
        return self.error is not None and not isinstance(self.error, AssemblyStopped)

    def chunk_length(self, index: int) -> int:
        return min(self.chunk_size, self.size - index * self.chunk_size)

    def feed(self, index: int, data: Sequence[bytes], sha256: str) -> bool:
        """Queue chunk ``index`` (the pieces it arrived in, in order, already checked against
        its sha256: they are read where they are, never joined) for the unpacking thread,
        once it has taken every byte of the chunk before: the thread unpacks one chunk while
        the next one arrives. False (nothing done) if it expects another chunk. Raises what the
        checks refused, at the next chunk fed after the one that showed it (or at ``finish``).
        """
        with self.lock:
            if self.refused:
                assert self.error is not None
                raise self.error
            if index != self.next or not self.alive:
                return False
            while not self._taken.wait(_POLL):
                if self._done.is_set():
                    break
            if self.error is not None:
                raise self.error
            if not self._taken.is_set():
                raise AssemblyStopped(f"upload {self.upload_id}: its assembly stopped; send "
                                      "the push again")
            self._taken.clear()
            self._slot.put(data)
            self.digests.append(sha256)
            self.next += 1
            self._last = time.monotonic()
            return True

    def finish(self) -> Unpacked:
        """The checked draft, once every byte was fed (the caller owns it from now on)."""
        self._done.wait()
        self._stopped = True
        if self.error is not None:
            raise self.error
        assert self.entry is not None
        return self.entry

    def abort(self) -> None:
        """Stop now; the thread discards its draft."""
        self._stopped = True
        if self._done.is_set() and self.entry is not None and self.entry.draft.exists():
            self._store.discard(self.entry.draft)

    # ----- the unpacking side (its own thread) ----------------------------------------------

    def _run(self, what: str, validate: Any, max_size: int) -> None:
        try:
            entry = unpack_entry(self._store, self, what, validate=validate, max_size=max_size,
                                 overwrite=True)
            if self._stopped:  # aborted after the last byte
                self._store.discard(entry.draft)
            else:
                self.entry = entry
        except BaseException as error:  # handed to whoever feeds or finishes
            self.error = error
        finally:
            self._done.set()
            self._taken.set()

    def readinto(self, buffer: memoryview | bytearray) -> int:
        view = memoryview(buffer)
        while not self._pieces:
            if self._position >= self.size:
                return 0  # the whole archive: the end of the stream
            self._pieces.extend(memoryview(piece) for piece in self._wait_for_chunk() if piece)
        filled = 0
        while self._pieces and filled < len(view):
            piece = self._pieces[0]
            count = min(len(view) - filled, len(piece))
            view[filled:filled + count] = piece[:count]
            filled += count
            if count == len(piece):
                self._pieces.popleft()
            else:
                self._pieces[0] = piece[count:]
        self._position += filled
        if not self._pieces:
            self._taken.set()  # every byte of the chunk is taken: the next may be queued
        return filled

    def read(self, size: int = -1) -> bytes:
        buffer = bytearray(size if size and size > 0 else 1 << 20)
        count = self.readinto(buffer)
        return bytes(buffer[:count])

    def _wait_for_chunk(self) -> Sequence[bytes]:
        while True:
            if self._stopped:
                raise AssemblyStopped(f"upload {self.upload_id}: its assembly was stopped")
            try:
                return self._slot.get(timeout=_POLL)
            except queue.Empty:
                if time.monotonic() - self._last > self._idle:
                    self._stopped = True
                    raise AssemblyStopped(
                        f"upload {self.upload_id}: no chunk came for {self._idle:.0f} s; the "
                        "chunks it took are asked for again when the push resumes") from None


def scratch_store(scratch: Path, kind: str, info_file: str) -> VersionedStore:
    return VersionedStore(scratch / kind, info_file, kind=kind)
