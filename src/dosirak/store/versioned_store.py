"""A directory of versioned entries, ``<root>/<name>/<version>/``, safe against crashes and races.

Why it is safe:
- A new version is written under ``<root>/.tmp/``, fsynced, then renamed into place. A rename on
  one filesystem is atomic, so a version directory is either absent or complete; a process killed
  mid-save leaves only a temporary directory, removed by the next writer once its owner is dead.
- Versions are unique (time plus randomness), so concurrent writers never collide and need no lock.
- Deleting renames the version into ``<root>/.trash/`` first, so readers never see half a deletion.
- Replacing a version (import with overwrite) swaps the two directories atomically where the
  kernel offers it (renameat2 RENAME_EXCHANGE).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import errno
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from dosirak.exceptions import (
    AlreadyExists,
    InvalidArgument,
    ModelNotFound,
    NotFound,
    StoreCorrupted,
)
from dosirak.tag import Tag, is_valid_part

try:
    YAML_LOADER: Any = yaml.CSafeLoader
    _BaseDumper: Any = yaml.CSafeDumper
except AttributeError:  # PyYAML built without libyaml
    YAML_LOADER, _BaseDumper = yaml.SafeLoader, yaml.SafeDumper


class _Dumper(_BaseDumper):  # type: ignore[misc]
    """Never writes anchors and aliases: imports refuse them (they can expand without bound)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

_TMP = ".tmp"
_COMMIT_ATTEMPTS = 20
_TRASH = ".trash"


def read_yaml(path: Path) -> dict[str, Any]:
    with open(path, "rb") as stream:
        data = yaml.load(stream, Loader=YAML_LOADER)
    if not isinstance(data, dict):
        raise StoreCorrupted(f"{path} does not hold a mapping")
    return data


_EPOCH = datetime.datetime.min.replace(tzinfo=datetime.UTC)


def creation_time(info: dict[str, Any]) -> datetime.datetime:
    """An info file's creation time as an aware datetime; the epoch of time if it has none.

    Times are compared as instants, not as text: an archive made elsewhere may carry another
    UTC offset, and YAML may have parsed the value into a datetime already.
    """
    value = info.get("creation_time")
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            return _EPOCH
    if not isinstance(value, datetime.datetime):
        return _EPOCH
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def fsync_tree(root: Path) -> None:
    """Flush every file and directory under root (and root itself) to stable storage."""
    for directory, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(directory))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether a process of this id exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)


def exchange(first: Path, second: Path) -> bool:
    """Atomically swap two paths; False when the kernel or filesystem cannot."""
    if _renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = _renameat2(
        at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(first))


