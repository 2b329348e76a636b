"""The image's HEALTHCHECK: GET /readyz on the port the server listens on; exit 0 on 200.

    HEALTHCHECK CMD ["/opt/dosirak/venv/bin/python", "-m", "dosirak.deploy.healthcheck"]

Python's standard library only (slim images have no curl). The address follows the server's:
``$DOSIRAK_HOST`` (a wildcard means loopback) and ``$PORT``.
"""

from __future__ import annotations

import http.client
import os
import sys


def probe_address(environ: dict[str, str] | os._Environ[str]) -> tuple[str, int]:
    host = environ.get("DOSIRAK_HOST", "0.0.0.0")
    if host in ("0.0.0.0", "", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, int(environ.get("PORT", "3000"))


def main() -> int:
    host, port = probe_address(os.environ)
    try:
        connection = http.client.HTTPConnection(host, port, timeout=4)
        connection.request("GET", "/readyz")
        status = connection.getresponse().status
    except (OSError, ValueError, http.client.HTTPException) as error:
        print(f"unhealthy: {host}:{port}/readyz: {error}")
        return 1
    print(f"{'healthy' if status == 200 else 'unhealthy'}: /readyz answered {status}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
