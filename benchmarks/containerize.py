"""Container benchmark: the iris image built by ``dosirak containerize`` beside the one
``bentoml containerize`` builds, in one run: build time, image size, cold start.

    .venv/bin/python benchmarks/containerize.py                 # podman, 3 cold starts each
    .venv/bin/python benchmarks/containerize.py --starts 1      # quick look

Needs ``scripts/setup-containers`` (podman and the local ``python:3.11-slim`` both tools build
on) and the peers harness (``bash ../shared/bench/setup.sh``: BentoML 1.4 in ``$PEERS/bentoml``,
the iris model in ``$PEERS/model/iris.pkl``; ``$PEERS`` defaults to ``dosirak-peers`` in the
temporary directory).

Both tools get the same pickled scikit-learn model, saved into each one's store, and the same
iris service (dosirak: ``examples/iris``; BentoML: the harness's ``apps/bentoml_iris.py``), each
built into a bento by its own CLI and containerized with the same engine and base image. BentoML
needs three things to build here (see the harness README): ``BENTOML_NO_LOCAL_URL=1``,
``UV_NATIVE_TLS=1`` in its bentofile's envs, and ``models:`` listing the model.

- build: wall time of the containerize command, from a layer cache holding only the base image.
  dosirak fetches its wheels on the host (pip's cache makes that warm after a first run);
  BentoML's build installs them with uv inside the image, from the index.
- size: the image's size as the engine reports it.
- cold start: ``run -d`` to the first ``/readyz`` 200, bridge network, ``-p 127.0.0.1:P:3000``,
  polled every 20 ms; median of ``--starts`` starts, the two images alternating.

Images, containers and intermediate images made here are removed at the end; the base stays.
``--keep`` keeps the two images (their names are printed); ``--reuse DOSIRAK_IMAGE
BENTOML_IMAGE`` starts images built earlier instead of building (no build row), which is how to
compare cold starts before and after a change to dosirak's serving code: build the new image
with ``dosirak containerize`` and reuse it beside a kept BentoML image.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from build import BENTOML_BENTOFILE as BUILD_BENTOML_BENTOFILE
from build import BENTOML_SERVICE, PEERS, ROOT
from build import DOSIRAK_BENTOFILE as BUILD_DOSIRAK_BENTOFILE

# The same peers harness and the same two iris projects as benchmarks/build.py; BentoML's image
# build also needs uv to trust the host's CA certificates.
DOSIRAK_BENTOFILE = BUILD_DOSIRAK_BENTOFILE.format(models='"iris_clf:latest"')
BENTOML_BENTOFILE = BUILD_BENTOML_BENTOFILE + """\
envs:
  - name: UV_NATIVE_TLS
    value: "1"
"""


def run(command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, check=False,
                            **options)  # type: ignore[call-overload]
    if result.returncode != 0:
        sys.exit(f"{' '.join(map(str, command[:3]))} failed ({result.returncode}):\n"
                 f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result


def timed(command: list[str], **options: object) -> float:
    start = time.perf_counter()
    run(command, **options)
    return time.perf_counter() - start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ready(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False


def cold_start(engine: str, image: str, timeout: float = 120) -> float:
    port = free_port()
    name = f"bench-{uuid.uuid4().hex[:10]}"
    start = time.perf_counter()
    run([engine, "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:3000", image])
    try:
        while not ready(port):
            if time.perf_counter() - start > timeout:
                logs = subprocess.run([engine, "logs", name], capture_output=True, text=True)
                sys.exit(f"{image} not ready in {timeout} s:\n{logs.stdout}{logs.stderr}")
            time.sleep(0.02)
        return time.perf_counter() - start
    finally:
        subprocess.run([engine, "rm", "-f", name], capture_output=True, check=False)


def image_ids(engine: str, image: str | None = None) -> set[str]:
    """Every image's id, or ``image``'s and those of its layers' images (without the
    ``sha256:`` that ``images`` writes and podman's ``history`` does not)."""
    if image is None:
        listed = run([engine, "images", "-a", "-q", "--no-trunc"]).stdout.split()
    else:
        listed = [subprocess.run([engine, *command, image], capture_output=True, text=True,
                                 check=False).stdout.split()
                  for command in (["image", "inspect", "--format", "{{.Id}}"],
                                  ["history", "-q", "--no-trunc"])]
        listed = [*listed[0], *listed[1]]
    return {line.removeprefix("sha256:") for line in listed if line != "<missing>"}


def measure_starts(engine: str, images: dict[str, str], starts: int) -> dict[str, list[float]]:
    """Cold starts of both images, alternating which goes first."""
    times: dict[str, list[float]] = {"dosirak": [], "bentoml": []}
    for round_ in range(starts):
        order = ["dosirak", "bentoml"] if round_ % 2 == 0 else ["bentoml", "dosirak"]
        for tool in order:
            times[tool].append(cold_start(engine, images[tool]))
    return times


def image_sizes(engine: str, images: dict[str, str]) -> dict[str, int]:
    return {tool: int(run([engine, "image", "inspect", "--format", "{{.Size}}", image])
                      .stdout.split()[0]) for tool, image in images.items()}


