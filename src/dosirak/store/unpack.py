"""Import of ``.dosirakmodel`` archives: nothing in them is trusted.

The info file comes first so its manifest is known before any file is written; every later
member must be a regular file named in that manifest, with a plain relative path, the size the
manifest states and the same sha256 (hashed while it is copied out). Links, devices, absolute
paths, ``..``, duplicates, extra files and missing files are refused, and so is whatever would
cost far more than the archive's size: large tar headers, YAML aliases, more bytes than the limit
or the free space. Everything is unpacked into a temporary directory of the store and renamed
into place only after all checks pass, so a refused archive leaves the store unchanged.
"""

from __future__ import annotations

import datetime
import errno
import gzip
import io
import os
import posixpath
import re
import shutil
import tarfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml
import zstandard

from dosirak.exceptions import InvalidArgument, MissingDependency, UnsafeArchive
from dosirak.store import signing
from dosirak.store.archive import (
    GZIP_MAGIC,
    SUFFIX,
    ZSTD_MAGIC,
    Progress,
    is_local,
    local_path,
    remote,
)
from dosirak.store.manifest import CHUNK, INFO_FILE
from dosirak.store.tar_stream import CheckedTarInfo, ForwardReader, copy_hashed
from dosirak.store.versioned_store import YAML_LOADER, VersionedStore, creation_time, read_yaml
from dosirak.tag import Tag

_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME_MAX = 255  # bytes in one file name on Linux and macOS file systems
_PATH_MAX = 1024  # bytes in a member's path; the store's own path comes before it (limit 4096)
# Per member, the header blocks, PAX records and GNU long names tarfile may read: dosirak writes
# a few kilobytes at most (a path of up to _PATH_MAX bytes in a PAX record).
HEADER_LIMIT = 64 << 10
DEFAULT_MAX_SIZE = 64 << 30  # model.yaml's manifest sizes, summed; model_store.import_max_size
_INFO_LIMIT = 64 << 20
RESERVED_VERSIONS = frozenset({"latest"})
CLOCK_SKEW = datetime.timedelta(days=1)  # how far ahead another machine's clock may be
_FREE_RESERVE = 256 << 20  # left free on the store's disk after an import, for everything else
# What a damaged or cut archive raises while it is read (gzip's CRC error is an OSError).
# Catch ``(*CORRUPT, OSError)`` around tarfile reads and report an UnsafeArchive.
CORRUPT = (tarfile.TarError, zstandard.ZstdError, EOFError, gzip.BadGzipFile)


def open_source(src: str, stack: ExitStack,
                storage_options: dict[str, Any] | None = None) -> IO[bytes]:
    """Open an archive at a local path or fsspec URL for reading, decompressed.

    zstd and gzip are recognised by their magic bytes; anything else is read as a plain tar.
    The file is closed with ``stack``. A missing or unreadable source is an InvalidArgument.
    """
    if is_local(src):
        path = local_path(src)
        if not path.is_file():
            raise InvalidArgument(f"{src} is not a file; give the path of a {SUFFIX} archive")
        raw: IO[bytes] = stack.enter_context(open(path, "rb"))  # noqa: SIM115 - in the stack
    else:
        fs, remote_path = remote(src, storage_options)
        try:
            raw = stack.enter_context(fs.open(remote_path, "rb"))
        except FileNotFoundError as error:
            raise InvalidArgument(f"{src} does not exist; give the URL of a {SUFFIX} "
                                  "archive") from error
        except PermissionError as error:
            raise InvalidArgument(f"{src} cannot be read: access denied ({error}); check the "
                                  "credentials (storage options or environment)") from error
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw, CHUNK)  # type: ignore[type-var]
    head = buffered.peek(4)[:4]
    if head.startswith(ZSTD_MAGIC):
        # A zstd stream may hold many frames (zstd -T, pzstd, concatenated files, writers that
        # end a frame per flush); all of them are the archive, and bytes that are no frame are
        # refused when they are reached.
        decompressor = zstandard.ZstdDecompressor()
        return stack.enter_context(decompressor.stream_reader(buffered, read_across_frames=True))
    if head.startswith(GZIP_MAGIC):
        return stack.enter_context(gzip.GzipFile(fileobj=buffered))  # type: ignore[arg-type]
    return buffered


