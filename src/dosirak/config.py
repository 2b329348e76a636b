"""Serving configuration: built-in defaults, a YAML file, then overrides from the environment.

    >>> config = load_config("serving.yaml")          # or DOSIRAK_CONFIG=serving.yaml
    >>> config.api_server.port
    3000
    >>> config.runners.batching_for("iris_clf", "predict")
    BatchingOptions(enabled=True, max_batch_size=100, max_latency_ms=100.0)

Sources, later ones winning key by key: the defaults below < the YAML file (``--config FILE``, else
``DOSIRAK_CONFIG``) < ``DOSIRAK_CONFIG_OPTIONS`` (``"api_server.workers=2
runners.iris_clf.batching.max_batch_size=32"``: space-separated ``dotted.key=value`` pairs, each
value read as YAML) < the ``overrides`` the caller passes (command-line flags such as ``--port``).

Every section refuses unknown keys, and every problem is reported at once as one
:class:`~dosirak.exceptions.InvalidArgument` naming the key, the value, the rule and where the
value came from. ``docs/configuration.md`` lists every key; :func:`config_reference` builds that
table from the models below, and a test keeps the two the same.
"""

from __future__ import annotations

import difflib
import itertools
import math
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dosirak.exceptions import InvalidArgument
from dosirak.signature import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_LATENCY_MS
from dosirak.tag import NAME

CONFIG_FILE_ENV = "DOSIRAK_CONFIG"
CONFIG_OPTIONS_ENV = "DOSIRAK_CONFIG_OPTIONS"

# Measured on the iris service (docs/benchmarks.md): `local` and `process` serve within about 10%
# of each other; `local` needs one process and ~40 MiB less, and starts sooner.
DEFAULT_PLACEMENT = "local"
# From half a millisecond (a cached or trivial prediction) to a minute (the default timeout): a
# fast service's requests spread over the low buckets instead of all landing in the first one.
DEFAULT_DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                            1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_METRIC_NAMESPACE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_HTTP_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class _Section(BaseModel):
    # Frozen: workers get the configuration once and nothing should edit it behind their back.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _string_list(value: Any) -> Any:
    """Let a single string stand for a one-item list (``allow_origins: "*"``)."""
    return [value] if isinstance(value, str) else value


class CorsConfig(_Section):
    """Cross-origin resource sharing: which browser pages may call the API."""

    enabled: bool = Field(False, description="Answer CORS preflight requests and add the "
                          "Access-Control-* headers.")
    allow_origins: list[str] = Field([], description="Origins allowed to call, such as "
                                     "`https://app.example.com`, or `['*']` for any.")
    allow_methods: list[str] = Field(["GET", "POST", "HEAD", "OPTIONS"],
                                     description="HTTP methods allowed in cross-origin calls.")
    allow_headers: list[str] = Field([], description="Request headers allowed in cross-origin "
                                     "calls (`['*']` for any).")
    expose_headers: list[str] = Field(["x-request-id"], description="Response headers the "
                                      "calling page may read.")
    allow_credentials: bool = Field(False, description="Allow cookies and authorization headers "
                                    "in cross-origin calls; needs explicit origins, not `*`.")
    max_age: int = Field(600, ge=0, description="Seconds a browser may cache a preflight answer.")

    _lists = field_validator("allow_origins", "allow_methods", "allow_headers", "expose_headers",
                             mode="before")(_string_list)

    @field_validator("allow_methods")
    @classmethod
    def _methods(cls, methods: list[str]) -> list[str]:
        for method in methods:
            if method != "*" and not _HTTP_TOKEN.match(method):
                raise ValueError(f"{method!r} is not an HTTP method name")
        return [method.upper() for method in methods]

    @model_validator(mode="after")
    def _consistent(self) -> CorsConfig:
        """Refuse combinations that browsers would reject anyway, before a page finds out."""
        if self.enabled and not self.allow_origins:
            raise ValueError("CORS is enabled but allow_origins is empty, so no page could call; "
                             "list the origins (or ['*'] for any) or set enabled: false")
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("allow_credentials: true cannot be combined with allow_origins '*' "
                             "(browsers refuse it); list the origins explicitly")
        return self


