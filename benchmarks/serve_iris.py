"""dosirak serve beside BentoML 1.4, LitServe, FastAPI and the raw-ASGI limit, in ONE run.

Uses the peers harness in ../shared/bench (set it up once with `bash ../shared/bench/setup.sh`).
Installs dosirak into its own venv under $PEERS as a user would (`pip install -e ".[sklearn]"`,
no test extras: every peer runs from its own venv too, and scikit-learn imports pandas and pyarrow
whenever they are installed), saves the harness's iris model into a dosirak home there,
describes dosirak's servers to the harness, runs it (wrk, interleaved rounds) and prints the
summary tables.

    .venv/bin/python benchmarks/serve_iris.py --rounds 1 --duration 10 --conc 64
    .venv/bin/python benchmarks/serve_iris.py --batch      # the synthetic batching workload
    .venv/bin/python benchmarks/serve_iris.py --oip        # OIP beside MLServer, tracing on/off
    .venv/bin/python benchmarks/serve_iris.py --baseline 7436c27 \
        --configs dosirak-1w,dosirak-base-1w,bentoml-2w   # beside an earlier commit, one run

``--baseline REV`` exports that commit's tree (``git archive``) into $PEERS, installs it into a
venv of its own the same way, and adds the configs ``dosirak-base-1w`` and ``dosirak-base-2w``:
an A/B of a change on the same machine in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT.parent / "shared" / "bench"
PEERS = Path(os.environ.get("PEERS") or Path(tempfile.gettempdir()) / "dosirak-peers")
VENV = PEERS / "dosirak-venv"
DOSIRAK = str(VENV / "bin" / "dosirak")

IRIS_PEERS = "limit-uvicorn-1w,bentoml-1w,bentoml-2w,bentoml-legacy-default,fastapi-async-1w"
# The Open Inference Protocol (issue 16): MLServer 1.7.1 speaks only it; dosirak's OIP route
# gets the harness's OIP body with the tensor named after the iris API's parameter.
OIP_CONFIGS = "dosirak-1w,dosirak-oip-1w,mlserver-1w,dosirak-tracing-1w"
OIP_BODY = ('{"inputs":[{"name":"input_series","shape":[1,4],"datatype":"FP64",'
            '"data":[5.1,3.5,1.4,0.2]}]}')
BATCH_PEERS = "batch-bentoml-batched,batch-litserve-batched"


def install(venv: Path = VENV, source: Path = ROOT) -> None:
    """dosirak (from ``source``) and scikit-learn in a venv of their own (again when its
    pyproject.toml changed)."""
    stamp = venv / ".pyproject"
    wanted = (source / "pyproject.toml").read_text()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-e",
                    f"{source}[sklearn,tracing]"],
                   check=True)
    stamp.write_text(wanted)


def export_baseline(revision: str) -> Path:
    """The tree of ``revision`` (a commit of this repository) under $PEERS, exported afresh."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{revision}^{{commit}}"],
                            cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    source = PEERS / "dosirak-base" / commit[:12]
    if not (source / "pyproject.toml").exists():
        source.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT,
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    return source


def save_model(home: Path, venv: Path = VENV) -> None:
    """The very model every peer serves, saved into dosirak's store."""
    env = dict(os.environ, DOSIRAK_HOME=str(home))
    code = (
        "import pickle, sys, dosirak\n"
        "clf = pickle.load(open(sys.argv[1], 'rb'))  # our own harness's file, not a peer's\n"
        "print('saved', dosirak.sklearn.save_model('iris_clf', clf).tag)\n"
    )
    subprocess.run([str(venv / "bin" / "python"), "-c", code, str(PEERS / "model" / "iris.pkl")],
                   env=env, check=True)


def baseline_configs(source: Path, venv: Path, home: Path) -> dict[str, dict]:
    """dosirak of an earlier commit, served from its own tree and venv."""
    env = {"DOSIRAK_HOME": str(home)}
    serve = [str(venv / "bin" / "dosirak"), "serve", "--host", "127.0.0.1", "--port", "{port}"]
    return {
        "dosirak-base-1w": {"cmd": [*serve, "examples/iris/service.py:svc"], "health": "/readyz",
                            "path": "/classify", "cwd": str(source), "env": env},
        "dosirak-base-2w": {"cmd": [*serve, "--workers", "2", "examples/iris/service.py:svc"],
                            "health": "/readyz", "path": "/classify", "cwd": str(source),
                            "env": env},
    }


