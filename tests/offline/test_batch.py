"""Batch inference over real files: order kept in every format, bad rows stop or go to the errors
file, worker processes do the work, and the CLI shows progress on a terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import dosirak
from conftest import COLUMNS, DOSIRAK, dosirak_cli, iris_rows
from dosirak.exceptions import InvalidArgument
from dosirak.offline.batch import BadRow, run_batch
from dosirak.offline.target import load_target


def read_results(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path)
    if path.suffix == ".parquet":
        return pq.read_table(path).column("result").to_numpy()
    if path.suffix == ".csv":
        return pd.read_csv(path)["result"].to_numpy()
    return pd.read_json(path, lines=True)["result"].to_numpy()


def write_input(path: Path, rows: np.ndarray) -> None:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, row_group_size=700)  # several row groups, not chunk-aligned
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        np.save(path, rows)


@pytest.mark.parametrize(("source", "destination"), [
    ("csv", "parquet"), ("parquet", "csv"), ("npy", "npy"), ("jsonl", "jsonl"),
])
def test_every_format_keeps_row_order(service_file, iris_clf, tmp_path, source, destination):
    rows = iris_rows(3000, seed=1)
    write_input(tmp_path / f"in.{source}", rows)
    svc = load_target(f"{service_file}:svc")
    report = run_batch(svc, "classify", tmp_path / f"in.{source}", tmp_path / f"out.{destination}",
                       chunk_rows=256, workers=0)
    assert report.rows_read == report.rows_written == 3000 and report.bad_rows == 0
    np.testing.assert_array_equal(read_results(tmp_path / f"out.{destination}"),
                                  iris_clf.predict(rows))
    assert not (tmp_path / f"out.{destination}.partial").exists()


def test_worker_processes_cli_csv_to_parquet(service_file, iris_clf, tmp_path):
    rows = iris_rows(20_000, seed=2)
    write_input(tmp_path / "in.csv", rows)
    done = dosirak_cli("batch", "iris_service:svc", "classify", "--input", "in.csv",
                       "--output", "out.parquet", "--workers", "2", "--chunk-rows", "1000",
                       cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert b"20,000 rows written to out.parquet" in done.stderr
    assert b"2 worker(s)" in done.stderr
    np.testing.assert_array_equal(read_results(tmp_path / "out.parquet"), iris_clf.predict(rows))


def test_generic_config_json_rows_are_one_call_each_batched_by_the_runner(generic_config,
                                                                          iris_clf, tmp_path):
    rows = iris_rows(500, seed=3)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps([row.tolist()]) + "\n"
                                               for row in rows))
    svc = load_target(str(generic_config))
    report = run_batch(svc, "one", tmp_path / "in.jsonl", tmp_path / "out.parquet", workers=1)
    assert report.rows_written == 500
    np.testing.assert_array_equal(read_results(tmp_path / "out.parquet"), iris_clf.predict(rows))


def test_stop_names_the_first_bad_row_and_leaves_no_output(service_file, tmp_path):
    rows = iris_rows(2000, seed=4).astype(object)
    rows[1234, 2] = "oops"
    rows[1500, 0] = "later"
    write_input(tmp_path / "in.csv", rows)
    done = dosirak_cli("batch", f"{service_file}:svc", "classify", "--input", "in.csv",
                       "--output", "out.parquet", "--workers", "0", "--chunk-rows", "300",
                       cwd=tmp_path)
    assert done.returncode == 1
    assert b"row 1234 of the input failed" in done.stderr
    assert b"oops" in done.stderr and b"--on-error skip" in done.stderr
    assert b"Traceback" not in done.stderr
    assert not (tmp_path / "out.parquet").exists()
    assert not (tmp_path / "out.parquet.partial").exists()


def test_skip_writes_bad_rows_to_the_errors_file_and_keeps_order(service_file, iris_clf,
                                                                 tmp_path):
    rows = iris_rows(2000, seed=5)
    text = pd.DataFrame(rows, columns=COLUMNS).to_csv(index=False).splitlines()
    text[1 + 10] = text[1 + 10].replace(",", ",x", 1)        # row 10: a text value
    text[1 + 1999] = text[1 + 1999] + ",9.9"                   # the last line: a field too many
    (tmp_path / "in.csv").write_text("\n".join(text) + "\n")
    svc = load_target(f"{service_file}:svc")
    report = run_batch(svc, "classify", tmp_path / "in.csv", tmp_path / "out.csv",
                       on_error="skip", chunk_rows=256, workers=0)
    errors = [json.loads(line) for line in report.errors_path.read_text().splitlines()]
    assert report.bad_rows == 2 and report.rows_written == 1998
    assert errors[0]["row"] == 10 and "could not convert string to float" in errors[0]["error"]
    assert errors[0]["input"]["sepal_width"] == f"x{rows[10, 1]}"
    assert errors[1]["row"] is None and errors[1]["line"] == 2001
    assert "expected 4 fields, saw 5" in errors[1]["error"]
    expected = iris_clf.predict(np.delete(rows, [10, 1999], axis=0))
    np.testing.assert_array_equal(read_results(tmp_path / "out.csv"), expected)


def test_model_errors_are_found_row_by_row_in_worker_processes(tmp_path):
    def checked(rows: np.ndarray) -> np.ndarray:
        if (rows < 0).any():
            raise ValueError("negative measurement")
        return rows.sum(axis=1)

    dosirak.picklable_model.save_model(
        "checked", checked, signatures={"__call__": {"batchable": True, "batch_dim": 0}})
    config = tmp_path / "checked.yaml"
    config.write_text("service: checked\nendpoints:\n  - {name: total, model: checked, "
                      "output: NumpyNdarray, envelope: false}\n")
    rows = iris_rows(1000, seed=6)
    rows[[7, 512, 999]] *= -1
    np.save(tmp_path / "in.npy", rows)
    svc = load_target(str(config))
    report = run_batch(svc, "total", tmp_path / "in.npy", tmp_path / "out.npy",
                       on_error="skip", chunk_rows=128, workers=2)
    errors = [json.loads(line) for line in report.errors_path.read_text().splitlines()]
    assert [error["row"] for error in errors] == [7, 512, 999]
    assert all("negative measurement" in error["error"] for error in errors)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"),
                               np.delete(rows, [7, 512, 999], axis=0).sum(axis=1))
    with pytest.raises(BadRow) as stopped:
        run_batch(svc, "total", tmp_path / "in.npy", tmp_path / "out.npy", chunk_rows=128,
                  workers=0)
    assert stopped.value.row == 7


def test_too_many_bad_rows_end_the_run(service_file, tmp_path):
    rows = iris_rows(400, seed=7).astype(object)
    rows[:, 0] = "bad"
    write_input(tmp_path / "in.csv", rows)
    svc = load_target(f"{service_file}:svc")
    with pytest.raises(InvalidArgument, match="more than 50 rows failed"):
        run_batch(svc, "classify", tmp_path / "in.csv", tmp_path / "out.csv", on_error="skip",
                  max_errors=50, workers=0)
    assert not (tmp_path / "out.csv").exists()


def test_api_answering_the_wrong_number_of_rows_is_not_blamed_on_rows(tmp_path):
    svc = dosirak.Service("wrong")

    @svc.api(input=dosirak.io.NumpyNdarray(), output=dosirak.io.NumpyNdarray())
    def first(rows: np.ndarray) -> np.ndarray:
        return rows[:1]

    np.save(tmp_path / "in.npy", iris_rows(10))
    with pytest.raises(InvalidArgument, match="answered 1 rows for 10 input rows"):
        run_batch(svc, "first", tmp_path / "in.npy", tmp_path / "out.npy", on_error="skip",
                  workers=0)


def test_progress_bar_on_a_terminal(service_file, iris_clf, tmp_path):
    write_input(tmp_path / "in.parquet", iris_rows(5000, seed=8))
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [DOSIRAK, "batch", "iris_service:svc", "classify", "--input", "in.parquet", "--output",
         "out.npy", "--workers", "0", "--chunk-rows", "500"],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal,
        env=dict(os.environ, COLUMNS="120", TERM="xterm"))
    os.close(terminal)
    screen = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not data:
            break
        screen += data
    assert process.wait(timeout=60) == 0
    os.close(controller)
    text = screen.decode("utf-8", "replace")
    assert "5,000 rows" in text and "rows/s" in text
    assert "5,000 rows written to out.npy" in text
