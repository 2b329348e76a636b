"""Ed25519 signatures of archives: who made an archive, not only whether it arrived whole.

An archive's manifest holds the sha256 of every file, but the archive's author computed it: a
manifest recomputed over other files (a pickle that runs code on load) checks out as well. A
signature over ``model.yaml`` (and so over the manifest, the module and every checksum) made
with a private key that only the exporter holds closes that gap for whoever has its public key.

The signature travels as a PAX record (``DOSIRAK.signature``) of the ``model.yaml`` member:
``ed25519 <key id> <base64 signature>``. Readers that know nothing of it ignore it, so a signed
archive imports anywhere; an unsigned one imports wherever no signature is required.
The ``cryptography`` package does the cryptography (``pip install 'dosirak[signing]'``).
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

from dosirak.exceptions import InvalidArgument, MissingDependency, UnsafeArchive

PAX_RECORD = "DOSIRAK.signature"
PRIVATE_KEY_FILE = "dosirak-signing.key"
PUBLIC_KEY_FILE = "dosirak-signing.pub"
_ALGORITHM = "ed25519"
# Binds a signature to this use: the same key signing something else cannot pass for it.
_CONTEXT = b"dosirak model archive v1\x00"


def _crypto() -> tuple[Any, Any]:
    """The ed25519 and serialization modules of ``cryptography``, or how to install them."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as error:
        raise MissingDependency(f"signing and checking archives needs the 'cryptography' "
                                f"package ({error}); install it with: "
                                "pip install 'dosirak[signing]'") from error
    return ed25519, serialization


def generate_keys(directory: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write a new key pair into ``directory``; returns (private key, public key) paths.

    The private key file is readable by its owner only (0600) and never overwritten: sign
    exports with it and keep it secret. Hand the public key to whoever imports.
    """
    ed25519, serialization = _crypto()
    folder = Path(directory).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    private_path, public_path = folder / PRIVATE_KEY_FILE, folder / PUBLIC_KEY_FILE
    for path in (private_path, public_path):
        if path.exists():
            raise InvalidArgument(f"{path} exists already; keys are never overwritten: pick "
                                  "another folder or move the old keys away first")
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    # Created 0600 from the start: never readable by others, even for a moment.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as stream:
        stream.write(private_pem)
    public_path.write_bytes(public_pem)
    return private_path, public_path


def _read_key(path: str | os.PathLike[str], *, private: bool) -> Any:
    ed25519, serialization = _crypto()
    kind = "private" if private else "public"
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as error:
        raise InvalidArgument(f"cannot read the {kind} key {path}: {error.strerror or error}; "
                              "make a key pair with `dosirak models keygen DIR`") from error
    try:
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except (ValueError, TypeError) as error:
        raise InvalidArgument(f"{path} is not a PEM {kind} key ({error}); use the "
                              f"{PRIVATE_KEY_FILE if private else PUBLIC_KEY_FILE} file "
                              "that `dosirak models keygen` wrote") from error
    expected = ed25519.Ed25519PrivateKey if private else ed25519.Ed25519PublicKey
    if not isinstance(key, expected):
        raise InvalidArgument(f"{path} is not an Ed25519 {kind} key; make one with "
                              "`dosirak models keygen DIR`")
    return key


def _key_id(public_key: Any) -> str:
    _, serialization = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _message(info_bytes: bytes) -> bytes:
    return _CONTEXT + hashlib.sha256(info_bytes).digest()


def sign(info_bytes: bytes, private_key_path: str | os.PathLike[str]) -> str:
    """The PAX record value that signs an archive whose ``model.yaml`` is ``info_bytes``."""
    key = _read_key(private_key_path, private=True)
    signature = base64.b64encode(key.sign(_message(info_bytes))).decode()
    return f"{_ALGORITHM} {_key_id(key.public_key())} {signature}"


def verify(info_bytes: bytes, record: str | None, public_key_path: str | os.PathLike[str],
           what: str, info_name: str = "model.yaml") -> None:
    """Raise UnsafeArchive unless ``record`` signs ``info_bytes`` with the given public key."""
    key = _read_key(public_key_path, private=False)
    if record is None:
        raise UnsafeArchive(f"{what} is not signed, and a signature by the key {_key_id(key)} "
                            f"({public_key_path}) is required; ask its author to export it with "
                            "--sign, or import it without --require-signature if you trust it")
    algorithm, _, rest = record.partition(" ")
    key_id, _, encoded = rest.partition(" ")
    if algorithm != _ALGORITHM:
        raise UnsafeArchive(f"{what} is signed with {algorithm!r}, not {_ALGORITHM}; refused")
    if key_id != _key_id(key):
        raise UnsafeArchive(f"{what} is signed by the key {key_id}, not by {_key_id(key)} "
                            f"({public_key_path}); refused")
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(base64.b64decode(encoded, validate=True), _message(info_bytes))
    except (InvalidSignature, ValueError) as error:
        raise UnsafeArchive(f"{what}: its signature does not match its {info_name}: the archive "
                            "was altered after it was signed; refused") from error
