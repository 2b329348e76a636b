"""Which files of the build directory go into a bento's ``src/``.

A file goes in when an ``include`` pattern matches it and no ``exclude`` pattern, no line of
``.dosirakignore`` and no default exclusion does. Patterns follow gitignore (``*.py`` matches
at any depth, ``/data`` only at the top, ``models/`` a directory and all below it, ``!keep.py``
takes a file back). A directory that is excluded is not entered: as in git, nothing below it can
be taken back.
"""

from __future__ import annotations

import os
from pathlib import Path

import pathspec

from dosirak.bentos.bentofile import Bentofile, check_inside
from dosirak.exceptions import InvalidArgument

IGNORE_FILE = ".dosirakignore"
# Never the user's code, and they change on their own (bytecode on import, git on commit):
# shipping them would give the same sources another digest.
DEFAULT_EXCLUDE = ("__pycache__/", "*.py[cod]", ".git/", ".venv/", ".ipynb_checkpoints/")


def _spec(patterns: list[str]) -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines(patterns)


def ignore_patterns(directory: Path) -> list[str]:
    """The patterns of ``directory/.dosirakignore`` (none when there is no such file)."""
    try:
        lines = (directory / IGNORE_FILE).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for pattern in patterns:
        try:
            check_inside(pattern)
        except ValueError as error:
            raise InvalidArgument(f"{directory / IGNORE_FILE}: {error}") from None
    return patterns


def select(directory: Path, bentofile: Bentofile) -> list[str]:
    """The included files as sorted relative posix paths.

    A symbolic link is followed only to a file inside the build directory; one pointing outside
    is refused, so a bento never carries what the patterns say it does not.
    """
    root = directory.resolve()
    include = _spec(bentofile.include)
    exclude = _spec([*DEFAULT_EXCLUDE, *bentofile.exclude, *ignore_patterns(root)])
    found = []
    for current, dirnames, filenames in os.walk(root):
        relative_dir = Path(current).relative_to(root).as_posix()
        prefix = "" if relative_dir == "." else relative_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if not exclude.match_file(f"{prefix}{d}/"))
        for filename in filenames:
            relative = prefix + filename
            if exclude.match_file(relative) or not include.match_file(relative):
                continue
            inside(root, relative)
            found.append(relative)
    return sorted(found)


def inside(root: Path, relative: str, what: str = "file") -> Path:
    """``root/relative`` resolved, refused unless it is a regular file within ``root``."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise InvalidArgument(f"{what} {relative!r} leads outside the build directory {root} "
                              f"(to {path}); copy it into the directory, or exclude it")
    if not path.is_file():
        raise InvalidArgument(f"{what} {relative!r} is not a file in the build directory "
                              f"{root}; check the path in the bentofile")
    return path