def report(title: str, rows: list[tuple[str, dict[str, float], str]],
           starts: dict[str, list[float]]) -> None:
    print(f"\n{title}\n")
    print("| | dosirak containerize | bentoml containerize | dosirak / BentoML |")
    print("|---|---|---|---|")
    median = {tool: statistics.median(times) for tool, times in starts.items()}
    for label, values, form in [*rows, ("cold start to /readyz 200 (s)", median, "{:.2f}")]:
        print(f"| {label} | {form.format(values['dosirak'])} | {form.format(values['bentoml'])} "
              f"| {values['dosirak'] / values['bentoml']:.2f}x |")
    print(f"\ncold starts (s): dosirak {[round(t, 2) for t in starts['dosirak']]}, "
          f"bentoml {[round(t, 2) for t in starts['bentoml']]}")


def reuse(args: argparse.Namespace) -> None:
    engine = shutil.which(args.engine) or sys.exit(f"{args.engine} not found: run "
                                                  "scripts/setup-containers")
    images = dict(zip(("dosirak", "bentoml"), args.reuse, strict=True))
    size = image_sizes(engine, images)
    starts = measure_starts(engine, images, args.starts)
    report(f"{platform.node()}: {os.cpu_count()} CPUs, {args.engine}, images {args.reuse[0]} "
           f"and {args.reuse[1]}, {args.starts} cold starts each (median)",
           [("image size (MB)", {k: v / 1e6 for k, v in size.items()}, "{:.0f}")], starts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="podman", choices=["podman", "docker"])
    parser.add_argument("--starts", type=int, default=3, help="cold starts per image")
    parser.add_argument("--bentoml", type=Path, default=PEERS / "bentoml" / "bin" / "bentoml")
    parser.add_argument("--tmpdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the two images built")
    parser.add_argument("--reuse", nargs=2, metavar=("DOSIRAK_IMAGE", "BENTOML_IMAGE"),
                        help="start these images instead of building (they are kept)")
    args = parser.parse_args()
    if args.reuse:
        reuse(args)
        return
    for needed in (args.bentoml, PEERS / "model" / "iris.pkl", BENTOML_SERVICE):
        if not needed.exists():
            sys.exit(f"{needed} is missing: run `bash ../shared/bench/setup.sh` first")
    engine = shutil.which(args.engine) or sys.exit(f"{args.engine} not found: run "
                                                  "scripts/setup-containers")
    work = Path(tempfile.mkdtemp(prefix="dosirak-bench-containerize-", dir=args.tmpdir))
    before = image_ids(engine)
    suffix = uuid.uuid4().hex[:8]
    images = {"dosirak": f"bench-dosirak-iris:{suffix}", "bentoml": f"bench-bentoml-iris:{suffix}"}
    env = {**os.environ, "DOSIRAK_HOME": str(work / "dosirak-home"),
           "BENTOML_HOME": str(work / "bentoml-home"), "BENTOML_DO_NOT_TRACK": "true",
           "BENTOML_NO_LOCAL_URL": "1"}
    try:
        dosirak_dir, bentoml_dir = work / "dosirak-iris", work / "bentoml-iris"
        dosirak_dir.mkdir()
        shutil.copy(ROOT / "examples" / "iris" / "service.py", dosirak_dir / "service.py")
        (dosirak_dir / "bentofile.yaml").write_text(DOSIRAK_BENTOFILE)
        bentoml_dir.mkdir()
        shutil.copy(BENTOML_SERVICE, bentoml_dir / "service.py")
        (bentoml_dir / "bentofile.yaml").write_text(BENTOML_BENTOFILE)
        save = ("import {0}, pickle, sys; {0}.sklearn.save_model('iris_clf', "
                "pickle.load(open(sys.argv[1], 'rb')))")
        pickle_path = str(PEERS / "model" / "iris.pkl")
        run([sys.executable, "-c", save.format("dosirak"), pickle_path], env=env)
        run([str(args.bentoml.with_name("python")), "-c", save.format("bentoml"), pickle_path],
            env=env)
        dosirak_cli = str(Path(sys.executable).with_name("dosirak"))
        dosirak_tag = run([dosirak_cli, "build", str(dosirak_dir), "-o", "tag"],
                          env=env).stdout.strip()
        run([str(args.bentoml), "build", str(bentoml_dir)], env=env, cwd=bentoml_dir)

        print(f"building both images with {args.engine} (minutes)...", flush=True)
        build = {
            "dosirak": timed([dosirak_cli, "containerize", dosirak_tag, "--backend",
                              args.engine, "-t", images["dosirak"]], env=env),
            "bentoml": timed([str(args.bentoml), "containerize", "iris_classifier:latest",
                              "--backend", args.engine, "-t", images["bentoml"]], env=env),
        }
        size = image_sizes(engine, images)
        starts = measure_starts(engine, images, args.starts)
    finally:
        kept: set[str] = set()
        if args.keep:
            for image in images.values():
                kept.update(image_ids(engine, image))
            print(f"kept images: {images['dosirak']} {images['bentoml']}")
        else:
            for image in images.values():
                subprocess.run([engine, "rmi", "-f", image], capture_output=True, check=False)
        for image_id in image_ids(engine) - before - kept:
            subprocess.run([engine, "rmi", "-f", image_id], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)

    version = run([str(args.bentoml), "--version"]).stdout.strip().split()[-1]
    report(f"{platform.node()}: {os.cpu_count()} CPUs, {args.engine}, BentoML {version}, "
           f"{args.starts} cold starts each (median)",
           [("build (s)", build, "{:.1f}"),
            ("image size (MB)", {k: v / 1e6 for k, v in size.items()}, "{:.0f}")], starts)


if __name__ == "__main__":
    main()
