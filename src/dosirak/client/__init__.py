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

from dosirak.client.async_ import AsyncHTTPClient
from dosirak.client.encoding import Body
from dosirak.client.schema import RemoteAPI
from dosirak.client.sync import SyncHTTPClient

__all__ = ["AsyncHTTPClient", "Body", "RemoteAPI", "SyncHTTPClient"]
