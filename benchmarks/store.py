"""Model store benchmark: save, load, export and import of a large model, side by side with the
framework's own save/load and with a plain uncompressed ``tar``.

    .venv/bin/python benchmarks/store.py --size-mb 1024
    .venv/bin/python benchmarks/store.py --size-mb 64 --repeats 1 --kinds random   # quick look

The model is a scikit-learn compatible estimator holding ``--size-mb`` MiB of float32 weights in
eight layers. Weight kinds:

- ``random``: normally distributed float32, which compresses like trained weights (barely);
- ``bf16``: the same values rounded to bfloat16 and stored as float32 (low 16 bits zero), like a
  checkpoint trained in bf16 and saved in full precision: the compressible case.

Each step runs ``--repeats`` times; the figures are medians. Within a repeat the contenders run
one after the other (interleaved), after an untimed ``sync`` so no one pays for another's dirty
pages, so the ratios compare timings taken side by side in the same run. Ratios are what to quote
(``docs/benchmarks.md``): other processes on the machine move absolute timings between runs.

Everything happens in a temporary directory (``--tmpdir`` to choose where), with DOSIRAK_HOME
pointed inside it, and is removed at the end.
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import joblib
import numpy as np
from sklearn.base import BaseEstimator

import dosirak
import dosirak.models
import dosirak.picklable_model
import dosirak.sklearn
from dosirak.store.manifest import hash_file
from dosirak.store.versioned_store import fsync_tree

MIB = 1 << 20
LAYERS = 8
KINDS = ("random", "bf16")
DEFAULT_COMPRESSIONS = ("none", "zstd:-1", "zstd", "zstd:3", "gzip:1")


class WeightBag(BaseEstimator):
    """A stand-in for a large trained model: a few big float32 weight matrices."""

    def __init__(self, layers: list[np.ndarray] | None = None) -> None:
        self.layers = layers

    def predict(self, features: np.ndarray) -> np.ndarray:
        assert self.layers is not None
        width = self.layers[0].shape[1]
        return np.asarray(features)[:, :width] @ self.layers[0][:width].T


def make_weights(size_mb: int, kind: str, seed: int = 0) -> list[np.ndarray]:
    """``size_mb`` MiB of float32 weights in LAYERS matrices of 1024 columns."""
    rng = np.random.default_rng(seed)
    rows = max(1, size_mb * MIB // (4 * 1024 * LAYERS))
    layers = []
    for _ in range(LAYERS):
        layer = rng.standard_normal((rows, 1024), dtype=np.float32)
        if kind == "bf16":
            layer.view(np.uint32)[...] &= np.uint32(0xFFFF0000)
        layers.append(layer)
    return layers


# ----- timing ------------------------------------------------------------------------------


@dataclass
class Contender:
    """One implementation of a step; ``run`` is timed, ``reset`` (untimed) cleans up after it.

    ``reads`` names the files (or folders) that ``run`` reads: they are read once, untimed, just
    before it, so every contender starts from the page cache. (This machine reclaims cold pages
    on its own, which otherwise made whoever read the older file pay for a disk read.)
    """

    label: str
    run: Callable[[], Any]
    reset: Callable[[], Any] = lambda: None
    size: Callable[[], int | None] = lambda: None
    reads: Callable[[], list[Path]] = list
    prepare: Callable[[], Any] = lambda: None
    times: list[float] = field(default_factory=list)


def warm(paths: list[Path]) -> None:
    buffer = bytearray(MIB)
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            with open(file, "rb", buffering=0) as stream:
                while stream.readinto(buffer):
                    pass


SETTLE = 2.0  # seconds; see run_step


def run_step(contenders: list[Contender], repeats: int) -> None:
    for repeat in range(repeats):
        # Each repeat starts one contender later: on this machine (a VM) whoever writes first
        # into memory that was just freed pays the host for it, so no one may always go first.
        start = repeat % len(contenders)
        for contender in contenders[start:] + contenders[:start]:
            contender.prepare()
            warm(contender.reads())
            # Dirty pages of the previous contender are not this one's bill, nor is the discard
            # of the files it deleted (the disk here is mounted with online discard, and a
            # contender that fsyncs right after a 1 GiB delete waited seconds for it).
            os.sync()
            time.sleep(SETTLE)
            start = time.perf_counter()
            contender.run()
            contender.times.append(time.perf_counter() - start)
            if repeat < repeats - 1:
                contender.reset()


def sh(*args: str | Path) -> Callable[[], None]:
    return lambda: subprocess.run([str(a) for a in args], check=True)


def remove(*paths: Path) -> Callable[[], None]:
    def clean() -> None:
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    return clean


@dataclass
class Row:
    step: str
    label: str
    seconds: float
    spread: tuple[float, float]
    ratio: float
    reference: str
    archive_bytes: int | None


def rows_of(step: str, contenders: list[Contender], reference: Contender) -> list[Row]:
    base = statistics.median(reference.times)
    rows = []
    for contender in contenders:
        median = statistics.median(contender.times)
        spread = (min(contender.times), max(contender.times))
        rows.append(Row(step, contender.label, median, spread, median / base, reference.label,
                        contender.size()))
    return rows


# ----- the steps ---------------------------------------------------------------------------


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def bench_save_load(work: Path, model: WeightBag, adapter: str, repeats: int) -> list[Row]:
    """dosirak's save and load through one adapter against the library it uses underneath."""
    if adapter == "sklearn":
        dosirak_module: Any = dosirak.sklearn
        own_name, own_file = "joblib", work / "own.joblib"

        def own_dump() -> None:
            joblib.dump(model, own_file)

        def own_load() -> Any:
            return joblib.load(own_file)
    else:
        dosirak_module = dosirak.picklable_model
        own_name, own_file = "cloudpickle", work / "own.pkl"

        def own_dump() -> None:
            with open(own_file, "wb") as stream:
                cloudpickle.dump(model, stream, protocol=5)

        def own_load() -> Any:
            with open(own_file, "rb") as stream:
                return cloudpickle.load(stream)

    saved: list[Any] = []

    def own_dump_fsync() -> None:
        own_dump()
        with open(own_file, "rb+") as stream:
            os.fsync(stream.fileno())

    def drop_saved() -> None:
        dosirak.models.delete(saved.pop().tag)

    def save_dosirak() -> None:
        saved.append(dosirak_module.save_model(f"big_{adapter}", model))

    save = [
        own := Contender(f"{own_name}.dump", own_dump, remove(own_file)),
        Contender(f"{own_name}.dump + fsync", own_dump_fsync, remove(own_file)),
        Contender(f"dosirak.{adapter}.save_model", save_dosirak, drop_saved),
    ]
    run_step(save, repeats)
    tag = saved[-1].tag
    load = [
        own_load_contender := Contender(f"{own_name}.load", own_load, reads=lambda: [own_file]),
        Contender(f"dosirak.{adapter}.load_model", lambda: dosirak_module.load_model(tag),
                  reads=lambda: [saved[-1].path]),
    ]
    run_step(load, repeats)
    loaded = dosirak_module.load_model(tag)
    assert all(np.array_equal(a, b) for a, b in zip(loaded.layers, model.layers, strict=True))
    dosirak.models.delete(tag)
    own_file.unlink()
    return rows_of("save", save, own) + rows_of("load", load, own_load_contender)