class HttpConfig(_Section):
    """What one connection may ask of an API worker before the request reaches the service.

    These limits stop clients that send too much head (431), too slowly (408), or hold too many
    connections open (503): each would otherwise cost the worker memory or a connection slot for
    as long as the client likes.
    """

    max_header_bytes: ByteSize = Field(ByteSize(64 * 1024), ge=1024, description="Largest "
                                       "request head in bytes (request line and headers); "
                                       "larger ones are answered 431.")
    max_headers: int = Field(100, ge=8, description="Most header fields in one request; more "
                             "are answered 431.")
    head_timeout: float = Field(10.0, gt=0, allow_inf_nan=False, description="Seconds a "
                                "client has, from the first byte of a request (or from "
                                "connecting), to send its whole head; then 408 and the "
                                "connection is closed.")
    body_timeout: float = Field(30.0, gt=0, allow_inf_nan=False, description="Seconds a "
                                "request body may go without a byte arriving; then 408 and the "
                                "connection is closed.")
    max_connections: int = Field(4096, ge=1, description="Open connections one API worker "
                                 "keeps; a connection past it is answered 503 and closed. "
                                 "Capped by the process's open-file limit.")


class InputLimitsConfig(_Section):
    """What one request body may ask of its parser, checked before the costly work.

    A body within ``max_request_size`` can still declare far more than its bytes: a CSV header
    of 60,000 columns, a PNG of 13000x13000 pixels. An input descriptor's own option
    (``max_columns=``, ``max_pixels=``) wins over these; bodies past them are answered 400.
    """

    max_dataframe_columns: int = Field(1000, ge=1, description="Most columns of a DataFrame "
                                       "body (CSV fields per row, JSON keys, Parquet schema "
                                       "width).")
    max_dataframe_cells: int = Field(10_000_000, ge=1, description="Most cells (rows x "
                                     "columns) a Parquet body may declare; its encodings can "
                                     "pack billions into a few kilobytes.")
    max_image_pixels: int = Field(25_000_000, ge=1, description="Most pixels (width x height) "
                                  "of an image body, read from its header before decoding.")


class OipConfig(_Section):
    """The Open Inference Protocol (KServe v2 / Triton HTTP) routes under ``/v2``."""

    enabled: bool = Field(True, description="Serve every API as a model of the Open Inference "
                          "Protocol: `GET /v2`, `/v2/health/*`, `/v2/models/API` and `POST "
                          "/v2/models/API/infer` (JSON and binary tensors).")


#: Routes that need no token unless ``api_server.auth.public_routes`` says otherwise: probes.
DEFAULT_PUBLIC_ROUTES = ("/livez", "/healthz", "/readyz", "/v2/health/live", "/v2/health/ready")


class AuthConfig(_Section):
    """Bearer tokens every request must carry (``Authorization: Bearer TOKEN``)."""

    enabled: bool | None = Field(None, description="Require a token. `null`: when any token is "
                                 "configured (tokens_file or the DOSIRAK_API_TOKENS environment "
                                 "variable, comma-separated tokens); `true`: always (starting "
                                 "without a token is an error); `false`: never.")
    tokens_file: str | None = Field(None, description="A file of SHA-256 hex digests of the "
                                    "accepted tokens, one a line (`printf %s TOKEN | "
                                    "sha256sum`); `#` starts a comment.")
    public_routes: list[str] = Field(list(DEFAULT_PUBLIC_ROUTES), description="Paths served "
                                     "without a token: exact paths, or prefixes ending in `*` "
                                     "(`/static/*`). `/metrics`, `/metadata` and the docs need "
                                     "a token unless listed.")

    _lists = field_validator("public_routes", mode="before")(_string_list)

    @field_validator("public_routes")
    @classmethod
    def _paths(cls, paths: list[str]) -> list[str]:
        for path in paths:
            if not path.startswith("/") or "*" in path[:-1]:
                raise ValueError(f"{path!r} is not a path (starting with /) or a prefix ending "
                                 "in *")
        return paths


