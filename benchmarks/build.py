"""Bento benchmark: ``dosirak build`` beside ``bentoml build``, and export/import of a bento
holding a 1 GiB model beside plain ``tar``, in one run.

    .venv/bin/python benchmarks/build.py
    .venv/bin/python benchmarks/build.py --size-mb 64 --repeats 1    # quick look

Build: the same iris service (the same pickled scikit-learn model, saved into each store) built
by each tool's own CLI in a fresh process, rounds alternating which goes first. BentoML 1.4 runs
from the peers harness venv (``--bentoml``, set up by ``../shared/bench/setup.sh``) with
BENTOML_HOME in the temporary directory and BENTOML_DO_NOT_TRACK=true; its service and
bentofile are the harness's ``apps/bentoml_iris.py`` with ``models: [iris_clf:latest]``.

Move: a bento of the iris service whose bentofile also lists ``big_blob``, a picklable model of
``--size-mb`` MiB of random bytes. ``export_bento`` / ``import_bento`` (in-process) and the
``dosirak export`` / ``dosirak import`` CLI against GNU ``tar -cf`` / ``tar -xf`` of the same
files (the bento's directory and its models' version directories). Each import goes into an
empty home. dosirak's export and import are durable (fsynced before the rename that publishes
them) and the import hashes every file; ``tar`` is neither, so ``tar -xf + fsync`` is shown too.

Figures are medians over ``--repeats`` (contenders interleaved within each repeat, after an
untimed ``sync``; see ``store.py``); ratios compare timings of the same run. Everything lives in
a temporary directory (``--tmpdir``), removed at the end, the 1 GiB files included.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from dosirak.store.versioned_store import fsync_tree
from store import Contender, fresh, remove, run_step, sh

ROOT = Path(__file__).resolve().parent.parent
# The peers harness (../shared/bench/setup.sh): $PEERS, by default dosirak-peers in the temp dir.
PEERS = Path(os.environ.get("PEERS") or Path(tempfile.gettempdir()) / "dosirak-peers")
IRIS_PICKLE = PEERS / "model" / "iris.pkl"
BENTOML_SERVICE = ROOT.parent / "shared" / "bench" / "apps" / "bentoml_iris.py"
MIB = 1 << 20

DOSIRAK_BENTOFILE = """\
service: "service.py:svc"
name: iris_classifier
include: ["*.py"]
python:
  packages: [scikit-learn, numpy]
models: [{models}]
"""
BENTOML_BENTOFILE = """\
service: "service:IrisClassifier"
include: ["*.py"]
python:
  packages: [scikit-learn, numpy]
