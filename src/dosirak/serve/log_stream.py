"""A log stream for busy servers: lines are collected and written a few times per second.

    >>> stream = BatchedLogStream(fd=2)
    >>> configure_logging(config.logging, stream=stream)     # access and prediction logs
    >>> stream.start(loop)                                   # writes every 0.1 s
    >>> stream.close()                                       # writes the rest

A server at 10,000 requests per second writes 10,000 access lines per second. Written one by
one (``StreamHandler`` flushes after every record) each line costs a system call, about half of
what logging a request costs; written in batches the call is shared by hundreds of lines. Lines
reach the file at most ``interval`` seconds late, and a process killed with SIGKILL loses at most
that much.

Lines can also be handed over unformatted with ``write_later(render, item)``: the stream keeps
``item`` and calls ``render(item)`` for its text when it writes. The access log does this, so the
request path pays for appending a tuple, and the formatting of many lines happens in one go,
often while the event loop would otherwise wait.
"""

from __future__ import annotations

import asyncio
import io
import os
import threading
from collections.abc import Callable
from typing import Any

#: Write as soon as this many characters wait, whatever the timer says.
HIGH_WATER = 1 << 16


class BatchedLogStream(io.TextIOBase):
    """A text stream whose ``write`` collects lines and whose timer writes them to ``fd``."""

    def __init__(self, fd: int = 2, interval: float = 0.1) -> None:
        self.fd = fd
        self.interval = interval
        # Text, or (render, item) pairs whose text is render(item), in the order written.
        self._parts: list[Any] = []
        self._size = 0
        self._lock = threading.Lock()  # lines also come from the thread pool (sync APIs)
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._direct = False  # after close(): every line is written at once

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        """Collect ``text``; write everything at once past ``HIGH_WATER`` characters."""
        with self._lock:
            self._parts.append(text)
            self._size += len(text)
            full = self._size >= HIGH_WATER or self._direct
        if full:
            self.drain()
        return len(text)

    def write_later(self, render: Callable[[Any], str], item: Any) -> None:
        """Keep ``item``; its line is ``render(item)``, made when the lines are written.

        ``render`` must not fail (it runs on the timer, where an error would lose the batch):
        give it plain values captured at the call.
        """
        with self._lock:
            self._parts.append((render, item))
            self._size += 128  # about one access line
            full = self._size >= HIGH_WATER or self._direct
        if full:
            self.drain()

    def flush(self) -> None:
        """Nothing: the handler calls this after every line; the timer writes them."""

    def drain(self) -> None:
        """Write every collected line now."""
        with self._lock:
            if not self._parts:
                return
            parts = self._parts
            self._parts = []
            data = "".join([part if type(part) is str else part[0](part[1])
                            for part in parts]).encode("utf-8", "backslashreplace")
            self._size = 0
            view = memoryview(data)
            while view:
                try:
                    written = os.write(self.fd, view)
                except InterruptedError:
                    continue
                except OSError:
                    return  # stderr closed: nowhere to write
                view = view[written:]

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Write the collected lines every ``interval`` seconds from ``loop``."""
        self._loop = loop
        self._timer = loop.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        self.drain()
        assert self._loop is not None
        self._timer = self._loop.call_later(self.interval, self._tick)

    def close(self) -> None:
        """Stop the timer and write what is left; later lines (the last words of a process
        that is exiting) are written one by one. The file descriptor stays open."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._direct = True
        self.drain()
