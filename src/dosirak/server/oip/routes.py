"""The routes of the Open Inference Protocol (REST) on a service's app.

    GET  /v2                                     server metadata (extensions: binary_tensor_data)
    GET  /v2/health/live, /v2/health/ready       200, or 503 until the service is ready
    GET  /v2/models/NAME[/versions/1]            model metadata: input and output tensors
    GET  /v2/models/NAME[/versions/1]/ready      200, 503 until ready, 404 for unknown models
    POST /v2/models/NAME[/versions/1]/infer      an inference (InferEndpoint)

Every API is a model named after it, with the one version ``1``. The infer routes of the APIs
are exact paths that the app sends straight to their endpoint, like the APIs' own routes; the
other routes are Starlette's, placed after every other route of the app so that matching them
costs the other routes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dosirak.__about__ import __version__
from dosirak.io.encoding import dumps
from dosirak.server.oip.descriptors import VERSION, ApiModel
from dosirak.server.oip.endpoint import InferEndpoint
from dosirak.services import Service

#: What ``GET /v2`` lists under ``extensions``.
EXTENSIONS = ["binary_tensor_data"]


class OpenInference:
    """The protocol's routes for ``svc``: ``routes`` (Starlette) and ``endpoints`` (infer
    endpoints by exact path, for the app's direct dispatch)."""

    def __init__(self, svc: Service, *, max_request_size: int,
                 executor: Callable[[], ThreadPoolExecutor | None]) -> None:
        self.svc = svc
        self.models = {name: ApiModel(api) for name, api in svc.apis.items()}
        self.endpoints: dict[str, InferEndpoint] = {}
        for name, model in self.models.items():
            endpoint = InferEndpoint(svc, model, max_request_size=max_request_size,
                                     executor=executor)
            self.endpoints[f"/v2/models/{name}/infer"] = endpoint
            self.endpoints[f"/v2/models/{name}/versions/{VERSION}/infer"] = endpoint
        self._metadata = {name: dumps(model.metadata()) for name, model in self.models.items()}
        self._server = dumps({"name": svc.name, "version": __version__,
                              "extensions": EXTENSIONS})
        self.routes = [
            Route("/v2", self.server_metadata),
            Route("/v2/health/live", self.live),
            Route("/v2/health/ready", self.ready),
            Route("/v2/models/{model}", self.model_metadata),
            Route("/v2/models/{model}/versions/{version}", self.model_metadata),
            Route("/v2/models/{model}/ready", self.model_ready),
            Route("/v2/models/{model}/versions/{version}/ready", self.model_ready),
            Route("/v2/models/{model}/infer", self.unknown_infer, methods=["POST"]),
            Route("/v2/models/{model}/versions/{version}/infer", self.unknown_infer,
                  methods=["POST"]),
        ]

    @property
    def paths(self) -> list[str]:
        """The concrete paths of each model (for metric series; the fixed ones are routes)."""
        paths = list(self.endpoints)
        for name in self.models:
            for base in (f"/v2/models/{name}", f"/v2/models/{name}/versions/{VERSION}"):
                paths += [base, f"{base}/ready"]
        return paths

    async def server_metadata(self, request: Request) -> Response:
        return _json(self._server)

    async def live(self, request: Request) -> Response:
        return _json(b'{"live":true}')

    async def ready(self, request: Request) -> Response:
        if self.svc.ready:
            return _json(b'{"ready":true}')
        return _error(503, "the server is not ready: the service is starting")

    async def model_metadata(self, request: Request) -> Response:
        name, problem = self._find(request)
        if problem is not None:
            return problem
        return _json(self._metadata[name])

    async def model_ready(self, request: Request) -> Response:
        name, problem = self._find(request)
        if problem is not None:
            return problem
        if self.svc.ready:
            return _json(dumps({"name": name, "ready": True}))
        return _error(503, f"model {name!r} is not ready: the service is starting")

    async def unknown_infer(self, request: Request) -> Response:
        name, problem = self._find(request)
        if problem is not None:
            return problem
        # A known model and version whose infer path an API of the service took for itself.
        return _error(404, f"model {name!r} cannot be called here: an API of this service "
                      f"uses the path {request.url.path} itself")

    def _find(self, request: Request) -> tuple[str, Response | None]:
        name = request.path_params["model"]
        if name not in self.models:
            return name, _error(404, f"unknown model {name!r}; this server's models are: "
                                f"{', '.join(self.models)}")
        version = request.path_params.get("version")
        if version is not None and version != VERSION:
            return name, _error(404, f"model {name!r} has no version {version!r}; its versions "
                                f"are: {VERSION}")
        return name, None


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    headers = {"retry-after": "1"} if status == 503 else None
    return Response(dumps({"error": message}), status_code=status, headers=headers,
                    media_type="application/json")
