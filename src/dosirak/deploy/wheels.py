"""The wheels an image installs, fetched on the host so that the image build needs no network.

    >>> dosirak_wheel(Path("ctx/env/python/wheels"))           # dosirak itself, as it runs here
    >>> download(["numpy==2.1.0"], Path("ctx/env/python/wheels"), python="3.11",
    ...          platform="linux/amd64")

dosirak itself is not taken from an index: its wheel is assembled from the package that is
running (an editable install of a checkout as much as an installed wheel), so the image serves
with the very code that built it. The zip is deterministic (fixed times, sorted names): the same
code gives the same bytes, and the engine's layer cache stays valid.

Every other wheel comes from ``pip download --only-binary=:all:`` for the image's platform and
Python, with the bento's index options; pip's own cache makes a second build fast.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

from dosirak.__about__ import __version__
from dosirak.exceptions import ContainerBuildFailed, InvalidArgument

# glibc of the default base (Debian 12): manylinux wheels up to 2.36 run there.
_GLIBC_MAX = 36
_MACHINES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}
_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: reproducible wheels


def machine_of(platform: str) -> str:
    """``linux/amd64`` -> ``x86_64``; refuses what has no manylinux wheels."""
    os_name, _, arch = platform.partition("/")
    machine = _MACHINES.get(arch.split("/")[0])
    if os_name != "linux" or machine is None:
        raise InvalidArgument(f"--platform {platform!r} is not supported; use linux/amd64 or "
                              "linux/arm64")
    return machine


def pip_platform_args(platform: str, python: str) -> list[str]:
    """pip's options selecting wheels for ``platform`` and CPython ``python`` (``3.11``)."""
    machine = machine_of(platform)
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(_GLIBC_MAX, 16, -1)]
    tags += [f"manylinux2014_{machine}"]
    if machine == "x86_64":
        tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    args = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
    for tag in tags:
        args += ["--platform", tag]
    return args


def download(requirements: Sequence[str], dest: Path, *, python: str, platform: str,
             index_options: Sequence[str] = (), deps: bool = False) -> None:
    """Download the wheels of ``requirements`` (pinned, so no dependencies by default) into
    ``dest``; raise ``ContainerBuildFailed`` with pip's last lines if one has no wheel."""
    if not requirements:
        return
    dest.mkdir(parents=True, exist_ok=True)
    listing = dest.parent / ".download-requirements.txt"
    listing.write_text("".join(f"{line}\n" for line in requirements), "utf-8")
    command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
               "--progress-bar", "off", "--dest", str(dest),
               *pip_platform_args(platform, python), *index_options, "-r", str(listing)]
    if not deps:
        command.append("--no-deps")
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False,
                                env={**os.environ, "PIP_NO_INPUT": "1"})
    finally:
        listing.unlink(missing_ok=True)
    if result.returncode != 0:
        last = [line for line in result.stderr.splitlines() if line.strip()][-3:]
        raise ContainerBuildFailed(
            f"cannot download the wheels of the bento's requirements for {platform}, Python "
            f"{python} (pip exit {result.returncode}: {' | '.join(last) or 'no output'}); "
            "a package without a wheel for that platform must be built inside the image: "
            "use --no-vendor, or add its wheel to python.wheels in the bentofile")


def dosirak_wheel(dest: Path) -> Path:
    """Write a wheel of the running dosirak into ``dest``; return its path."""
    try:
        distribution = importlib.metadata.distribution("dosirak")
    except importlib.metadata.PackageNotFoundError:
        raise ContainerBuildFailed("dosirak runs without being installed (no dosirak "
                                   "distribution metadata), so no wheel of it can be made for "
                                   "the image; install it (`pip install -e .` in a checkout)"
                                   ) from None
    package = Path(__file__).parent.parent  # the dosirak package this module is in
    info = f"dosirak-{__version__}.dist-info"
    files: dict[str, bytes] = {}
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files[f"dosirak/{path.relative_to(package).as_posix()}"] = path.read_bytes()
    metadata = distribution.read_text("METADATA") or ""
    files[f"{info}/METADATA"] = metadata.encode()
    files[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: dosirak containerize\n"
                              b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    entry_points = distribution.read_text("entry_points.txt")
    if entry_points:
        files[f"{info}/entry_points.txt"] = entry_points.encode()
    record = [f"{name},sha256={_digest(data)},{len(data)}" for name, data in files.items()]
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()

    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"dosirak-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, date_time=_EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
    return wheel


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