models: ["iris_clf:latest"]
"""


def dosirak_cli() -> str:
    return str(Path(sys.executable).with_name("dosirak"))


def bench_build(work: Path, bentoml: Path, repeats: int) -> list[tuple[str, list[float]]]:
    dosirak_dir = work / "dosirak-iris"
    dosirak_dir.mkdir()
    shutil.copy(ROOT / "examples" / "iris" / "service.py", dosirak_dir / "service.py")
    (dosirak_dir / "bentofile.yaml").write_text(DOSIRAK_BENTOFILE.format(models="iris_clf:latest"))
    bentoml_dir = work / "bentoml-iris"
    bentoml_dir.mkdir()
    shutil.copy(BENTOML_SERVICE, bentoml_dir / "service.py")
    (bentoml_dir / "bentofile.yaml").write_text(BENTOML_BENTOFILE)
    os.environ.update(BENTOML_HOME=str(work / "bentoml-home"), BENTOML_DO_NOT_TRACK="true")
    subprocess.run([bentoml.with_name("python"),
                    "-c", "import bentoml, pickle, sys; "
                    "bentoml.sklearn.save_model('iris_clf', pickle.load(open(sys.argv[1], 'rb')))",
                    IRIS_PICKLE], check=True, stdout=subprocess.DEVNULL)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    contenders = [
        Contender("dosirak build", lambda: subprocess.run(
            [dosirak_cli(), "build", str(dosirak_dir), "-o", "tag"], check=True, **quiet)),
        Contender("bentoml build", lambda: subprocess.run(
            [str(bentoml), "build", str(bentoml_dir)], check=True, cwd=bentoml_dir, **quiet)),
    ]
    run_step(contenders, repeats)
    return [(c.label, c.times) for c in contenders]


def bench_move(work: Path, size_mb: int, repeats: int) -> list[tuple[str, list[float]]]:
    import dosirak
    import dosirak.picklable_model
    from dosirak import bentos

    blob = os.urandom(size_mb * MIB)
    dosirak.picklable_model.save_model("big_blob", blob)
    del blob
    big_dir = work / "dosirak-big"
    big_dir.mkdir()
    shutil.copy(ROOT / "examples" / "iris" / "service.py", big_dir / "service.py")
    (big_dir / "bentofile.yaml").write_text(
        DOSIRAK_BENTOFILE.format(models="iris_clf:latest, big_blob:latest")
        .replace("name: iris_classifier", "name: iris_big"))
    bento = bentos.build(str(big_dir))
    home = Path(os.environ["DOSIRAK_HOME"])
    bento_dir = bentos.get(bento.tag).path
    model_dirs = [dosirak.models.get(t).path for t in ("iris_clf:latest", "big_blob:latest")]
    members = [str(p.relative_to(home)) for p in [bento_dir, *model_dirs]]
    size = sum(f.stat().st_size for p in [bento_dir, *model_dirs] for f in p.rglob("*")
               if f.is_file())
    print(f"bento {bento.tag}: {size / MIB:.0f} MiB in {len(members)} directories", flush=True)

    out = fresh(work / "out")
    api_archive, cli_archive, plain_tar = out / "api.bento", out / "cli.bento", out / "plain.tar"
    tag = str(bento.tag)
    export = [
        Contender("tar -cf", sh("tar", "-cf", plain_tar, "-C", home, *members),
                  reads=lambda: [bento_dir, *model_dirs]),
        Contender("dosirak export_bento", lambda: bentos.export_bento(tag, str(api_archive)),
                  reads=lambda: [bento_dir, *model_dirs]),
        Contender("dosirak export (CLI)", lambda: subprocess.run(
            [dosirak_cli(), "export", tag, str(cli_archive)], check=True,
            stdout=subprocess.DEVNULL),
                  reads=lambda: [bento_dir, *model_dirs]),
    ]
    run_step(export, repeats)

    target, homes = work / "unpacked", work / "import-homes"

    def api_import() -> None:
        os.environ["DOSIRAK_HOME"] = str(homes / "api")
        try:
            bentos.import_bento(str(api_archive))
        finally:
            os.environ["DOSIRAK_HOME"] = str(home)

    def cli_import() -> None:
        subprocess.run([dosirak_cli(), "import", str(cli_archive)], check=True,
                       env={**os.environ, "DOSIRAK_HOME": str(homes / "cli")},
                       stdout=subprocess.DEVNULL)

    def tar_x_fsync() -> None:
        subprocess.run(["tar", "-xf", str(plain_tar), "-C", str(target)], check=True)
        fsync_tree(target)

    imports = [
        Contender("tar -xf", sh("tar", "-xf", plain_tar, "-C", target), remove(target),
                  reads=lambda: [plain_tar], prepare=lambda: fresh(target)),
        Contender("tar -xf + fsync", tar_x_fsync, remove(target), reads=lambda: [plain_tar],
                  prepare=lambda: fresh(target)),
        Contender("dosirak import_bento", api_import, remove(homes / "api"),
                  reads=lambda: [api_archive], prepare=remove(homes / "api")),
        Contender("dosirak import (CLI)", cli_import, remove(homes / "cli"),
                  reads=lambda: [cli_archive], prepare=remove(homes / "cli")),
    ]
    run_step(imports, repeats)
    for contender in imports:
        contender.reset()
    return [(c.label, c.times) for c in export + imports]


def report(title: str, results: list[tuple[str, list[float]]], reference: str) -> None:
    medians = {label: statistics.median(times) for label, times in results}
    print(f"\n{title}\n\n| contender | median s (min-max) | ratio |\n|---|---:|---:|")
    for label, times in results:
        ratio = medians[label] / medians[reference]
        ratio = "1.00 (ref)" if label == reference else f"{ratio:.2f}x"
        print(f"| {label} | {medians[label]:.2f} ({min(times):.2f}-{max(times):.2f}) | {ratio} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--bentoml", type=Path, default=PEERS / "bentoml" / "bin" / "bentoml")
    parser.add_argument("--tmpdir", default="/tmp")
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, repeats {args.repeats}")
    work = Path(tempfile.mkdtemp(prefix="dosirak-bench-build-", dir=args.tmpdir))
    try:
        os.environ["DOSIRAK_HOME"] = str(work / "dosirak-home")
        import dosirak.sklearn

        with open(IRIS_PICKLE, "rb") as stream:
            dosirak.sklearn.save_model("iris_clf", pickle.load(stream),
                                       signatures={"predict": {"batchable": True}})
        build = bench_build(work, args.bentoml, args.repeats)
        move = bench_move(work, args.size_mb, args.repeats)
        report("build (iris service)", build, "dosirak build")
        report(f"export ({args.size_mb} MiB bento)", move[:3], "tar -cf")
        report(f"import ({args.size_mb} MiB bento)", move[3:], "tar -xf")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
