"""What several command groups share: sizes for people, confirmations, progress bars, and
errors about places the user named."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from dosirak.exceptions import InvalidArgument


def human_size(size: int) -> str:
    """``size`` bytes for people: B, KiB, MiB or GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{size} B"


def confirm_delete(tag: object) -> None:
    """Ask before deleting ``tag`` (a model or a bento); refuse when nobody can answer."""
    if not sys.stdin.isatty():
        raise InvalidArgument(f"refusing to delete {tag} without confirmation: stdin is not a "
                              "terminal; pass -y to delete from a script")
    click.confirm(f"Delete {tag}?", abort=True)


@contextmanager
def progress_bar(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal; silent otherwise."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda _n: None
        return
    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
               TransferSpeedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


@contextmanager
def user_location(verb: str, location: str) -> Iterator[None]:
    """An OS error about a place the user named (a file in the way, no permission, a full disk,
    a missing bucket) is their mistake to fix: one line, not a traceback."""
    try:
        yield
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        where = f" ({error.filename})" if error.filename else ""
        raise InvalidArgument(f"cannot {verb} {location}: {reason}{where}") from error


def byte_size(_context: object, _param: object, value: str | None) -> int | None:
    """A click callback: ``value`` (bytes, or a size such as '100GiB') as bytes."""
    if value is None:
        return None
    from pydantic import ByteSize, TypeAdapter, ValidationError

    try:
        return int(TypeAdapter(ByteSize).validate_python(value))
    except ValidationError:
        raise click.BadParameter(f"{value!r} is not a size; write bytes or a size such as "
                                 "'100GiB'") from None