class SslConfig(_Section):
    """TLS: serve HTTPS with this certificate (the CLI's `--ssl-certfile` and friends)."""

    certfile: str | None = Field(None, description="PEM certificate chain; with `keyfile`, "
                                 "the server speaks HTTPS only.")
    keyfile: str | None = Field(None, description="PEM private key of the certificate.")
    keyfile_password: str | None = Field(None, description="Password of an encrypted "
                                         "`keyfile`.")
    ca_certs: str | None = Field(None, description="PEM CA bundle to verify client "
                                 "certificates with (see `cert_reqs`).")
    cert_reqs: int = Field(0, ge=0, le=2, description="Client certificates: 0 not asked, 1 "
                           "verified when sent, 2 required (mutual TLS).")
    ciphers: str = Field("TLSv1", description="OpenSSL cipher list.")

    @property
    def enabled(self) -> bool:
        return self.certfile is not None


class ApiServerConfig(_Section):
    """The HTTP side: where to listen, how many API workers, and the limits per request."""

    host: str = Field("127.0.0.1", min_length=1, description="Address to listen on; `0.0.0.0` "
                      "for every interface.")
    port: int = Field(3000, ge=0, le=65535, description="TCP port to listen on (0 picks a free "
                      "one).")
    workers: int = Field(1, ge=1, description="API worker processes sharing the listening "
                         "socket.")
    timeout: float = Field(60.0, gt=0, description="Seconds a request may take before it is "
                           "answered 504 Gateway Timeout.")
    max_concurrency: int | Literal["auto"] | None = Field(
        "auto", description="API calls one API worker handles at once; more are answered 503 "
        "Service Unavailable at once, with `Retry-After`. `auto`: the size of the sync API "
        "thread pool (64), beyond which calls would only queue, unless the service batches (a "
        "batchable runner method or API with batching on), whose batcher sheds load by "
        "latency budget itself: then no limit. `null`: no limit.")
    max_request_size: ByteSize = Field(ByteSize(20 * 1024 * 1024), gt=0, description="Largest "
                                       "request body in bytes (or `10MiB`, `1GB`); larger ones "
                                       "are answered 413.")
    backlog: int = Field(2048, ge=1, description="Connections the kernel queues before the "
                         "server accepts them.")
    graceful_timeout: float = Field(30.0, ge=0, description="Seconds a stopping server (SIGTERM, "
                                    "SIGINT) gives requests in flight to finish before it ends "
                                    "them.")
    sync_apis: Literal["auto", "threads"] = Field("auto", description="Where sync API "
                                                  "functions run: `auto` on the event loop (a "
                                                  "runner call inside waits without a thread) "
                                                  "until one blocks the loop for long, then in "
                                                  "the thread pool; `threads` always in the "
                                                  "thread pool.")
    cors: CorsConfig = CorsConfig()
    input_limits: InputLimitsConfig = InputLimitsConfig()
    http: HttpConfig = HttpConfig()
    oip: OipConfig = OipConfig()
    auth: AuthConfig = AuthConfig()
    ssl: SslConfig = SslConfig()

    @field_validator("max_concurrency", mode="before")
    @classmethod
    def _admission(cls, value: Any) -> Any:
        # One message instead of one per member of the union.
        if value is None or value == "auto" or (type(value) is int and value >= 1):
            return value
        raise ValueError("must be a whole number >= 1, `auto` (derived from the sync API "
                         "thread pool) or null (no limit)")

    @field_validator("host")
    @classmethod
    def _host(cls, host: str) -> str:
        if host != host.strip() or " " in host:
            raise ValueError(f"{host!r} is not a host name or address (it has spaces)")
        return host