def safe_name(name: str) -> str:
    """The member ``name`` normalised, or UnsafeArchive if it could land outside the target.

    Refused: empty names, NUL or backslash, absolute paths, ``..``, names too long for a file
    system, and names that normalise to something else (``a//b``, ``./a``)::

        safe_name("saved_model.pkl")  # -> "saved_model.pkl"
        safe_name("../etc/passwd")    # raises UnsafeArchive
    """
    if not name or "\x00" in name or "\\" in name:
        raise UnsafeArchive(f"archive member {name!r} has an invalid name")
    if name.startswith("/") or posixpath.isabs(name):
        raise UnsafeArchive(f"archive member {name!r} has an absolute path; refused")
    parts = name.split("/")
    if ".." in parts:
        raise UnsafeArchive(f"archive member {name!r} climbs out with '..'; refused")
    if any(len(part.encode("utf-8", "surrogateescape")) > _NAME_MAX for part in parts) \
            or len(name.encode("utf-8", "surrogateescape")) > _PATH_MAX:
        raise UnsafeArchive(f"archive member {_shorten(name)} has a name longer than the "
                            f"{_NAME_MAX} bytes a file system allows for one file name (or the "
                            f"{_PATH_MAX} bytes dosirak allows for a path); refused")
    normal = posixpath.normpath(name)
    if normal in (".", "") or normal != name.rstrip("/"):
        raise UnsafeArchive(f"archive member {name!r} is not a normalised relative path; refused")
    return normal


def _shorten(name: str) -> str:
    """A name fit for a message: a hostile one may be kilobytes long."""
    return repr(name) if len(name) <= 80 else f"{name[:40]!r}...{name[-20:]!r}"


def member_kind(member: tarfile.TarInfo) -> str:
    """What a member that is not a regular file is, for a refusal message ("a FIFO")."""
    if member.issym():
        return f"a symbolic link to {member.linkname!r}"
    if member.islnk():
        return f"a hard link to {member.linkname!r}"
    if member.ischr() or member.isblk():
        return "a device file"
    if member.isfifo():
        return "a FIFO"
    return f"an unsupported entry (type {member.type!r})"


def import_entry(store: VersionedStore, src: str, *, overwrite: bool = False,
                 progress: Progress = None,
                 validate: Callable[[dict[str, Any]], Any] | None = None,
                 storage_options: dict[str, Any] | None = None,
                 max_size: int = DEFAULT_MAX_SIZE,
                 public_key: str | os.PathLike[str] | None = None) -> Tag:
    """Check and unpack an archive into the store; returns the imported tag.

    ``max_size`` bounds the bytes the archive may unpack (its manifest's sizes, summed).
    ``public_key``: an Ed25519 public key file; the archive must then be signed by its private
    key, which is checked before anything in ``model.yaml`` is trusted.
    """
    with ExitStack() as stack:
        stream = open_source(src, stack, storage_options)
        entry = unpack_entry(store, stream, f"archive {src}", overwrite=overwrite,
                             progress=progress, validate=validate, max_size=max_size,
                             public_key=public_key)
        try:
            store.commit(entry.draft, entry.tag, entry.info, overwrite=overwrite)
        except BaseException:
            store.discard(entry.draft)
            raise
    return entry.tag


@dataclass(frozen=True)
class Unpacked:
    """An archive checked and unpacked into ``draft``, not yet committed (``store.commit``)."""

    draft: Path
    tag: Tag
    info: dict[str, Any]
    size: int


