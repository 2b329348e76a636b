"""Bearer-token authentication for a service's routes (``api_server.auth``).

    >>> tokens = load_tokens(config.api_server.auth, os.environ)   # None when auth is off
    >>> gate = AuthGate(tokens, public=["/livez", "/healthz", "/readyz"])
    >>> app = gate.wrap(app)

Clients send ``Authorization: Bearer TOKEN``. The server holds only the SHA-256 digests of the
tokens: from ``api_server.auth.tokens_file`` (one hex digest a line; ``#`` comments), and from
the ``DOSIRAK_API_TOKENS`` environment variable (comma-separated tokens, hashed when read). A
presented token is hashed and compared with every digest in constant time, so neither the
answer nor its timing says how close a guess was. A refused request gets a 401 with
``WWW-Authenticate: Bearer`` and the same message whatever was wrong (no header, another
scheme, a wrong token). Routes listed in ``public_routes`` (exact paths, or prefixes ending in
``*``) need no token; the health probes are public by default.

With auth off (the default when no token is configured) nothing of this is on the request path.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dosirak.exceptions import InvalidArgument
from dosirak.io.encoding import dumps
from dosirak.server.endpoint import send_answer

TOKENS_ENV = "DOSIRAK_API_TOKENS"
#: The name of the scheme in the OpenAPI document (Swagger UI's Authorize button).
SCHEME = "bearerAuth"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_REFUSED = dumps({"error": "authentication required: send a valid token as 'Authorization: "
                           "Bearer TOKEN'"})
_CHALLENGE = (b"www-authenticate", b'Bearer realm="dosirak"')


def token_digest(token: str) -> str:
    """The SHA-256 hex digest of ``token``: what a tokens file holds for it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def load_tokens(config: Any, environ: Mapping[str, str] | None = None) -> list[bytes] | None:
    """The token digests the server accepts, or None when authentication is off.

    ``config`` is ``api_server.auth``: ``enabled`` null turns auth on when any token is
    configured; true requires one (``InvalidArgument`` otherwise); false turns it off.
    """
    environ = os.environ if environ is None else environ
    if config.enabled is False:
        return None
    digests: list[str] = []
    if config.tokens_file is not None:
        digests += _read_tokens_file(Path(config.tokens_file))
    digests += [token_digest(token.strip()) for token in environ.get(TOKENS_ENV, "").split(",")
                if token.strip()]
    if not digests:
        if config.enabled:
            raise InvalidArgument("api_server.auth.enabled is true but no token is configured; "
                                  "set api_server.auth.tokens_file (SHA-256 hex digests, one a "
                                  f"line) or {TOKENS_ENV} (comma-separated tokens)")
        return None
    return [bytes.fromhex(digest) for digest in dict.fromkeys(digests)]


def _read_tokens_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidArgument(f"api_server.auth.tokens_file {path} cannot be read: {error}") \
            from None
    digests = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip().lower()
        if not line:
            continue
        if not _DIGEST.match(line):
            raise InvalidArgument(f"api_server.auth.tokens_file {path}, line {number}: not a "
                                  "SHA-256 hex digest (64 hex digits); write each token's "
                                  "digest, e.g. printf %s TOKEN | sha256sum")
        digests.append(line)
    return digests


class AuthGate:
    """Lets through requests with a valid bearer token, and those to public routes."""

    def __init__(self, digests: list[bytes], public: Iterable[str]) -> None:
        self.digests = digests
        public = list(public)
        self.exact = frozenset(path for path in public if not path.endswith("*"))
        self.prefixes = tuple(path[:-1] for path in public if path.endswith("*"))

    def is_public(self, path: str) -> bool:
        return path in self.exact or (bool(self.prefixes) and path.startswith(self.prefixes))

    def allows(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """True when the request carries a token whose digest is one of ours."""
        for key, value in headers:
            if key == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() != b"bearer":
                    return False
                digest = hashlib.sha256(token.strip()).digest()
                found = False
                for known in self.digests:  # every digest, whatever matched: constant time
                    found |= hmac.compare_digest(digest, known)
                return found
        return False

    def wrap(self, app: Any) -> Any:
        """``app`` behind this gate (an ASGI app; lifespan and websockets pass through)."""
        gate = self

        async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["method"] == "OPTIONS" or \
                    gate.is_public(scope["path"]) or gate.allows(scope["headers"]):
                await app(scope, receive, send)
                return
            headers = [(b"content-type", b"application/json"), _CHALLENGE]
            await send_answer(scope, send, 401, headers, _REFUSED)

        return guarded

    def document(self, openapi: dict[str, Any]) -> None:
        """Declare the scheme in an OpenAPI document: every operation needs it except those
        of public routes."""
        components = openapi.setdefault("components", {})
        components.setdefault("securitySchemes", {})[SCHEME] = {
            "type": "http", "scheme": "bearer",
            "description": "A token of api_server.auth (tokens_file or DOSIRAK_API_TOKENS)"}
        openapi["security"] = [{SCHEME: []}]
        unauthorized = {"description": "No valid bearer token",
                        "content": {"application/json": {"schema": {
                            "$ref": "#/components/schemas/Error"}}}}
        for path, operations in openapi.get("paths", {}).items():
            for operation in operations.values():
                if self.is_public(path):
                    operation["security"] = []
                else:
                    operation.setdefault("responses", {})["401"] = unauthorized
