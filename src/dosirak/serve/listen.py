"""The listening socket: bound once by the supervisor, shared by every API worker.

    >>> sock = bind_listener("127.0.0.1", 3000, backlog=2048)
    >>> base_url(sock, "127.0.0.1")
    'http://127.0.0.1:3000'

Binding failures become ``ServeError`` messages that say which address, why (in use, not an
address of this machine, a privileged port) and what to do.
"""

from __future__ import annotations

import errno
import socket

from dosirak.exceptions import DosirakError


class ServeError(DosirakError):
    """The server cannot start or keep running: the address, a worker, the service."""


def bind_listener(host: str, port: int, backlog: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` (port 0: any free port), inheritable by workers.
    """
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ServeError(f"cannot listen on {where}: {host!r} is not a host name or address "
                         f"this machine can resolve ({error.strerror}); use an IP address such "
                         "as 127.0.0.1 or 0.0.0.0 with --host") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # A restarted server must not wait for the old connections' TIME_WAIT to expire.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as error:
        sock.close()
        raise ServeError(_bind_failure(where, port, error)) from None
    sock.setblocking(False)
    sock.set_inheritable(True)
    return sock


def _bind_failure(where: str, port: int, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return (f"cannot listen on {where}: the address is already in use (another server, "
                "perhaps an earlier dosirak serve, is listening there); stop it, or pick another "
                "port with --port")
    if error.errno == errno.EACCES:
        return (f"cannot listen on {where}: permission denied (ports below 1024 need "
                "privileges); use a port such as 3000 with --port")
    if error.errno == errno.EADDRNOTAVAIL:
        return (f"cannot listen on {where}: that address does not belong to this machine; use "
                "127.0.0.1 (this machine only) or 0.0.0.0 (every interface) with --host")
    return f"cannot listen on {where}: {error.strerror or error}"


def base_url(sock: socket.socket, host: str, tls: bool = False) -> str:
    """The URL to reach the server on ``sock`` (wildcard hosts become the loopback address;
    ``https`` when it serves TLS)."""
    port = sock.getsockname()[1]
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
