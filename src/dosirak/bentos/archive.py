"""``.bento`` archives: a bento and the models it uses, in one file; and ``verify``.

A ``.bento`` is a plain tar whose members are archives in the model archive format
(``store/archive.py``), nested whole: first ``bento.tar`` (``bento.yaml`` first, then the bento's
files), then ``models/NAME-VERSION.dosirakmodel`` for each model the bento uses; all plain
(model weights barely compress; import also reads a zstd- or gzip-compressed one). Import reads
it front to back once; each nested archive goes through every check of ``store/unpack.py``
(sizes, names, links, special headers, YAML aliases, the model module allow-list, creation
times), and each model must have the digest the bento records. Everything is unpacked into
drafts first; only when the whole archive has passed are the models committed, then the bento,
so a refused archive leaves the stores unchanged.

    >>> export_bento("iris_classifier:latest", "/tmp/")      # /tmp/iris_classifier-VERSION.bento
    >>> import_bento("/tmp/iris_classifier-VERSION.bento")
    >>> verify("iris_classifier:latest")                     # [] when every byte matches
"""

from __future__ import annotations

import os
import tarfile
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from dosirak.bentos.store import BENTO_FILE, Bento, bento_store, get
from dosirak.exceptions import AlreadyExists, NotFound, UnsafeArchive
from dosirak.store import model_store, signing
from dosirak.store.archive import (
    Progress,
    destination_for,
    tar_size,
    write_archive,
    write_tar,
)
from dosirak.store.manifest import INFO_FILE, hash_file, iter_files
from dosirak.store.tar_stream import CheckedTarInfo, ForwardReader, TarWriter
from dosirak.store.unpack import (
    CORRUPT,
    HEADER_LIMIT,
    Unpacked,
    check_end,
    member_kind,
    open_source,
    safe_name,
    unpack_entry,
)
from dosirak.store.versioned_store import VersionedStore, dump_yaml
from dosirak.tag import Tag

SUFFIX = ".bento"
BENTO_MEMBER = "bento.tar"
MODEL_DIR = "models/"


def export_bento(tag: Tag | str, dest: str | None = None, *, progress: Progress = None,
                 storage_options: dict[str, Any] | None = None,
                 sign: str | os.PathLike[str] | None = None) -> str:
    """Write a bento and every model it uses into one ``.bento`` archive; returns where.

    ``dest``: a file, a folder (``NAME-VERSION.bento`` inside it) or an fsspec URL; by default
    ``./NAME-VERSION.bento``. The archive is published whole or not at all, as a model export.
    ``sign``: an Ed25519 private key file (``dosirak models keygen``); the signature covers
    ``bento.yaml``, which records the sha256 of every source file and the digest of every model,
    so importers holding the public key can require that the whole archive is yours.
    """
    from dosirak import models

    bento = get(tag)
    target = destination_for(dest or ".", bento.tag, storage_options, suffix=SUFFIX)
    entries = [(BENTO_MEMBER, bento.path, dict(bento.info), BENTO_FILE)]
    for entry in bento.models:
        model = models.get(entry["tag"])
        entries.append((f"{MODEL_DIR}{model.tag.name}-{model.tag.version}.dosirakmodel",
                        model.path, model.info.to_dict(), INFO_FILE))

    def write(raw: IO[bytes], *, direct: bool) -> None:
        outer = TarWriter(raw, fd=raw.fileno() if direct else None, progress=progress)
        for name, root, info, info_name in entries:
            info_bytes = dump_yaml(info).encode()
            records = {signing.PAX_RECORD: signing.sign(info_bytes, sign)} \
                if sign is not None and name == BENTO_MEMBER else None
            size = tar_size(info_bytes, info["manifest"], info_name=info_name, records=records)
            outer.add_nested(name, size, lambda root=root, info=info, info_bytes=info_bytes,  # type: ignore[misc]
                             info_name=info_name, records=records: write_tar(
                raw, root, info_bytes, info["manifest"], direct=direct, progress=progress,
                info_name=info_name, records=records))
        outer.close()

    return write_archive(target, write, direct=True, storage_options=storage_options)


class _MemberReader:
    """The data of one member of the outer tar, read through its ForwardReader, no further."""

    def __init__(self, outer: ForwardReader, size: int) -> None:
        self._outer, self._left = outer, size

    def readinto(self, buffer: memoryview | bytearray) -> int:
        view = memoryview(buffer)[:self._left]
        count = self._outer.readinto(view) if len(view) else 0
        self._left -= count
        return count

    def read(self, size: int = -1) -> bytes:
        wanted = self._left if size is None or size < 0 else min(size, self._left)
        buffer = bytearray(wanted)
        count = self.readinto(buffer)
        return bytes(buffer[:count])

    def kernel_source(self, count: int) -> tuple[int, int] | None:
        """Where the next ``count`` bytes lie in the archive file, if they lie in this member
        (ForwardReader.kernel_source); past its end they are read, and found missing."""
        return self._outer.kernel_source(count) if count <= self._left else None

    def skip(self, count: int) -> None:
        self._outer.skip(count)
        self._left -= count