class VersionedStore:
    """Versioned directories, each holding files plus an info file with the manifest."""

    def __init__(self, root: Path, info_file: str, kind: str) -> None:
        self.root = Path(root)
        self.info_file = info_file
        self.kind = kind

    # ----- paths and lookups -------------------------------------------------------------

    def _version_dir(self, tag: Tag) -> Path:
        assert tag.version is not None
        return self.root / tag.name / tag.version

    def versions(self, name: str) -> list[str]:
        """Every complete version of a name, unordered."""
        if not is_valid_part(name):
            return []
        try:
            entries = os.listdir(self.root / name)
        except (FileNotFoundError, NotADirectoryError):
            return []
        # Entries that are no valid version (hidden files, copies made by hand) are not ours.
        return [entry for entry in entries if is_valid_part(entry)]

    def names(self) -> list[str]:
        """Every name with a directory in the store, sorted (some may have no version left)."""
        try:
            entries = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(e for e in entries if is_valid_part(e) and (self.root / e).is_dir())

    def read_info(self, tag: Tag) -> dict[str, Any]:
        path = self._version_dir(tag) / self.info_file
        try:
            return read_yaml(path)
        except FileNotFoundError:
            raise self.not_found(tag) from None

    def not_found(self, tag: Tag | str) -> NotFound:
        """The error for a tag the store does not hold (a store of other things than models
        overrides it with its own NotFound class)."""
        text = str(tag)
        return ModelNotFound(f"no {self.kind} {text!r} in {self.root}; "
                             f"see what is there with `dosirak {self.kind}s list`")

    def resolve(self, tag: Tag | str) -> Tag:
        """Turn ``name``, ``name:latest`` or a unique version prefix into a full tag."""
        tag = Tag.parse(tag)
        versions = self.versions(tag.name)
        if not versions:
            raise self.not_found(tag)
        if tag.version is None:
            return Tag(tag.name, self._newest(tag.name, versions))
        if tag.version in versions:
            return tag
        matches = [v for v in versions if v.startswith(tag.version)]
        if len(matches) == 1:
            return Tag(tag.name, matches[0])
        if not matches:
            raise self.not_found(tag)
        raise InvalidArgument(f"version prefix {tag.version!r} of {tag.name!r} is ambiguous, it "
                              f"matches {', '.join(sorted(matches)[:5])}: give more characters")

    def _newest(self, name: str, versions: list[str]) -> str:
        created = {}
        for version in versions:
            try:
                info = self.read_info(Tag(name, version))
            except NotFound:  # deleted while we looked
                continue
            created[version] = creation_time(info)
        if not created:
            raise self.not_found(Tag(name))
        return max(created, key=lambda version: (created[version], version))

    @contextlib.contextmanager
    def pin(self, tag: Tag) -> Iterator[Callable[[], bool]]:
        """Hold a version's directory open while reading it; yields ``replaced()``.

        ``replaced()`` tells whether the path now names another directory (or none): the version
        was replaced or deleted while it was read. The held directory's inode cannot be reused
        while it is open, so a replacement is never mistaken for the original.
        """
        path = self._version_dir(tag)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            raise self.not_found(tag) from None
        try:
            held = os.fstat(fd)

            def replaced() -> bool:
                try:
                    now = os.stat(path)
                except FileNotFoundError:
                    return True
                return (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino)

            yield replaced
        finally:
            os.close(fd)

    def path(self, tag: Tag | str) -> Path:
        return self._version_dir(self.resolve(tag))

    def iter_tags(self, name: str | None = None) -> Iterator[Tag]:
        for each in [name] if name else self.names():
            for version in self.versions(each):
                yield Tag(each, version)

    # ----- writing -----------------------------------------------------------------------

    def _scratch(self, purpose: str) -> Path:
        base = self.root / (_TMP if purpose == "tmp" else _TRASH)
        base.mkdir(parents=True, exist_ok=True)
        path = base / f"{os.getpid()}-{secrets.token_hex(6)}"
        return path

    def clean_stale(self) -> None:
        """Remove leftovers of writers that died: temporary dirs of dead processes, the trash."""
        for purpose in (_TMP, _TRASH):
            base = self.root / purpose
            try:
                entries = os.listdir(base)
            except FileNotFoundError:
                continue
            for entry in entries:
                pid_text = entry.partition("-")[0]
                if purpose == _TMP and pid_text.isdigit() and pid_alive(int(pid_text)):
                    continue
                shutil.rmtree(base / entry, ignore_errors=True)

    def new_draft(self) -> Path:
        """A fresh empty directory on the store's filesystem to write a version into."""
        self.clean_stale()
        draft = self._scratch("tmp")
        draft.mkdir()
        return draft

    def commit(
        self, draft: Path, tag: Tag, info: dict[str, Any], *, overwrite: bool = False
    ) -> Path:
        """Write the info file, flush everything, and rename the draft into place atomically."""
        assert tag.version is not None
        info_path = draft / self.info_file
        with open(info_path, "w", encoding="utf-8") as stream:
            stream.write(dump_yaml(info))
        fsync_tree(draft)
        parent = self.root / tag.name
        target = parent / tag.version
        for attempt in range(_COMMIT_ATTEMPTS):
            # delete() removes a name's directory once it is empty, possibly between our mkdir
            # and our rename: then make it again and retry.
            with contextlib.suppress(FileExistsError):
                parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(draft, target)
            except FileNotFoundError:
                if attempt + 1 == _COMMIT_ATTEMPTS or not draft.exists():
                    raise
                continue
            except OSError as error:
                if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                if not overwrite:
                    raise AlreadyExists(f"{self.kind} {tag} exists already; pass overwrite=True "
                                        "(CLI: --force) to replace it") from None
                self._replace(draft, target)
            break
        fsync_dir(parent)
        return target

    def _replace(self, draft: Path, target: Path) -> None:
        if exchange(draft, target):  # the draft path now holds the old version
            shutil.rmtree(draft, ignore_errors=True)
            return
        old = self._scratch("trash")
        os.rename(target, old)
        os.rename(draft, target)
        shutil.rmtree(old, ignore_errors=True)

    def discard(self, draft: Path) -> None:
        shutil.rmtree(draft, ignore_errors=True)

    def delete(self, tag: Tag | str) -> Tag:
        """Delete one version: renamed out of sight first, then removed."""
        full = self.resolve(tag)
        trash = self._scratch("trash")
        try:
            os.rename(self._version_dir(full), trash)
        except FileNotFoundError:
            raise self.not_found(full) from None
        shutil.rmtree(trash, ignore_errors=True)
        with contextlib.suppress(OSError):  # only succeeds when no version is left
            os.rmdir(self.root / full.name)
        return full
