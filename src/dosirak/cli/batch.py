"""``dosirak batch TARGET API --input data.csv --output out.parquet``: an API over every row of a
file, with a progress bar (rows/s and time left) on stderr when it is a terminal."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

# dosirak.offline.readers.FORMATS, spelled out so that `dosirak --help` imports no numpy.
FORMATS = ("csv", "parquet", "jsonl", "npy")


class _RowsColumn(ProgressColumn):
    """Rows written and rows per second (the bar itself may count bytes of the input)."""

    def render(self, task: Task) -> Text:
        rows = task.fields.get("rows", 0)
        elapsed = task.elapsed or 0.0
        rate = rows / elapsed if elapsed > 0 else 0.0
        return Text(f"{rows:,} rows  {rate:,.0f} rows/s", style="progress.data.speed")


class _Bar:
    """A rich progress bar fed by the batch run (``ProgressSink``)."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(TextColumn("[progress.description]{task.description}"),
                                 BarColumn(), _RowsColumn(), TimeElapsedColumn(),
                                 TimeRemainingColumn(), console=console, transient=False)
        self.task = self.progress.add_task("batch", total=None, rows=0)

    def start(self, total: int | None, unit: str) -> None:
        self.progress.update(self.task, total=total)
        self.progress.start()

    def advance(self, rows: int, position: int) -> None:
        self.progress.update(self.task, completed=position, rows=rows)

    def stop(self) -> None:
        self.progress.stop()


@click.command("batch")
@click.argument("target")
@click.argument("api")
@click.option("--input", "input_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The rows: .csv, .parquet, .jsonl or .npy.")
@click.option("--output", "output_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The results, in input order: .parquet, .csv, .jsonl or .npy.")
@click.option("--on-error", type=click.Choice(["stop", "skip"]), default="stop",
              show_default=True, help="stop: exit at the first bad row, naming it; skip: write "
              "bad rows to the errors file and go on.")
@click.option("--errors-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Where skipped rows go (default: OUTPUT.errors.jsonl).")
@click.option("--max-errors", type=click.IntRange(min=0), default=1000, show_default=True,
              help="With --on-error skip: stop once more rows than this failed.")
@click.option("--workers", type=click.IntRange(min=0),
              help="Runner worker processes (default: one per core; 0: in this process).")
@click.option("--chunk-rows", type=click.IntRange(min=1),
              help="Rows per call of a table API (default 16384; 1024 rows at a time for "
              "one-row APIs).")
@click.option("--input-format", type=click.Choice(FORMATS), help="Override the extension.")
@click.option("--output-format", type=click.Choice(FORMATS), help="Override the extension.")
def batch(target: str, api: str, input_path: Path, output_path: Path, on_error: str,
          errors_file: Path | None, max_errors: int, workers: int | None,
          chunk_rows: int | None, input_format: str | None, output_format: str | None) -> None:
    """Run API of TARGET over every row of --input and write the results to --output.

    TARGET is module:svc, path/to/file.py:svc, a directory with service.py, a bento tag, or a
    generic service config (.yaml, .yml, .json).

        dosirak batch service:svc classify --input iris.parquet --output labels.parquet
    """
    from dosirak.offline.batch import run_batch
    from dosirak.offline.target import load_target

    svc = load_target(target)
    console = Console(stderr=True)
    bar = _Bar(console) if console.is_terminal else None
    try:
        report = run_batch(svc, api, input_path, output_path, chunk_rows=chunk_rows,
                           workers=workers, on_error=on_error, errors_path=errors_file,
                           max_errors=max_errors, input_format=input_format,
                           output_format=output_format, progress=bar)
    finally:
        if bar is not None:
            bar.stop()
    summary = (f"{report.rows_written:,} rows written to {report.output} in "
               f"{report.seconds:.1f} s ({report.startup_seconds:.1f} s to start, then "
               f"{report.rows_per_second:,.0f} rows/s; {report.workers} worker(s); peak memory "
               f"of this process {report.peak_rss_bytes / 2**20:,.0f} MiB)")
    if report.bad_rows:
        summary += f"; {report.bad_rows:,} bad rows in {report.errors_path}"
    console.print(summary, highlight=False, soft_wrap=True)