def import_bento(src: str, *, overwrite: bool = False, progress: Progress = None,
                 storage_options: dict[str, Any] | None = None,
                 max_size: int | None = None,
                 require_signature: str | os.PathLike[str] | None = None) -> Bento:
    """Import a ``.bento`` archive: its models into the model store, then the bento.

    A model stored already with the digest the bento records is kept as it is and its bytes in
    the archive are skipped, not read (a seek on a local file); one stored under the same tag
    with another digest is an error naming both, unless ``overwrite`` (CLI: ``--force``), which
    also replaces a bento of the same tag. ``max_size`` bounds the bytes the whole archive may
    unpack (default: the setting ``model_store.import_max_size``). ``require_signature``: an
    Ed25519 public key file; the archive's ``bento.yaml`` must then be signed by its private key
    (``export_bento(sign=...)``), checked before anything in it is trusted; the models are bound
    to it by the digests it records.
    """
    from dosirak.models import _import_max_size, valid_info

    what = f"archive {src}"
    budget = _import_max_size(max_size)
    bentos, models = bento_store(), model_store()
    drafts: list[tuple[VersionedStore, Unpacked]] = []
    reused: list[Tag] = []
    with ExitStack() as stack:
        try:
            stream = open_source(src, stack, storage_options)
            reader = ForwardReader(stream, header_limit=HEADER_LIMIT, name=what)
            try:
                outer = stack.enter_context(
                    tarfile.open(fileobj=reader, mode="r:", tarinfo=CheckedTarInfo))  # type: ignore[call-overload]
            except (*CORRUPT, OSError) as error:
                raise UnsafeArchive(f"{what} is not a readable {SUFFIX} archive ({error}); "
                                    "refused") from error
            expected: dict[str, str] = {}
            member = outer.next()  # the first, which tarfile.open has read already
            while member is not None:
                outer.members.clear()
                name = _member_name(member, what, first=not drafts)
                store = bentos if name == BENTO_MEMBER else models
                part = f"{what}: {name}"
                if store is models and (held := _held_model(name, expected, models)):
                    # The store holds this very model (the digest the bento records): keep it
                    # and skip the copy; tarfile seeks past the member's data by itself.
                    del expected[held]
                    reused.append(Tag.parse(held))
                    reader.begin_member()
                    member = _next_member(outer, what)
                    continue
                reader.seek(member.offset_data)
                entry = unpack_entry(
                    store, _MemberReader(reader, member.size), part, progress=progress,  # type: ignore[arg-type]
                    overwrite=overwrite if store is bentos else True, max_size=budget,
                    validate=valid_bento if store is bentos else valid_info,
                    public_key=require_signature if store is bentos else None)
                drafts.append((store, entry))
                budget -= entry.size
                if store is bentos:
                    expected = {m["tag"]: m["digest"] for m in entry.info.get("models") or []}
                else:
                    _check_model(entry, expected, part)
                reader.begin_member()
                member = _next_member(outer, what)
            if not drafts:
                raise UnsafeArchive(f"{what} is empty; it is not a {SUFFIX} archive")
            if missing := sorted(expected):
                raise UnsafeArchive(f"{what} lacks the models its bento uses: "
                                    f"{', '.join(missing)}; export the bento again")
            check_end(reader, what)
            _commit_models([entry for store, entry in drafts if store is models], models,
                           overwrite=overwrite)
            if gone := [str(tag) for tag in reused if tag.version not in models.versions(tag.name)]:
                raise NotFound(f"the models {', '.join(gone)} were deleted from the model store "
                               f"while {what} was imported; import it again")
            bento_entry = drafts[0][1]
            path = bentos.commit(bento_entry.draft, bento_entry.tag, bento_entry.info,
                                 overwrite=overwrite)
        except BaseException:
            for store, entry in drafts:
                if entry.draft.exists():
                    store.discard(entry.draft)
            raise
    return Bento(bento_entry.tag, path, bento_entry.info)


def _next_member(outer: tarfile.TarFile, what: str) -> tarfile.TarInfo | None:
    try:
        return outer.next()
    except CORRUPT as error:
        raise UnsafeArchive(f"{what} is truncated or corrupt ({error}); refused") from error


def _held_model(name: str, expected: dict[str, str], store: VersionedStore) -> str | None:
    """The tag of the model member ``name`` when the store holds it with the digest the bento
    records (so its bytes need not be read), else None."""
    from dosirak.bentos.build import manifest_digest

    for tag, digest in expected.items():
        parsed = Tag.parse(tag)
        if name != f"{MODEL_DIR}{parsed.name}-{parsed.version}.dosirakmodel":
            continue
        if parsed.version not in store.versions(parsed.name):
            return None
        try:
            stored = store.read_info(parsed).get("manifest") or {}
        except (OSError, NotFound):  # deleted meanwhile: unpack the archive's copy
            return None
        return tag if manifest_digest(stored) == digest else None
    return None