class BatchingConfig(_Section):
    """Adaptive micro-batching limits; ``null`` inherits from the level above."""

    enabled: bool | None = Field(None, description="Merge concurrent calls of batchable methods "
                                 "into batches. `null`: inherit (on).")
    max_batch_size: int | None = Field(None, ge=1, description="Most rows (not requests) in one "
                                       f"batch. `null`: inherit ({DEFAULT_MAX_BATCH_SIZE}).")
    max_latency_ms: float | None = Field(None, gt=0, description="Budget in milliseconds from "
                                         "call to answer; calls that cannot meet it are refused "
                                         f"early (503). `null`: inherit "
                                         f"({DEFAULT_MAX_LATENCY_MS:g}).")

    @field_validator("max_latency_ms")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number of milliseconds")
        return value


class MethodConfig(BatchingConfig):
    """Batching limits of one runner method (``runners.NAME.methods.METHOD``)."""


#: Where a runner's model runs: in each API worker process, or in worker processes of its own.
Placement = Literal["local", "process"]


class RunnerConfig(_Section):
    """Settings of one runner (``runners.NAME``); they win over the runner's own code."""

    batching: BatchingConfig = BatchingConfig()
    placement: Placement | None = Field(None, description="Where this runner's model runs: "
                                        "`local` (inside each API worker) or `process` (worker "
                                        "processes of its own). `null`: inherit.")
    workers: int | None = Field(None, ge=1, description="Worker processes of this runner. "
                                "`null`: the runner's own choice (one per core, or one for "
                                "models that use every core themselves).")
    methods: dict[str, MethodConfig] = Field({}, description="Per-method batching limits, by "
                                             "method name (`predict`, `predict_proba`...).")


