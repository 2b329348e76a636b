"""The sha256 manifest that every stored version carries, and the checks made against it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from dosirak.exceptions import StoreCorrupted

CHUNK = 1 << 20
INFO_FILE = "model.yaml"

Manifest = dict[str, dict[str, Any]]  # relative posix path -> {"size": int, "sha256": str}


def hash_file(path: Path) -> tuple[int, str]:
    """Return the size and sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as stream:
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        while read := stream.readinto(buffer):
            digest.update(view[:read])
            size += read
    return size, digest.hexdigest()


def iter_files(root: Path) -> list[str]:
    """Every regular file under root as a sorted relative posix path, model.yaml excluded.

    Links and special files are refused: a stored version holds plain files only, so that an
    export can never carry a link out of the store.
    """
    found = []
    for directory, dirnames, filenames in os.walk(root):
        for dirname in dirnames:
            if os.path.islink(os.path.join(directory, dirname)):
                raise StoreCorrupted(f"{os.path.join(directory, dirname)} is a symbolic link; "
                                     "a stored model may hold regular files only")
        for filename in filenames:
            full = os.path.join(directory, filename)
            if os.path.islink(full) or not os.path.isfile(full):
                raise StoreCorrupted(f"{full} is not a regular file; a stored model may hold "
                                     "regular files only (copy the target instead of linking)")
            relative = Path(full).relative_to(root).as_posix()
            if relative != INFO_FILE:
                found.append(relative)
    return sorted(found)


def build_manifest(root: Path) -> Manifest:
    """Hash every file under root."""
    manifest: Manifest = {}
    for relative in iter_files(root):
        size, sha256 = hash_file(root / relative)
        manifest[relative] = {"size": size, "sha256": sha256}
    return manifest


def check(root: Path, manifest: Manifest, *, full: bool, what: str) -> None:
    """Raise StoreCorrupted unless the files under root match the manifest.

    ``full=False`` compares the set of files and their sizes (cheap: one stat a file);
    ``full=True`` also re-hashes every byte.
    """
    present = set(iter_files(root))
    expected = set(manifest)
    fix = "delete it and save or import it again"
    if missing := sorted(expected - present):
        raise StoreCorrupted(f"{what} is missing {', '.join(missing[:5])}: {fix}")
    if extra := sorted(present - expected):
        raise StoreCorrupted(
            f"{what} has files not in its manifest ({', '.join(extra[:5])}): {fix}"
        )
    for relative, entry in manifest.items():
        path = root / relative
        if path.stat().st_size != entry["size"]:
            raise StoreCorrupted(
                f"{what}: {relative} is {path.stat().st_size} bytes, its manifest says "
                f"{entry['size']}: the file was truncated or changed; {fix}"
            )
        if full and hash_file(path)[1] != entry["sha256"]:
            raise StoreCorrupted(f"{what}: {relative} does not match its sha256 checksum: {fix}")
