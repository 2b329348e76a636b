"""Python clients of a running service, built from its OpenAPI document.

    >>> import dosirak, numpy as np
    >>> client = dosirak.SyncHTTPClient("http://127.0.0.1:3000", wait_ready=True)
    >>> client.classify(np.array([[5.1, 3.5, 1.4, 0.2]]))
    array([0])
    >>> client.close()

``SyncHTTPClient`` and ``AsyncHTTPClient`` read ``/docs.json`` once and give one method per API.
Values are sent in a media type the API reads (``dosirak.client.encoding``), answers are decoded
by their Content-Type (``dosirak.client.decoding``), and error answers raise typed exceptions
(``dosirak.client.errors``). ``Body(data, content_type)`` sends bytes exactly as given.
"""

from typing import Any

from dosirak.client.async_ import AsyncHTTPClient
from dosirak.client.encoding import Body
from dosirak.client.schema import RemoteAPI
from dosirak.client.sync import SyncHTTPClient

#: BentoML 1.1's name of the blocking client.
HTTPClient = SyncHTTPClient


class Client:
    """BentoML 1.0/1.1's entry point: ``Client.from_url(url)`` is a ``SyncHTTPClient``."""

    @staticmethod
    def from_url(url: str, **options: Any) -> SyncHTTPClient:
        """A blocking client of the service at ``url`` (``wait_ready``, ``timeout``, ...)."""
        return SyncHTTPClient(url, **options)

    @staticmethod
    def wait_until_server_ready(host: str, port: int, timeout: float = 30.0) -> None:
        """Block until the service at ``host:port`` is ready (``ServiceUnreachable`` after
        ``timeout`` seconds)."""
        with SyncHTTPClient(f"http://{host}:{port}", schema={"paths": {}},
                            timeout=timeout) as client:
            client.wait_ready(timeout)


__all__ = ["AsyncHTTPClient", "Body", "Client", "HTTPClient", "RemoteAPI", "SyncHTTPClient"]
