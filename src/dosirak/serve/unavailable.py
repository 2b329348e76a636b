"""Answers from the supervisor while no worker can serve: ``--reload`` after a broken edit.

Without it, a request sent while the edited service fails to import would wait in the listen
backlog until the file is fixed (minutes). The supervisor instead accepts such connections
itself and answers each ``503`` with the import error's summary and ``Retry-After``, reading
the request head first (so that the client is not reset) for at most ``READ_TIMEOUT`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

READ_TIMEOUT = 2.0
_MAX_HEAD = 65536


def response(reason: str) -> bytes:
    """The whole HTTP answer: 503, a JSON body saying why, ``Connection: close``."""
    body = json.dumps({"error": f"the service cannot start after the last change: {reason}; "
                                "fix the sources (the server reloads on the next change)"}
                      ).encode()
    head = ("HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n")
    return head.encode("latin-1") + body


async def answer(connection: socket.socket, reason: str) -> None:
    """Read the request head (bounded in time and size), answer 503, close."""
    loop = asyncio.get_running_loop()
    connection.setblocking(False)
    try:
        with contextlib.suppress(TimeoutError, OSError):
            async with asyncio.timeout(READ_TIMEOUT):
                head = b""
                while b"\r\n\r\n" not in head and len(head) < _MAX_HEAD:
                    chunk = await loop.sock_recv(connection, 65536)
                    if not chunk:
                        break
                    head += chunk
        with contextlib.suppress(OSError):
            await loop.sock_sendall(connection, response(reason))
            connection.shutdown(socket.SHUT_WR)
    finally:
        connection.close()