def unpack_entry(store: VersionedStore, stream: IO[bytes], what: str, *,
                 overwrite: bool = False, progress: Progress = None,
                 validate: Callable[[dict[str, Any]], Any] | None = None,
                 max_size: int = DEFAULT_MAX_SIZE,
                 public_key: str | os.PathLike[str] | None = None) -> Unpacked:
    """Check and unpack one archive read from ``stream`` (decompressed) into a draft of
    ``store``; every check of this module applies. Nothing is visible until it is committed."""
    info_file = store.info_file
    reader = ForwardReader(stream, header_limit=HEADER_LIMIT, name=what)
    with ExitStack() as stack:
        archive, first = _open_tar(reader, stack, what, info_file)
        draft = store.new_draft()
        try:
            info = _read_info(archive, first, draft / info_file, what, progress, public_key)
            tag = _tag_of(info, what, info_file)
            _check_claims(info, tag, what)
            manifest = _manifest_of(info, what, info_file)
            if validate is not None:
                try:
                    validate(info)
                except Exception as error:
                    raise UnsafeArchive(f"{what}: {info_file} is not valid: {error}") from error
            if not overwrite and tag.version in store.versions(tag.name):
                raise_exists(store, tag)
            _check_room(manifest, max_size, draft, what)
            _unpack_all(archive, reader, manifest, draft, what, progress, max_size, info_file)
            check_end(reader, what)
        except BaseException:
            store.discard(draft)
            raise
    return Unpacked(draft, tag, info, sum(entry["size"] for entry in manifest.values()))


def _open_tar(reader: ForwardReader, stack: ExitStack, what: str,
              info_file: str = INFO_FILE) -> tuple[tarfile.TarFile, tarfile.TarInfo]:
    """The tar reader and its first member, which must be the info file."""
    try:
        # tarfile parses the headers; member data is read from the ForwardReader directly
        # (tar_stream.py says why), which also keeps tarfile from ever seeking backwards.
        archive = stack.enter_context(
            tarfile.open(  # type: ignore[call-overload]  # noqa: SIM115
                fileobj=reader, mode="r:", tarinfo=CheckedTarInfo))
        first = archive.next()
    except (*CORRUPT, OSError) as error:
        raise UnsafeArchive(f"{what} is not a readable {SUFFIX} archive ({error})") from error
    if first is None or first.name != info_file or not first.isreg():
        raise UnsafeArchive(f"{what} does not start with {info_file}; it is not an archive "
                            "dosirak made, or it was altered")
    if first.size > _INFO_LIMIT:
        raise UnsafeArchive(f"{what}: {info_file} is implausibly large ({first.size} bytes, "
                            f"the limit is {_INFO_LIMIT}); refused")
    return archive, first


def _read_info(archive: tarfile.TarFile, first: tarfile.TarInfo, path: Path, what: str,
               progress: Progress, public_key: str | os.PathLike[str] | None) -> dict[str, Any]:
    """Unpack, check and parse the info file; it is rewritten by the store's commit."""
    try:
        _copy_member(archive, first, path, what, progress)
        if public_key is not None:
            signing.verify(path.read_bytes(), first.pax_headers.get(signing.PAX_RECORD),
                           public_key, what, path.name)
        _refuse_aliases(path, what)
        info = read_yaml(path)
    except (InvalidArgument, MissingDependency):  # a refusal, a bad key, no cryptography
        raise
    except CORRUPT as error:
        raise UnsafeArchive(f"{what} is truncated or corrupt ({error}); refused") from error
    except Exception as error:
        raise UnsafeArchive(f"{what}: {path.name} cannot be read ({error})") from error
    path.unlink()
    return info


def _refuse_aliases(path: Path, what: str) -> None:
    """Refuse YAML anchors and aliases before any object is built from them.

    An alias repeats the node it names, and may name a node full of aliases: 1.3 KB of them once
    expanded into 296 MB. dosirak never writes either.
    """
    with open(path, "rb") as stream:
        for event in yaml.parse(stream, Loader=YAML_LOADER):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                line = event.start_mark.line + 1 if event.start_mark is not None else "?"
                raise UnsafeArchive(f"{what}: {path.name} uses a YAML anchor or alias (line "
                                    f"{line}), which dosirak never writes and which "
                                    "can expand a small file enormously; refused")