def _member_name(member: tarfile.TarInfo, what: str, *, first: bool) -> str:
    name = safe_name(member.name)
    if not member.isreg():
        raise UnsafeArchive(f"{what}: member {name!r} is {member_kind(member)}; only regular files "
                            "are allowed")
    if first != (name == BENTO_MEMBER) or (
            not first and not (name.startswith(MODEL_DIR) and name.count("/") == 1)):
        raise UnsafeArchive(f"{what}: member {name!r} is out of place: a {SUFFIX} archive holds "
                            f"{BENTO_MEMBER} first, then {MODEL_DIR}NAME-VERSION.dosirakmodel "
                            "members; it was not made by `dosirak export` or it was altered")
    return name


def valid_bento(info: dict[str, Any]) -> None:
    """Check a ``bento.yaml`` read from outside (an archive, a push): ``models`` must list
    ``{tag, digest}`` with valid tags; raises ValueError otherwise."""
    models = info.get("models") or []
    if not isinstance(models, list) or not all(
            isinstance(m, dict) and isinstance(m.get("tag"), str)
            and isinstance(m.get("digest"), str) for m in models):
        raise ValueError("`models` must be a list of {tag, digest}")
    for model in models:
        Tag.parse(model["tag"])


def _check_model(entry: Unpacked, expected: dict[str, str], what: str) -> None:
    """A nested model must be one the bento uses, with the digest it records, and only once."""
    from dosirak.bentos.build import manifest_digest

    tag = str(entry.tag)
    digest = manifest_digest(entry.info["manifest"])
    if tag not in expected:
        raise UnsafeArchive(f"{what}: the model {tag} is not one the bento uses (or appears "
                            "twice); the archive was altered")
    if expected.pop(tag) != digest:
        raise UnsafeArchive(f"{what}: the model {tag} has digest {digest[:12]}, not the one "
                            "the bento records; the archive was altered")


def _commit_models(entries: list[Unpacked], store: VersionedStore, *, overwrite: bool) -> None:
    """Commit the models the store lacks; reuse the ones it holds with the same digest."""
    from dosirak.bentos.build import manifest_digest

    conflicts = []
    keep = []
    for entry in entries:
        if entry.tag.version not in store.versions(entry.tag.name):
            keep.append(entry)
            continue
        stored = manifest_digest(store.read_info(entry.tag).get("manifest") or {})
        ours = manifest_digest(entry.info["manifest"])
        if stored == ours:
            store.discard(entry.draft)  # the same model: reused, not rewritten
        elif overwrite:
            keep.append(entry)
        else:
            conflicts.append(f"{entry.tag} (stored digest {stored[:12]}, archive's "
                             f"{ours[:12]})")
    if conflicts:
        raise AlreadyExists(f"the model store holds {', '.join(conflicts)} with other "
                            "contents than the archive; pass overwrite=True (CLI: --force) to "
                            "replace them (bentos built on the stored ones will stop serving)")
    for entry in keep:
        store.commit(entry.draft, entry.tag, entry.info, overwrite=overwrite)


def verify(tag: Tag | str) -> list[str]:
    """Re-hash a bento's files and every model it uses; one line per problem, [] if none."""
    from dosirak.bentos.build import manifest_digest

    bento = get(tag)
    problems = _check_files(bento.path, bento.info.get("manifest") or {}, f"bento {bento.tag}",
                            BENTO_FILE)
    store = model_store()
    for entry in bento.models:
        model = Tag.parse(entry["tag"])
        try:
            info = store.read_info(store.resolve(model))
        except NotFound:
            problems.append(f"model {model} (used by bento {bento.tag}) is not in the model "
                            f"store; import the bento's export again")
            continue
        digest = manifest_digest(info.get("manifest") or {})
        if digest != entry["digest"]:
            problems.append(f"model {model}: digest {digest[:12]}, but bento {bento.tag} was "
                            f"built with {entry['digest'][:12]}")
        problems += _check_files(store.path(model), info.get("manifest") or {},
                                 f"model {model}", INFO_FILE)
    return problems


def _check_files(root: Path, manifest: dict[str, Any], what: str, info_file: str) -> list[str]:
    fix = "delete it and import or build it again"
    try:
        present = set(iter_files(root)) - {info_file, BENTO_FILE}
    except Exception as error:  # a link or a special file
        return [f"{what}: {error}"]
    problems = [f"{what}: {name} is missing; {fix}" for name in sorted(set(manifest) - present)]
    problems += [f"{what}: {name} is not in its manifest; {fix}"
                 for name in sorted(present - set(manifest))]
    for name in sorted(set(manifest) & present):
        size, sha256 = hash_file(root / name)
        if (size, sha256) != (manifest[name]["size"], manifest[name]["sha256"]):
            problems.append(f"{what}: {name} does not match its manifest (size or sha256); "
                            f"it was changed after it was stored; {fix}")
    return problems


