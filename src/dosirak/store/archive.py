"""``.dosirakmodel`` archives: a tar stream, plain or zstd/gzip-compressed, ``model.yaml`` first.

Plain by default: float32 weights barely compress (zstd level 1 saves 7.6% on them) and a plain
export runs at copy speed; docs/benchmarks.md has the measurements behind that choice.

Writing them is here; reading them, which trusts nothing in them, is in ``unpack.py``.
"""

from __future__ import annotations

import errno
import gzip
import os
import posixpath
import re
import secrets
import socket
import tarfile
from collections.abc import Callable
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import IO, Any

import fsspec
import zstandard

from dosirak.exceptions import InvalidArgument
from dosirak.store import signing
from dosirak.store.manifest import INFO_FILE
from dosirak.store.tar_stream import (
    BackgroundWriter,
    TarWriter,
    header,
)
from dosirak.store.versioned_store import (
    dump_yaml,
    fsync_dir,
    pid_alive,
)
from dosirak.tag import Tag

SUFFIX = ".dosirakmodel"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
COMPRESSIONS = ("zstd", "gzip", "none")
DEFAULT_LEVELS = {"zstd": 1, "gzip": 1}
Progress = Callable[[int], None] | None
_HOST = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"
_PARTIAL = re.compile(r"\.partial-(?P<pid>[0-9]+)-[0-9a-f]{8}(?:@(?P<host>[A-Za-z0-9._-]+))?$")


def is_local(url: str) -> bool:
    """Whether a source or destination is a local path (or a file:// URL)."""
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> Path:
    """The path of a local source or destination."""
    return Path(url.removeprefix("file://")).expanduser()