def bench_archives(work: Path, tag: str, compressions: list[str], repeats: int) -> list[Row]:
    """Export and import with each compression against tar (GNU tar and Python's tarfile)."""
    version_dir = dosirak.models.get(tag).path
    archives = fresh(work / "archives")
    plain_tar = archives / "plain.tar"
    py_tar = archives / "tarfile.tar"

    def tarfile_create() -> None:
        with tarfile.open(py_tar, "w") as archive:
            archive.add(version_dir, arcname=".")

    def exporter(compression: str) -> Callable[[], None]:
        target = archives / f"{compression.replace(':', '-')}.dosirakmodel"
        return lambda: dosirak.models.export_model(tag, str(target), compression=compression)

    def archive_of(compression: str) -> Path:
        return archives / f"{compression.replace(':', '-')}.dosirakmodel"

    export = [
        tar_c := Contender("tar -cf", sh("tar", "-cf", plain_tar, "-C", version_dir, "."),
                           size=lambda: plain_tar.stat().st_size, reads=lambda: [version_dir]),
        Contender("python tarfile (w)", tarfile_create, size=lambda: py_tar.stat().st_size,
                  reads=lambda: [version_dir]),
    ]
    default = inspect.signature(dosirak.models.export_model).parameters["compression"].default
    for compression in compressions:
        note = " (default)" if compression == default else ""
        export.append(Contender(
            f"dosirak export_model, {compression}{note}", exporter(compression),
            size=lambda c=compression: archive_of(c).stat().st_size, reads=lambda: [version_dir],
        ))
    run_step(export, repeats)
    export_rows = rows_of("export", export, tar_c)

    target = work / "unpacked"
    import_home = work / "import-home"
    home = os.environ["DOSIRAK_HOME"]

    def importer(compression: str) -> Callable[[], None]:
        def run() -> None:
            os.environ["DOSIRAK_HOME"] = str(import_home / compression)
            try:
                dosirak.models.import_model(str(archive_of(compression)))
            finally:
                os.environ["DOSIRAK_HOME"] = home

        return run

    def tar_x_fsync() -> None:
        subprocess.run(["tar", "-xf", str(plain_tar), "-C", str(target)], check=True)
        fsync_tree(target)

    def tarfile_extract() -> None:
        with tarfile.open(plain_tar, "r") as archive:
            archive.extractall(target, filter="data")

    def sha256_only() -> None:
        for path in sorted(version_dir.iterdir()):
            hash_file(path)

    imports = [
        tar_x := Contender("tar -xf", sh("tar", "-xf", plain_tar, "-C", target), remove(target),
                           reads=lambda: [plain_tar], prepare=lambda: fresh(target)),
        Contender("tar -xf + fsync", tar_x_fsync, remove(target), reads=lambda: [plain_tar],
                  prepare=lambda: fresh(target)),
        Contender("python tarfile extractall", tarfile_extract, remove(target),
                  reads=lambda: [plain_tar], prepare=lambda: fresh(target)),
        # Not an import: the sha256 alone that a checked import must compute, as a floor.
        Contender("sha256 of the files only (hashlib)", sha256_only, reads=lambda: [version_dir]),
    ]
    for compression in compressions:
        note = " (default)" if compression == default else ""
        imports.append(Contender(f"dosirak import_model, {compression}{note}",
                                 importer(compression), remove(import_home / compression),
                                 reads=lambda c=compression: [archive_of(c)],
                                 prepare=remove(import_home / compression)))
    run_step(imports, repeats)
    for contender in imports:
        contender.reset()
    shutil.rmtree(archives)
    return export_rows + rows_of("import", imports, tar_x)


