"""``dosirak batch`` over a million iris rows (CSV and Parquet) against ``model.predict`` in one
process.

    python benchmarks/batch_files.py [--rows 1000000] [--workers N] [--chunk-rows 16384]
                                     [--repeat 3]

The model is the seeds' iris classifier (``svm.SVC(gamma="scale")`` on the iris data) and the
service is the seeds' iris service file, called by the real ``dosirak batch`` command in a child
process. The rows are iris rows resampled with a little noise, one decimal like the real data.

Baseline: ``clf.predict(X)`` on the whole array, already in memory, in this process (best of 3).
Batch: the command's own report (rows per second once the runner processes have started; the
start, mostly importing scikit-learn in each worker, is shown apart) and the whole wall time,
medians of ``--repeat`` runs (other work on the machine moves single runs a lot).
Memory: the resident set of the command and all its worker processes, sampled every 20 ms,
peak of the sum. Order: the output's labels must equal the baseline's, row for row.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

SERVICE = """
    import numpy as np
    import dosirak
    from dosirak.io import NumpyNdarray

    iris_clf_runner = dosirak.sklearn.get("iris_clf:latest").to_runner()
    svc = dosirak.Service("iris_classifier", runners=[iris_clf_runner])

    @svc.api(input=NumpyNdarray(), output=NumpyNdarray())
    def classify(input_series: np.ndarray) -> np.ndarray:
        return iris_clf_runner.predict.run(input_series)
"""
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
_REPORT = re.compile(r"in ([\d.]+) s \(([\d.]+) s to start, then ([\d,]+) rows/s")


def rss_of_tree(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (Linux /proc)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    stack.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def run_batch(directory: Path, source: str, workers: int | None,
              chunk_rows: int | None) -> dict[str, float]:
    command = [str(Path(sys.executable).parent / "dosirak"), "batch", "service:svc", "classify",
               "--input", source, "--output", f"out-{Path(source).suffix[1:]}.parquet"]
    if workers is not None:
        command += ["--workers", str(workers)]
    if chunk_rows is not None:
        command += ["--chunk-rows", str(chunk_rows)]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=directory, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_of_tree(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _out, err = process.communicate()
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"dosirak batch failed:\n{err}")
    found = _REPORT.search(err)
    if found is None:
        raise SystemExit(f"unexpected report from dosirak batch:\n{err}")
    return {"wall": wall, "run": float(found.group(1)), "start": float(found.group(2)),
            "rows_per_second": float(found.group(3).replace(",", "")), "peak_rss": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--chunk-rows", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="dosirak-batch-bench-"))
    os.environ["DOSIRAK_HOME"] = str(directory / "home")
    from sklearn import datasets, svm

    import dosirak

    iris = datasets.load_iris()
    dosirak.sklearn.save_model("iris_clf", svm.SVC(gamma="scale").fit(iris.data, iris.target))
    (directory / "service.py").write_text(textwrap.dedent(SERVICE))
    rng = np.random.default_rng(0)
    rows = iris.data[rng.integers(0, len(iris.data), options.rows)]
    rows = np.round(rows + rng.normal(0, 0.05, rows.shape), 1)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame.to_csv(directory / "iris.csv", index=False)
    frame.to_parquet(directory / "iris.parquet")

    clf = dosirak.sklearn.load_model("iris_clf:latest")
    x = pq.read_table(directory / "iris.parquet").to_pandas().to_numpy()
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        expected = clf.predict(x)
        timings.append(time.perf_counter() - started)
    baseline = options.rows / min(timings)

    print(f"{options.rows:,} rows, {len(os.sched_getaffinity(0))} cores, "
          f"CSV {os.path.getsize(directory / 'iris.csv') / 2**20:.1f} MiB, "
          f"Parquet {os.path.getsize(directory / 'iris.parquet') / 2**20:.1f} MiB\n")
    print("| run | rows/s | vs predict | start s | wall s | peak RSS, all processes | order |")
    print("|---|---:|---:|---:|---:|---:|---|")
    print(f"| `clf.predict(X)`, whole array in memory, one process | {baseline:,.0f} | 100% "
          f"| - | {min(timings):.2f} | - | - |")
    for source in ("iris.csv", "iris.parquet"):
        runs = [run_batch(directory, source, options.workers, options.chunk_rows)
                for _ in range(options.repeat)]
        result = {key: float(np.median([run[key] for run in runs])) for key in runs[0]}
        result["peak_rss"] = max(run["peak_rss"] for run in runs)
        output = directory / f"out-{Path(source).suffix[1:]}.parquet"
        labels = pq.read_table(output).column("result").to_numpy()
        order = "kept" if np.array_equal(labels, expected) else "WRONG"
        print(f"| `dosirak batch` {source} -> parquet | {result['rows_per_second']:,.0f} | "
              f"{result['rows_per_second'] / baseline:.0%} | {result['start']:.1f} | "
              f"{result['wall']:.1f} | {result['peak_rss'] / 2**20:,.0f} MiB | {order} |")


if __name__ == "__main__":
    main()