def remote(url: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    """The fsspec filesystem and path of a URL; storage options add to the environment's."""
    return fsspec.core.url_to_fs(url, **(storage_options or {}))


def destination_for(dest: str, tag: Tag, storage_options: dict[str, Any] | None = None, *,
                    suffix: str = SUFFIX) -> str:
    """A directory (or a URL ending in '/') gets ``name-version.dosirakmodel`` inside it."""
    filename = f"{tag.name}-{tag.version}{suffix}"
    if is_local(dest):
        path = local_path(dest)
        if path.is_dir() or dest.endswith("/"):
            return str(path / filename)
        return str(path if path.suffix else path.with_suffix(suffix))
    if dest.endswith("/"):
        return dest + filename
    fs, remote_path = remote(dest, storage_options)
    if fs.isdir(remote_path):  # an existing prefix, as an existing local directory
        return f"{dest}/{filename}"
    return dest if posixpath.splitext(dest)[1] else dest + suffix


def parse_compression(spec: str) -> tuple[str, int]:
    """``"zstd"``, ``"zstd:LEVEL"``, ``"gzip"``, ``"gzip:LEVEL"`` or ``"none"``: (codec, level)."""
    codec, _, level_text = str(spec).partition(":")
    if codec not in COMPRESSIONS or (codec == "none" and level_text):
        raise InvalidArgument(f"compression {spec!r} is not known: use one of {COMPRESSIONS}, "
                              "optionally with a level, such as 'zstd:3' or 'gzip:6'")
    if not level_text:
        return codec, DEFAULT_LEVELS.get(codec, 0)
    low, high = (-7, 19) if codec == "zstd" else (0, 9)
    try:
        level = int(level_text)
    except ValueError:
        level = high + 1
    if not low <= level <= high:
        raise InvalidArgument(f"compression {spec!r}: the {codec} level must be an integer "
                              f"from {low} to {high}")
    return codec, level


def export_entry(root: Path, tag: Tag, info: dict[str, Any], dest: str, *,
                 progress: Progress = None, compression: str = "none",
                 storage_options: dict[str, Any] | None = None,
                 sign_with: str | os.PathLike[str] | None = None) -> str:
    """Write the version at ``root`` to ``dest``; returns where it was written.

    A local archive is written beside its final name, fsynced, renamed into place and its
    directory fsynced: after a crash or a power cut the final name holds the whole archive or
    nothing new. ``storage_options`` go to fsspec for a URL (for s3: key, secret, client_kwargs...).
    ``sign_with``: an Ed25519 private key file; the archive then carries a signature of its
    ``model.yaml`` (signing.py).
    """
    codec, level = parse_compression(compression)
    target = destination_for(dest, tag, storage_options)
    info_bytes = dump_yaml(info).encode()
    records = {} if sign_with is None else {signing.PAX_RECORD: signing.sign(info_bytes,
                                                                             sign_with)}

    def write(raw: IO[bytes], *, direct: bool) -> None:
        write_tar(raw, root, info_bytes, info["manifest"], codec=codec, level=level,
                  direct=direct, progress=progress, records=records)

    return write_archive(target, write, direct=codec == "none", storage_options=storage_options)


def write_archive(target: str, write: Callable[..., None], *, direct: bool,
                  storage_options: dict[str, Any] | None = None) -> str:
    """Publish what ``write(raw, direct=...)`` writes at ``target`` (a path or an fsspec URL)
    whole or not at all; ``direct``: the writer may write to a local file's descriptor."""
    if is_local(target):
        _export_local(local_path(target), write, direct=direct)
        return target
    fs, path = remote(target, storage_options)
    # Deferred commit: an object store shows the object only once it is complete, so a failed
    # export leaves nothing behind (and keeps any older object at that key).
    raw = fs.open(path, "wb", autocommit=False)
    with ExitStack() as stack:
        stack.push(lambda failed, *_: _finish_remote(fs, raw, succeeded=failed is None))
        write(raw, direct=False)
    return target


def _export_local(final: Path, write: Callable[..., None], *, direct: bool) -> None:
    """Write through a temporary file beside ``final``, then publish it with a rename."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_partials(final.parent)
    # Unique per call, so that concurrent exports to one name never share a temporary file; the
    # pid and host let a later export tell whether its writer is gone.
    partial = final.with_name(
        f"{final.name}.partial-{os.getpid()}-{secrets.token_hex(4)}@{_HOST}")
    try:
        # Unbuffered: with no compression the tar writer writes to the descriptor itself.
        with open(partial, "xb", buffering=0) as raw:
            write(raw, direct=direct)
            # The data must be on disk before the name points at it: otherwise a power cut
            # after the rename can leave an empty or partial file under the final name.
            os.fsync(raw.fileno())
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    try:
        fsync_dir(final.parent)  # makes the rename itself survive a power cut
    except OSError as error:
        # Some filesystems (network ones, FUSE) cannot fsync a directory; the archive is
        # complete under its name, so the export has succeeded as far as they allow.
        if error.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise


def remove_dead_partials(directory: Path) -> None:
    """Remove the temporary files of exports whose process died (a kill mid-export).

    Only files of this host are judged: a pid says nothing about a process of another machine
    writing into a shared folder. Those without a host are from before hosts were recorded.
    """
    try:
        with os.scandir(directory) as scan:
            entries = list(scan)
    except OSError:
        return
    for entry in entries:
        match = _PARTIAL.search(entry.name)
        if (match is None or match["host"] not in (None, _HOST)
                or pid_alive(int(match["pid"])) or not entry.is_file(follow_symlinks=False)):
            continue
        with suppress(FileNotFoundError):  # another export cleaned it first
            os.unlink(entry.path)


def write_tar(raw: IO[bytes], root: Path, info_bytes: bytes, manifest: dict[str, Any], *,
              codec: str = "none", level: int = 0, direct: bool, progress: Progress,
              records: dict[str, str] | None = None, info_name: str = INFO_FILE) -> None:
    """Write the archive into ``raw``; every layer above it is flushed and closed on return.

    ``direct`` (uncompressed, local): file data is copied from file to file in the kernel.
    Otherwise a second thread writes (or uploads) while this one reads and compresses.
    """
    with ExitStack() as layers:
        out: IO[bytes] = raw if direct else layers.enter_context(BackgroundWriter(raw))  # type: ignore[arg-type]
        sink: IO[bytes] = out
        if codec == "zstd":
            compressor = zstandard.ZstdCompressor(level=level, threads=_zstd_threads(level))
            sink = layers.enter_context(compressor.stream_writer(out, closefd=False))
        elif codec == "gzip":
            sink = layers.enter_context(
                gzip.GzipFile(fileobj=out, mode="wb", compresslevel=level, mtime=0))  # type: ignore[arg-type]
        writer = TarWriter(sink, fd=raw.fileno() if direct else None, progress=progress)
        writer.add_bytes(info_name, info_bytes, records)
        for relative, entry in manifest.items():
            writer.add_file(relative, root / relative, entry["size"])
        writer.close()


def tar_size(info_bytes: bytes, manifest: dict[str, Any], *, info_name: str = INFO_FILE,
             records: dict[str, str] | None = None) -> int:
    """The exact size of the plain tar ``write_tar`` writes (to nest it in another tar)."""
    def member(name: str, size: int, extra: dict[str, str] | None = None) -> int:
        return len(header(name, size, extra)) + -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE

    total = member(info_name, len(info_bytes), records) + 2 * tarfile.BLOCKSIZE
    total += sum(member(name, entry["size"]) for name, entry in manifest.items())
    return -(-total // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def _zstd_threads(level: int) -> int:
    """zstd's own worker threads pay off at positive levels; fast levels outrun the handoff."""
    return -1 if level > 0 else 0


def _finish_remote(fs: Any, raw: Any, *, succeeded: bool) -> None:
    """Close a deferred upload, then publish it, or throw it away if the export failed."""
    try:
        raw.close()
        if succeeded:
            getattr(raw, "commit", lambda: None)()
            return
    except BaseException:
        getattr(raw, "discard", lambda: None)()
        raise
    finally:
        # fs.open queued the file on the filesystem's shared transaction; it is finished here.
        with suppress(ValueError):
            fs.transaction.files.remove(raw)
    getattr(raw, "discard", lambda: None)()