# ----- report ------------------------------------------------------------------------------


def table(rows: list[Row], model_bytes: int) -> str:
    lines = [
        "| step | implementation | median s (min-max) | MiB/s | ratio | archive MiB (% of model) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        archive = ""
        if row.archive_bytes is not None:
            share = 100 * row.archive_bytes / model_bytes
            archive = f"{row.archive_bytes / MIB:.0f} ({share:.1f}%)"
        ratio = "1.00 (ref)" if row.ratio == 1.0 and row.label == row.reference else (
            f"{row.ratio:.2f}x {row.reference}")
        low, high = row.spread
        lines.append(f"| {row.step} | {row.label} | {row.seconds:.2f} ({low:.2f}-{high:.2f}) | "
                     f"{model_bytes / MIB / row.seconds:.0f} | {ratio} | {archive} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    global SETTLE  # a flag of this script
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="model size in MiB")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per step (median)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"weight kinds, of {KINDS}")
    parser.add_argument("--adapters", default="sklearn,picklable_model",
                        help="adapters whose save/load to time")
    parser.add_argument("--compressions", default=",".join(DEFAULT_COMPRESSIONS),
                        help="export compressions to time (none, zstd, zstd:LEVEL, gzip:LEVEL)")
    parser.add_argument("--steps", default="save,archive",
                        help="save (save and load) and/or archive (export and import)")
    parser.add_argument("--settle", type=float, default=SETTLE,
                        help="seconds of quiet after the sync before each timed run")
    parser.add_argument("--tmpdir", default=None, help="where the temporary files go")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown kinds {sorted(unknown)}; choose from {KINDS}")
    compressions = [c for c in args.compressions.split(",") if c]
    steps = set(args.steps.split(","))
    SETTLE = args.settle

    print(f"# dosirak store benchmark: {' '.join(['benchmarks/store.py', *sys.argv[1:]])}")
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python "
          f"{platform.python_version()}, dosirak {dosirak.__version__}, "
          f"numpy {np.__version__}, joblib {joblib.__version__}")
    print(f"repeats: {args.repeats} (median), {SETTLE:g} s of quiet before each; "
          "MiB/s counts model bytes\n")
    work = Path(tempfile.mkdtemp(prefix="dosirak-bench-", dir=args.tmpdir))
    old_home = os.environ.get("DOSIRAK_HOME")
    os.environ["DOSIRAK_HOME"] = str(work / "home")
    try:
        for kind in kinds:
            model = WeightBag(make_weights(args.size_mb, kind))
            model_bytes = sum(layer.nbytes for layer in model.layers)
            rows: list[Row] = []
            if "save" in steps:
                for adapter in [a for a in args.adapters.split(",") if a]:
                    rows += bench_save_load(work, model, adapter, args.repeats)
            if "archive" in steps:
                tag = str(dosirak.sklearn.save_model("big_archive", model).tag)
                rows += bench_archives(work, tag, compressions, args.repeats)
                dosirak.models.delete(tag)
            print(f"## {kind} weights, {model_bytes / MIB:.0f} MiB\n")
            print(table(rows, model_bytes) + "\n", flush=True)
            del model
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if old_home is None:
            os.environ.pop("DOSIRAK_HOME", None)
        else:
            os.environ["DOSIRAK_HOME"] = old_home
    return 0


if __name__ == "__main__":
    sys.exit(main())