class RunnersConfig(_Section):
    """Defaults for every runner, plus one ``RunnerConfig`` section per runner name.

    Precedence, most specific first: ``runners.NAME.methods.METHOD`` > ``runners.NAME.batching``
    > the runner's own code (``to_runner(max_batch_size=...)``) > ``runners.batching`` > built-in.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, RunnerConfig] = Field(init=False)

    batching: BatchingConfig = BatchingConfig()
    placement: Placement | None = Field(None, description="Where runners' models run unless "
                                        "their section says otherwise: `local` loads the model in "
                                        "each API worker and batches there, with no process hop "
                                        "(fewest processes, least memory); `process` runs it in "
                                        "runner worker processes (the model on other cores than "
                                        "the HTTP work, crash isolation). `null`: `local`.")
    workers: int | None = Field(None, ge=1, description="Worker processes per runner, unless the "
                                "runner's code or section says otherwise. `null`: the runner's "
                                "own choice.")

    @model_validator(mode="before")
    @classmethod
    def _runner_names(cls, data: Any) -> Any:
        """Runner names are case-insensitive in services; check and fold them here too."""
        if not isinstance(data, dict):
            return data
        folded: dict[str, Any] = {}
        for name, value in data.items():
            key = name if name in cls.model_fields else str(name).lower()
            if key not in cls.model_fields and not NAME.fullmatch(key):
                raise ValueError(f"{name!r} is neither a runner setting "
                                 f"({', '.join(cls.model_fields)}) nor a runner name (lowercase "
                                 "letters, digits, '-', '_' and '.')")
            if key in folded:
                raise ValueError(f"runner {key!r} has two sections (names ignore case)")
            folded[key] = value
        return folded

    @property
    def by_name(self) -> dict[str, RunnerConfig]:
        """The per-runner sections, by (lowercase) runner name."""
        return dict(self.__pydantic_extra__ or {})

    def batching_for(self, runner: str, method: str, *, max_batch_size: int | None = None,
                     max_latency_ms: float | None = None) -> BatchingOptions:
        """The effective batching limits of ``runner.method``.

        ``max_batch_size`` and ``max_latency_ms`` are what the runner's code asked for (``None``
        when it did not); see the class docstring for the order of precedence.
        """
        code = types.SimpleNamespace(enabled=None, max_batch_size=max_batch_size,
                                     max_latency_ms=max_latency_ms)
        levels: list[Any] = [self.batching, code]  # least specific first; later ones win
        section = self.by_name.get(runner.lower())
        if section is not None:
            levels.append(section.batching)
            if method in section.methods:
                levels.append(section.methods[method])
        options: dict[str, Any] = {"enabled": True, "max_batch_size": DEFAULT_MAX_BATCH_SIZE,
                                   "max_latency_ms": DEFAULT_MAX_LATENCY_MS}
        for level in levels:
            for key in options:
                value = getattr(level, key)
                if value is not None:
                    options[key] = value
        return BatchingOptions(options["enabled"], options["max_batch_size"],
                               float(options["max_latency_ms"]))

    def placement_for(self, runner: str, default: str = DEFAULT_PLACEMENT) -> str:
        """Where ``runner`` runs: its section, else ``runners.placement``, else ``default``."""
        section = self.by_name.get(runner.lower())
        if section is not None and section.placement is not None:
            return section.placement
        return self.placement if self.placement is not None else default

    def workers_for(self, runner: str, default: int | None = None) -> int | None:
        """Worker processes for ``runner``: its section, else ``default`` (the runner's code),
        else ``runners.workers``; ``None`` leaves the choice to the runner."""
        section = self.by_name.get(runner.lower())
        if section is not None and section.workers is not None:
            return section.workers
        return default if default is not None else self.workers


@dataclass(frozen=True)
class BatchingOptions:
    """Resolved batching limits of one runner method (see ``RunnersConfig.batching_for``)."""

    enabled: bool
    max_batch_size: int
    max_latency_ms: float


class MetricsConfig(_Section):
    """Prometheus metrics served at ``/metrics``."""

    enabled: bool = Field(True, description="Record metrics and serve `/metrics`.")
    namespace: str = Field("dosirak", description="Prefix of every metric name "
                           "(`dosirak_request_duration_seconds`).")
    duration_buckets: list[float] = Field(list(DEFAULT_DURATION_BUCKETS), description="Upper "
                                          "bounds in seconds of the request and batch duration "
                                          "histograms; `+Inf` is added.")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, namespace: str) -> str:
        if not _METRIC_NAMESPACE.match(namespace):
            raise ValueError(f"{namespace!r} is not a Prometheus metric name prefix (letters, "
                             "digits, '_' and ':', not starting with a digit)")
        return namespace

    @field_validator("duration_buckets")
    @classmethod
    def _buckets(cls, buckets: list[float]) -> list[float]:
        if buckets and math.isinf(buckets[-1]) and buckets[-1] > 0:
            buckets = buckets[:-1]  # +Inf is always there; writing it is harmless
        if not buckets:
            raise ValueError("needs at least one finite upper bound")
        if any(not math.isfinite(b) or b <= 0 for b in buckets):
            raise ValueError("bounds must be finite numbers of seconds > 0")
        if any(low >= high for low, high in itertools.pairwise(buckets)):
            raise ValueError("bounds must be in strictly increasing order")
        return buckets


class AccessLogConfig(_Section):
    """One line per request on the ``dosirak.access`` logger."""

    enabled: bool = Field(True, description="Log one line per request.")
    format: Literal["text", "json"] = Field("text", description="`text` (key=value pairs) or "
                                            "`json` (one JSON object per line).")


class PredictionLogConfig(_Section):
    """Summaries of each prediction's input and output on the ``dosirak.prediction`` logger."""

    enabled: bool = Field(False, description="Log input and output summaries of each call "
                          "(types, shapes, sizes; never whole payloads).")
    format: Literal["text", "json"] = Field("json", description="`text` or `json` lines.")


class LoggingConfig(_Section):
    """Access and prediction logs."""

    access: AccessLogConfig = AccessLogConfig()
    prediction: PredictionLogConfig = PredictionLogConfig()


class MonitoringConfig(_Section):
    """Where ``dosirak.monitor`` writes its records (JSON lines, see ``dosirak.monitoring``)."""

    log_path: str = Field("monitoring", description="Directory of the monitors' files, "
                          "relative to the working directory unless absolute; one "
                          "subdirectory per monitor.")
    max_bytes: ByteSize = Field(ByteSize(64 << 20), gt=0, description="Size past which a "
                                "process's data file is rotated (`64MiB`).")
    backup_count: int = Field(5, ge=0, description="Rotated files kept per process "
                              "(`data.<pid>.jsonl.1` ... `.N`); the oldest is dropped.")


class TracingConfig(_Section):
    """OpenTelemetry traces of requests, API calls and runner batches (``dosirak[tracing]``)."""

    enabled: bool = Field(False, description="Trace: a span per HTTP request (continuing an "
                          "incoming W3C `traceparent`), per API call and per runner batch "
                          "(linked to the requests it served); the trace id goes in the access "
                          "log. Needs `pip install 'dosirak[tracing]'`.")
    exporter: Literal["otlp", "console"] = Field("otlp", description="`otlp`: OTLP over HTTP "
                                                 "(protobuf) to `endpoint`; `console`: JSON "
                                                 "lines to standard output or `console_file`.")
    endpoint: str = Field("http://127.0.0.1:4318/v1/traces", description="The OTLP/HTTP "
                          "traces URL of the collector.")
    sample_rate: float = Field(1.0, ge=0, le=1, description="Share of traces recorded (0 to 1); "
                               "a request continuing a trace keeps its sampling decision.")
    service_name: str | None = Field(None, description="`service.name` of the spans. `null`: "
                                     "the service's name.")
    console_file: str | None = Field(None, description="With `exporter: console`, append the "
                                     "spans to this file instead of standard output.")


class ModelStoreConfig(_Section):
    """The local model store: what an imported archive may ask of it."""

    import_max_size: ByteSize = Field(ByteSize(64 << 30), ge=0, description="Most bytes an "
                                      "imported archive may unpack (its manifest's sizes, "
                                      "summed; `100GiB`); larger ones are refused before "
                                      "anything is written, as are those that would not fit "
                                      "in the store's free space.")


class ServingConfig(_Section):
    """The whole serving configuration; build it with :func:`load_config`."""

    api_server: ApiServerConfig = ApiServerConfig()
    runners: RunnersConfig = RunnersConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    model_store: ModelStoreConfig = ModelStoreConfig()
    tracing: TracingConfig = TracingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()

    def check_runners(self, runners: Mapping[str, Iterable[str]]) -> None:
        """Refuse sections for runners or methods the service does not have (typos).

        ``runners`` maps each runner name of the service to its method names.
        """
        known = {name.lower(): set(methods) for name, methods in runners.items()}
        problems = []
        for name, section in self.runners.by_name.items():
            if name not in known:
                problems.append(f"runners.{name}: the service has no runner {name!r}"
                                f"{_did_you_mean(name, [*known, *_fields(self.runners)])}; "
                                f"its runners are: {', '.join(sorted(known)) or '(none)'}")
                continue
            for method in section.methods:
                if method not in known[name]:
                    problems.append(
                        f"runners.{name}.methods.{method}: runner {name!r} has no method "
                        f"{method!r}{_did_you_mean(method, known[name])}; its methods are: "
                        f"{', '.join(sorted(known[name]))}")
        if problems:
            raise InvalidArgument("invalid configuration:\n  " + "\n  ".join(problems))


# --- loading -------------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str] | None = None, *,
                environ: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> ServingConfig:
    """Read the serving configuration: defaults < YAML file < ``DOSIRAK_CONFIG_OPTIONS`` <
    ``overrides``.

    ``path`` is the ``--config`` file (else ``$DOSIRAK_CONFIG``, else none); ``environ`` defaults
    to ``os.environ``; ``overrides`` maps dotted keys to values (``{"api_server.port": 8080}``).
    Raises ``InvalidArgument`` listing every problem.
    """
    environ = os.environ if environ is None else environ
    if path is None and environ.get(CONFIG_FILE_ENV):
        path = environ[CONFIG_FILE_ENV]
    raw: dict[str, Any] = read_config_file(path) if path is not None else {}
    origin = f"config file {os.fspath(path)}" if path is not None else "built-in defaults"
    sources: dict[tuple[str, ...], str] = {}
    options = parse_config_options(environ.get(CONFIG_OPTIONS_ENV, ""))
    for label, items in ((CONFIG_OPTIONS_ENV, options), ("overrides", (overrides or {}))):
        for key, value in items.items():
            loc = _split_key(key, label)
            _set(raw, loc, value, label)
            sources[loc] = label
    try:
        return ServingConfig.model_validate(raw)
    except ValidationError as error:
        raise InvalidArgument(_explain(error, sources, origin)) from None


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The YAML mapping in ``path``; an empty file is an empty mapping."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidArgument(f"config file {file} does not exist; check the --config option "
                              f"or ${CONFIG_FILE_ENV}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidArgument(f"config file {file} cannot be read: {error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise InvalidArgument(f"config file {file} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidArgument(f"config file {file} must hold a mapping of sections "
                              f"(api_server:, runners: ...), not a {type(data).__name__}")
    return data


def parse_config_options(text: str) -> dict[str, Any]:
    """``"a.b=1 c.d=[x, y]"`` -> ``{"a.b": 1, "c.d": ["x", "y"]}``; values are read as YAML.

    Pairs are separated by spaces outside quotes and brackets, so ``k=[1, 2]`` and
    ``k='a b'`` are single pairs; quotes stay part of the value, as YAML quotes
    (``allow_origins='*'`` is the string ``*``). A pair quoted as a whole (``'k=v w'``) is unquoted
    first.
    """
    options = {}
    for word in _split_words(text):
        if len(word) > 1 and word[0] in "'\"" and word[-1] == word[0]:
            word = word[1:-1]
        key, equals, value = word.partition("=")
        if not equals or not re.fullmatch(r"[A-Za-z_][\w.-]*", key):
            raise InvalidArgument(f"{CONFIG_OPTIONS_ENV}: {word!r} is not a dotted.key=value "
                                  "pair, e.g. 'api_server.workers=2'")
        try:
            options[key] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as error:
            raise InvalidArgument(f"{CONFIG_OPTIONS_ENV}: the value of {key} ({value!r}) is not "
                                  f"valid YAML: {getattr(error, 'problem', error)}") from None
    return options


def _split_words(text: str) -> list[str]:
    words: list[str] = []
    current: list[str] = []
    quote, depth = "", 0
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(0, depth - 1)
        elif char.isspace() and depth == 0:
            if current:
                words.append("".join(current))
                current = []
            continue
        current.append(char)
    if quote:
        raise InvalidArgument(f"{CONFIG_OPTIONS_ENV} has an unclosed {quote} quote: {text!r}")
    if current:
        words.append("".join(current))
    return words


def _split_key(key: str, label: str) -> tuple[str, ...]:
    parts = key.split(".")
    if "" in parts:
        raise InvalidArgument(f"{label}: {key!r} is not a dotted key such as api_server.port")
    # Runner names may hold dots: everything between "runners." and the first runner setting.
    if len(parts) > 3 and parts[0] == "runners" and parts[1] not in RunnersConfig.model_fields:
        fields = RunnerConfig.model_fields
        end = next((i for i in range(2, len(parts)) if parts[i] in fields), 2)
        parts = [parts[0], ".".join(parts[1:end]), *parts[end:]]
    if len(parts) > 2 and parts[0] == "runners" and parts[1] not in RunnersConfig.model_fields:
        parts[1] = parts[1].lower()  # runner names ignore case, as in services
    return tuple(parts)


def _set(raw: dict[str, Any], loc: tuple[str, ...], value: Any, label: str) -> None:
    node = raw
    for depth, part in enumerate(loc[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise InvalidArgument(f"{label}: cannot set {'.'.join(loc)}: "
                                  f"{'.'.join(loc[:depth + 1])} is {child!r}, not a section")
        node = child
    node[loc[-1]] = value


# --- error messages ------------------------------------------------------------------------------


def _explain(error: ValidationError, sources: dict[tuple[str, ...], str], origin: str) -> str:
    lines = []
    for problem in error.errors(include_url=False):
        loc = tuple(str(part) for part in problem["loc"])
        key = ".".join(loc) or "(top level)"
        source = next((label for set_loc, label in sources.items()
                       if loc[:len(set_loc)] == set_loc or set_loc[:len(loc)] == loc), origin)
        if problem["type"] == "extra_forbidden":
            valid = _valid_keys(loc[:-1])
            level = f"under {'.'.join(loc[:-1])}" if loc[:-1] else "at the top level"
            lines.append(f"{key} (from {source}): unknown key{_did_you_mean(loc[-1], valid)}; "
                         f"valid keys {level}: {', '.join(valid)}{_runner_hint(loc)}")
            continue
        message = problem["msg"].removeprefix("Value error, ")
        value = problem.get("input")
        shown = "" if isinstance(value, dict) or not loc else f" = {_short(value)}"
        description = _description(loc)
        lines.append(f"{key}{shown} (from {source}): {message}"
                     f"{f'. Setting: {description}' if description else ''}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _runner_hint(loc: tuple[str, ...]) -> str:
    # ``runners.batchng.max_batch_size`` reads as a runner named "batchng": say so.
    if len(loc) >= 3 and loc[0] == "runners" and loc[1] not in RunnersConfig.model_fields:
        hint = _did_you_mean(loc[1], RunnersConfig.model_fields)
        if hint:
            return f"; runners.{loc[1]} is read as a runner named {loc[1]!r}{hint}"
    return ""


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fields(model: type[BaseModel] | BaseModel) -> list[str]:
    return sorted(type(model).model_fields if isinstance(model, BaseModel) else model.model_fields)


def _walk(loc: tuple[str, ...]) -> tuple[Any, Any]:
    """The (annotation, FieldInfo) at ``loc`` in ServingConfig, following dicts and runner names.
    """
    annotation: Any = ServingConfig
    info = None
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info = annotation.model_fields.get(part)
            if info is not None:
                annotation = info.annotation
            elif annotation is RunnersConfig:
                annotation, info = RunnerConfig, None
            else:
                return None, None
        elif typing.get_origin(annotation) is dict:
            annotation, info = typing.get_args(annotation)[1], None
        else:
            return None, None
    return _unwrap(annotation), info


def _unwrap(annotation: Any) -> Any:
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        annotation = members[0] if len(members) == 1 else annotation
    return annotation


def _valid_keys(loc: tuple[str, ...]) -> list[str]:
    annotation, _ = _walk(loc)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _fields(annotation)
    return []


def _description(loc: tuple[str, ...]) -> str:
    # Errors inside a list point at an index; the rule is the list's.
    while loc and loc[-1].isdigit():
        loc = loc[:-1]
    _, info = _walk(loc)
    return (info.description or "") if info is not None else ""


# --- reference -----------------------------------------------------------------------------------


def config_reference() -> list[tuple[str, str, str]]:
    """(dotted key, default as YAML, description) of every setting, in declaration order.

    ``NAME`` and ``METHOD`` stand for a runner's and a method's name.
    """
    rows: list[tuple[str, str, str]] = []

    def visit(model: type[BaseModel], prefix: str, instance: BaseModel) -> None:
        for name, info in model.model_fields.items():
            key = f"{prefix}{name}"
            annotation = _unwrap(info.annotation)
            value = getattr(instance, name)
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                visit(annotation, key + ".", value)
                if annotation is RunnersConfig:
                    visit(RunnerConfig, key + ".NAME.", RunnerConfig())
            elif name == "methods":
                visit(MethodConfig, key + ".METHOD.", MethodConfig())
            else:
                if isinstance(value, ByteSize):
                    value = value.human_readable().replace(".0", "")
                default = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
                default = default.removesuffix("\n...").removesuffix("...").strip()
                rows.append((key, default, info.description or ""))

    visit(ServingConfig, "", ServingConfig())
    return rows


def config_reference_markdown() -> str:
    """:func:`config_reference` as the Markdown table of ``docs/configuration.md``."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key, default, description in config_reference():
        escaped = description.replace("|", "\\|")
        lines.append(f"| `{key}` | `{default}` | {escaped} |")
    return "\n".join(lines) + "\n"