def _check_claims(info: dict[str, Any], tag: Tag, what: str) -> None:
    """Refuse what would let an archive pass for another version: a reserved version name, a
    creation time in the future (``latest`` is the newest creation time)."""
    if tag.version in RESERVED_VERSIONS:
        raise UnsafeArchive(f"{what}: its version {tag.version!r} is a reserved word (it means "
                            f"the newest version in a tag); refused")
    created = creation_time(info)
    now = datetime.datetime.now(datetime.UTC)
    if created > now + CLOCK_SKEW:
        raise UnsafeArchive(f"{what}: its creation time {created.isoformat()} is in the future "
                            f"(now {now.isoformat(timespec='seconds')}); it would pass for "
                            "the latest version until then, so it is refused; if the clock of "
                            "the machine that saved it was wrong, save it again there")


def _check_room(manifest: dict[str, Any], max_size: int, draft: Path, what: str) -> None:
    """Refuse, before a byte of model data is written, an archive too big to unpack here."""
    total = sum(entry["size"] for entry in manifest.values())
    if total > max_size:
        raise UnsafeArchive(
            f"{what} unpacks to {_human(total)}, over the import limit of {_human(max_size)}; "
            "if you trust it, raise the limit (models.import_model(max_size=...), `dosirak "
            "models import --max-size`, or the setting model_store.import_max_size)")
    free = shutil.disk_usage(draft).free
    if total + _FREE_RESERVE > free:
        raise UnsafeArchive(
            f"{what} unpacks to {_human(total)} but the store's disk has {_human(free)} free "
            f"(and {_human(_FREE_RESERVE)} must stay free); make room or move $DOSIRAK_HOME")


def _human(size: int) -> str:
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):  # noqa: B007 - the last unit is kept
        if value < 1024:
            break
        value /= 1024
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def _unpack_all(archive: tarfile.TarFile, reader: ForwardReader, manifest: dict[str, Any],
                draft: Path, what: str, progress: Progress, max_size: int,
                info_file: str = INFO_FILE) -> None:
    """Unpack every member after the info file; all must be in the manifest, once each.

    The bytes written are counted against ``max_size`` as well: the manifest's sum bounds them
    only as long as every other check holds.
    """
    seen: set[str] = set()
    written = 0
    try:
        while True:
            reader.begin_member()
            member = archive.next()
            if member is None:
                break
            # tarfile keeps every member it read; a hostile archive of many members, each
            # with large headers, would grow that list without bound. Nothing needs it.
            archive.members.clear()  # type: ignore[attr-defined]
            written += member.size if member.isreg() else 0
            if written > max_size:
                raise UnsafeArchive(f"{what} unpacks to more than its limit of "
                                    f"{_human(max_size)}; refused")
            _unpack(archive, member, manifest, seen, draft, what, progress, info_file)
    except CORRUPT as error:
        raise UnsafeArchive(f"{what} is truncated or corrupt ({error}); refused") from error
    if missing := sorted(set(manifest) - seen):
        raise UnsafeArchive(f"{what} lacks files its manifest lists: {', '.join(missing[:5])}")


def check_end(reader: ForwardReader, what: str) -> None:
    """Read past the end of the tar stream, so that what follows it is checked too.

    The decompressor then checks its trailer (gzip's CRC) and refuses bytes after the last
    compressed frame or member that are not one.
    """
    try:
        reader.drain()
    except CORRUPT as error:
        raise UnsafeArchive(
            f"{what} is truncated or corrupt after its last file ({error}): the compressed "
            "stream fails its checksum or is followed by bytes that are not part of it; the "
            "archive was altered or damaged; refused"
        ) from error


def raise_exists(store: VersionedStore, tag: Tag) -> None:
    from dosirak.exceptions import AlreadyExists

    raise AlreadyExists(f"{store.kind} {tag} is in the store already; pass overwrite=True "
                        "(CLI: --force) to replace it")


