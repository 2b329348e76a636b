"""``POST /v2/models/NAME[/versions/1]/infer``: an API called through the Open Inference Protocol.

It is the API's own endpoint with another codec: the same body size limit, the same API callable
(so the same batching dispatcher, prediction log and loop bridge), the same descriptor checks,
and the server's traffic layer in front (admission, timeout, metrics, access log). Only the
decoding (tensors in) and encoding (tensors out) differ. Compressed bodies are inflated under
the size limit; a response is compressed when the client's Accept-Encoding asks for gzip or
deflate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dosirak.exceptions import PayloadTooLarge, ServiceOverloaded
from dosirak.server.endpoint import (
    OFF_LOOP_BYTES,
    APIEndpoint,
    ClientDisconnected,
    send_answer,
)
from dosirak.server.errors import JSON_HEADER, error_response
from dosirak.server.oip.binary import accepted_encoding, compress, inflate
from dosirak.server.oip.codec import decode_request, encode_response
from dosirak.server.oip.descriptors import VERSION, ApiModel
from dosirak.services import Service

_BINARY_HEADER = (b"content-type", b"application/octet-stream")


class ModelNotReady(ServiceOverloaded):
    """The service has not finished starting (503 with Retry-After, as the protocol says)."""


def oip_error_body(status: int, body: dict[str, Any]) -> dict[str, Any]:
    """The protocol's error body: ``{"error": "..."}`` (and the request id of a 500)."""
    shaped = {"error": body["error"]}
    if "request_id" in body:
        shaped["request_id"] = body["request_id"]
    return shaped


class InferEndpoint(APIEndpoint):
    """The ASGI app behind one API model's infer route (POST only)."""

    def __init__(self, svc: Service, model: ApiModel, *, max_request_size: int,
                 executor: Callable[[], ThreadPoolExecutor | None]) -> None:
        super().__init__(model.api, max_request_size=max_request_size, executor=executor)
        self.svc = svc
        self.model = model
        self.route = f"/v2/models/{model.name}/infer"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        header_length = encoding = accept_encoding = None
        length = -1
        for key, value in scope["headers"]:
            if key == b"inference-header-content-length":
                header_length = value.decode("latin-1").strip()
            elif key == b"content-encoding":
                encoding = value.decode("latin-1").strip().lower()
            elif key == b"accept-encoding":
                accept_encoding = value.decode("latin-1")
            elif key == b"content-length":
                length = int(value) if value.isdigit() else -1
        try:
            # Started means ready here: startup ends once every runner is (a runner worker that
            # dies later is the runner's to handle: its calls wait for the restart or get 503).
            if not self.svc.started:
                raise ModelNotReady(f"model {self.model.name!r} is not ready: the service is "
                                    "starting; retry shortly")
            if length > self.max_request_size:
                raise PayloadTooLarge(self._too_large(length))
            body = await self._read_body(receive)
            loop = asyncio.get_running_loop()
            if self.is_async:
                data, header_size = await self._infer_async(body, header_length, encoding)
            else:
                data, header_size = await loop.run_in_executor(
                    self._executor(), self._infer_sync, body, header_length, encoding)
            status = 200
            if header_size is None:
                headers = [JSON_HEADER]
            else:
                headers = [_BINARY_HEADER, (b"inference-header-content-length",
                                            str(header_size).encode())]
            coding = accepted_encoding(accept_encoding) if accept_encoding else None
            if coding is not None:
                data = compress(data, coding) if len(data) <= OFF_LOOP_BYTES else \
                    await loop.run_in_executor(self._executor(), compress, data, coding)
                headers.append((b"content-encoding", coding.encode()))
                headers.append((b"vary", b"accept-encoding"))
        except ClientDisconnected:
            return
        except Exception as error:
            status, data, headers = error_response(error, route=self.route,
                                                   headers=scope["headers"],
                                                   shape=oip_error_body)
            headers.append(JSON_HEADER)
        await send_answer(scope, send, status, headers, data)

    def _decode(self, body: bytes | bytearray, header_length: str | None,
                encoding: str | None) -> tuple[Any, Any]:
        if encoding is not None and encoding != "identity":
            body = inflate(body, encoding, self.max_request_size)
        request = decode_request(body, header_length)
        return request, self.model.value(request.inputs)

    def _encode(self, request: Any, result: Any) -> tuple[bytes, int | None]:
        return encode_response(self.model.name, VERSION, request, self.model.outputs(result))

    def _infer_sync(self, body: bytes | bytearray, header_length: str | None,
                    encoding: str | None) -> tuple[bytes, int | None]:
        request, value = self._decode(body, header_length, encoding)
        try:
            result = self._call_sync(value)
        finally:
            if self.input.needs_cleanup:
                self.input.cleanup(value)
        return self._encode(request, result)

    async def _infer_async(self, body: bytes | bytearray, header_length: str | None,
                           encoding: str | None) -> tuple[bytes, int | None]:
        loop = asyncio.get_running_loop()
        # Compressed bodies and large ones are decoded off the loop, as the API's route does.
        if len(body) > self._on_loop_below or (encoding is not None and encoding != "identity"):
            request, value = await loop.run_in_executor(self._executor(), self._decode, body,
                                                        header_length, encoding)
        else:
            request, value = self._decode(body, header_length, encoding)
        result = await self._call_async(value)
        if getattr(result, "nbytes", 0) > OFF_LOOP_BYTES:
            return await loop.run_in_executor(self._executor(), self._encode, request, result)
        return self._encode(request, result)