def configs(home: Path) -> dict[str, dict]:
    env = {"DOSIRAK_HOME": str(home)}
    serve = [DOSIRAK, "serve", "--host", "127.0.0.1", "--port", "{port}"]
    return {
        "dosirak-1w": {"cmd": [*serve, "examples/iris/service.py:svc"], "health": "/readyz",
                       "path": "/classify", "cwd": str(ROOT), "env": env},
        "dosirak-process": {"cmd": [*serve, "examples/iris/service.py:svc"], "health": "/readyz",
                            "path": "/classify", "cwd": str(ROOT),
                            "env": {**env, "DOSIRAK_CONFIG_OPTIONS": "runners.placement=process"}},
        "dosirak-2w": {"cmd": [*serve, "--workers", "2", "examples/iris/service.py:svc"],
                       "health": "/readyz", "path": "/classify", "cwd": str(ROOT), "env": env},
        "dosirak-oip-1w": {"cmd": [*serve, "examples/iris/service.py:svc"], "health": "/readyz",
                           "path": "/v2/models/classify/infer", "body": OIP_BODY,
                           "cwd": str(ROOT), "env": env},
        # Every request traced (sample rate 1), spans written by the console exporter to a file.
        "dosirak-tracing-1w": {"cmd": [*serve, "examples/iris/service.py:svc"],
                               "health": "/readyz", "path": "/classify", "cwd": str(ROOT),
                               "env": {**env, "DOSIRAK_CONFIG_OPTIONS": (
                                   "tracing.enabled=true tracing.exporter=console "
                                   "tracing.sample_rate=1 tracing.console_file="
                                   f"{PEERS / 'spans.jsonl'}")}},
        "batch-dosirak": {"cmd": [*serve, "benchmarks/apps/batch_service.py:svc"],
                          "health": "/readyz", "path": "/predict", "cwd": str(ROOT),
                          "env": {**env, "PYTHONPATH": str(HARNESS / "apps")}},
        # The ceiling: raw ASGI on uvicorn with a batcher that knows the load (no dosirak).
        "batch-limit": {"cmd": [str(VENV / "bin" / "python"), "-m", "uvicorn", "batch_limit:app",
                                "--app-dir", "benchmarks/apps", "--host", "127.0.0.1", "--port",
                                "{port}", "--no-access-log", "--log-level", "warning"],
                        "health": "/readyz", "path": "/predict", "cwd": str(ROOT),
                        "env": {"PYTHONPATH": str(HARNESS / "apps")}},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--conc", default="64")
    parser.add_argument("--batch", action="store_true", help="the synthetic batching workload")
    parser.add_argument("--oip", action="store_true",
                        help=f"the Open Inference Protocol and tracing configs ({OIP_CONFIGS})")
    parser.add_argument("--configs", help="override the list of configs to run")
    parser.add_argument("--baseline", metavar="REV",
                        help="also serve dosirak of this commit (configs dosirak-base-*)")
    options = parser.parse_args()
    if not (PEERS / "model" / "iris.pkl").exists():
        sys.exit(f"no peers set-up in {PEERS}: run `bash ../shared/bench/setup.sh` first")
    home = PEERS / "dosirak_home"
    install()
    save_model(home)
    described = configs(home)
    if options.baseline:
        source = export_baseline(options.baseline)
        base_venv = source.parent / f"venv-{source.name}"
        base_home = source.parent / f"home-{source.name}"
        install(base_venv, source)
        save_model(base_home, base_venv)
        described.update(baseline_configs(source, base_venv, base_home))
    extra = PEERS / "dosirak-peers.json"
    extra.write_text(json.dumps(described, indent=2))
    if options.batch:
        chosen = options.configs or f"batch-dosirak,batch-limit,{BATCH_PEERS}"
    elif options.oip:
        chosen = options.configs or OIP_CONFIGS
    else:
        chosen = options.configs or f"dosirak-1w,dosirak-process,dosirak-2w,{IRIS_PEERS}"
    # The traced config's spans, from this run only (a run of rounds writes a few GB at most).
    (PEERS / "spans.jsonl").unlink(missing_ok=True)
    out = PEERS / "raw" / ("batch.jsonl" if options.batch else "iris.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    subprocess.run([sys.executable, str(HARNESS / "bench.py"), "--extra", str(extra),
                    "--configs", chosen, "--rounds", str(options.rounds), "--conc", options.conc,
                    "--duration", str(options.duration), "--out", str(out)],
                   cwd=ROOT, check=True)
    summary = [sys.executable, str(HARNESS / "summarize.py"), str(out)]
    summary += ["--batch"] if options.batch else ["--ref-bento", "bentoml-2w"]
    subprocess.run(summary, check=True)


if __name__ == "__main__":
    main()