def _tag_of(info: dict[str, Any], what: str, info_file: str = INFO_FILE) -> Tag:
    try:
        return Tag(str(info["name"]), str(info["version"]))
    except (KeyError, InvalidArgument) as error:
        raise UnsafeArchive(
            f"{what}: {info_file} has no valid name and version ({error})"
        ) from error


def _manifest_of(info: dict[str, Any], what: str,
                 info_file: str = INFO_FILE) -> dict[str, dict[str, Any]]:
    """The manifest, checked in shape before any member is trusted by it."""
    manifest = info.get("manifest")
    if not isinstance(manifest, dict):
        raise UnsafeArchive(f"{what}: {info_file} has no manifest mapping file names to "
                            "{size, sha256}; refused")
    for name, entry in manifest.items():
        try:
            if not isinstance(name, str) or safe_name(name) != name or name == info_file:
                raise UnsafeArchive(f"{name!r} is not a plain relative file name")
        except UnsafeArchive as error:
            raise UnsafeArchive(f"{what}: the manifest lists {name!r}: {error}") from None
        if not (
            isinstance(entry, dict)
            and type(entry.get("size")) is int
            and entry["size"] >= 0
            and isinstance(entry.get("sha256"), str)
            and _SHA256.fullmatch(entry["sha256"])
        ):
            raise UnsafeArchive(f"{what}: the manifest entry of {name!r} must be "
                                f"{{size: bytes, sha256: 64 hex digits}}, not {entry!r}; the "
                                "archive was altered or damaged")
        # A name that is also a directory of another name could never be unpacked.
        parent = posixpath.dirname(name)
        while parent:
            if parent in manifest:
                raise UnsafeArchive(f"{what}: the manifest lists {parent!r} both as a file and "
                                    f"as the directory of {name!r}; refused")
            parent = posixpath.dirname(parent)
    return manifest


def _unpack(archive: tarfile.TarFile, member: tarfile.TarInfo, manifest: dict[str, Any],
            seen: set[str], draft: Path, what: str, progress: Progress,
            info_file: str = INFO_FILE) -> None:
    name = safe_name(member.name)
    if member.isdir():
        return  # directories are made as files need them
    if not member.isreg():
        raise UnsafeArchive(f"{what}: member {name!r} is {member_kind(member)}; only regular files "
                            "are allowed")
    if name == info_file or name not in manifest:
        raise UnsafeArchive(f"{what}: member {name!r} is not in the manifest; refused")
    if name in seen:
        raise UnsafeArchive(f"{what}: member {name!r} appears twice; refused")
    expected = manifest[name]
    if member.size != expected.get("size"):
        raise UnsafeArchive(f"{what}: {name!r} is {member.size} bytes but the manifest says "
                            f"{expected.get('size')}; the archive was altered")
    seen.add(name)
    target = draft / name
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = _copy_member(archive, member, target, what, progress)
    except OSError as error:
        if error.errno != errno.ENAMETOOLONG:
            raise
        raise UnsafeArchive(f"{what}: member {_shorten(name)} has a path too long for the store "
                            f"at {draft.parent.parent}; refused") from None
    if digest != expected.get("sha256"):
        raise UnsafeArchive(f"{what}: {name!r} does not match its sha256 checksum; the archive "
                            "was altered or damaged")


def _copy_member(archive: tarfile.TarFile, member: tarfile.TarInfo, target: Path,
                 what: str, progress: Progress) -> str:
    """Write a member's data to ``target``, which must not exist; returns its sha256."""
    if member.issparse():  # its data is not stored as is; dosirak never writes sparse members
        raise UnsafeArchive(f"{what}: member {member.name!r} is a sparse file; refused")
    reader = archive.fileobj
    assert isinstance(reader, ForwardReader)
    reader.seek(member.offset_data)  # already there: tarfile has read just the header
    try:
        return copy_hashed(reader, member.size, target, progress)
    except EOFError:
        raise UnsafeArchive(f"{what} is truncated inside {member.name!r}; refused") from None
