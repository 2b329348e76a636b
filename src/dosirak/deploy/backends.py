"""The container engines ``dosirak containerize`` builds with: docker, podman, buildah.

    >>> backend = find_backend("auto")      # docker if its daemon answers, else podman, buildah
    >>> backend.build_command(Path("ctx"), ["iris:1"], {}, None, Path("iid"))
    >>> image_id = backend.build(Path("ctx"), ["iris:1"], output=print)

Every failure is one line that says what to do: no engine on PATH (which were looked for and how
to install one), Docker's daemon not running, a build that failed (the engine's last lines), a
step killed by the out-of-memory killer (exit 137).
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dosirak.exceptions import ContainerBuildFailed, InvalidArgument

BACKENDS = ("docker", "podman", "buildah")
_TAIL = 12
_INSTALL = ("install one: Debian/Ubuntu `apt-get install docker.io` (or podman, buildah), "
            "Fedora `dnf install podman`, macOS Docker Desktop or `brew install podman`")


@dataclass(frozen=True)
class Backend:
    """One engine: its name, its executable and the environment its commands need."""

    name: str
    executable: str
    env: Mapping[str, str] = field(default_factory=dict)

    def build_command(self, context: Path, tags: Sequence[str], build_args: Mapping[str, str],
                      platform: str | None, iidfile: Path) -> list[str]:
        """The exact command that builds ``context`` (what --dry-run prints)."""
        command = [self.executable, "bud" if self.name == "buildah" else "build"]
        if self.name != "docker":
            # Docker's image format keeps HEALTHCHECK (OCI drops it); layers make rebuilds cheap.
            command += ["--format", "docker", "--layers"]
        command += ["-f", str(context / "Dockerfile"), "--iidfile", str(iidfile)]
        for tag in tags:
            command += ["-t", tag]
        for key, value in build_args.items():
            command += ["--build-arg", f"{key}={value}"]
        if platform:
            command += ["--platform", platform]
        return [*command, str(context)]

    def build(self, context: Path, tags: Sequence[str], *,
              build_args: Mapping[str, str] | None = None, platform: str | None = None,
              output: Callable[[str], None] = lambda line: None) -> str:
        """Build the image; return its id. Each line of the engine's output goes to ``output``."""
        with tempfile.TemporaryDirectory(prefix="dosirak-iid-") as scratch:
            iidfile = Path(scratch) / "iid"
            command = self.build_command(context, tags, build_args or {}, platform, iidfile)
            code, tail = self._run(command, output)
            if code != 0:
                raise _build_failure(self.name, code, tail)
            try:
                return iidfile.read_text().strip()
            except OSError:
                raise ContainerBuildFailed(f"{self.name} reported success but wrote no image id "
                                           f"({' | '.join(tail[-3:])})") from None

    def _run(self, command: list[str], output: Callable[[str], None]) -> tuple[int, list[str]]:
        tail: collections.deque[str] = collections.deque(maxlen=_TAIL)
        try:
            process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env={**os.environ, **self.env}, text=True,
                                       errors="replace")
        except OSError as error:
            raise ContainerBuildFailed(f"cannot run {self.executable}: {error}") from None
        assert process.stdout is not None
        with process:
            for line in process.stdout:
                line = line.rstrip("\n")
                output(line)
                if line.strip():
                    tail.append(line.strip())
        return process.returncode, list(tail)

    def image_size(self, image: str) -> int:
        """Bytes of ``image`` as the engine counts them (uncompressed layers)."""
        result = subprocess.run([self.executable, "image", "inspect", "--format", "{{.Size}}",
                                 image], capture_output=True, text=True, check=False,
                                env={**os.environ, **self.env})
        if result.returncode != 0:
            raise ContainerBuildFailed(f"{self.name} cannot inspect {image}: "
                                       f"{result.stderr.strip()}")
        return int(result.stdout.strip().splitlines()[0])


def _build_failure(name: str, code: int, tail: list[str]) -> ContainerBuildFailed:
    last = " | ".join(tail[-6:]) or "no output"
    if code in (137, -9) or any(re.search(r"(code|status):? 137\b", line) for line in tail):
        return ContainerBuildFailed(
            f"a step of the {name} build was killed (exit 137: SIGKILL, most often from the "
            "out-of-memory killer); give the engine more memory (Docker Desktop: Settings > "
            f"Resources) or build one image at a time ({last})")
    return ContainerBuildFailed(f"the {name} build failed (exit {code}); its last lines: {last}")


def find_backend(name: str = "auto") -> Backend:
    """The engine ``name`` asks for; ``auto``: docker when its daemon answers, else podman, else
    buildah. Raises ``ContainerBuildFailed`` when none is usable."""
    if name not in ("auto", *BACKENDS):
        raise InvalidArgument(f"--backend {name!r} is not one of auto, {', '.join(BACKENDS)}")
    wanted = BACKENDS if name == "auto" else (name,)
    found = {backend: shutil.which(backend) for backend in wanted}
    if not any(found.values()):
        looked = ", ".join(wanted)
        raise ContainerBuildFailed(f"no container engine found: looked for {looked} on PATH; "
                                   f"{_INSTALL}")
    daemon_error = None
    for backend in wanted:
        executable = found[backend]
        if executable is None:
            continue
        if backend == "docker":
            daemon_error = _docker_daemon_error(executable)
            if daemon_error is not None:
                if name == "auto" and any(found[b] for b in BACKENDS[1:]):
                    continue  # podman or buildah need no daemon
                raise ContainerBuildFailed(daemon_error)
            return Backend("docker", executable, _docker_env(executable))
        return Backend(backend, executable)
    raise ContainerBuildFailed(daemon_error or f"no container engine found; {_INSTALL}")


def _docker_daemon_error(executable: str) -> str | None:
    try:
        result = subprocess.run([executable, "version", "--format", "{{.Server.Version}}"],
                                capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "the Docker daemon does not answer (docker version waited 30 s); restart it"
    if result.returncode == 0 and result.stdout.strip():
        return None
    reason = (result.stderr.strip().splitlines() or ["no answer"])[-1]
    return (f"the Docker daemon is not running ({reason}); start it (`sudo systemctl start "
            "docker`, or `sudo dockerd &`), or build with --backend podman")


def _docker_env(executable: str) -> dict[str, str]:
    """BuildKit where the client has buildx; else the classic builder, which every daemon has
    (a client without buildx refuses BuildKit builds)."""
    if "DOCKER_BUILDKIT" in os.environ:
        return {}
    result = subprocess.run([executable, "buildx", "version"], capture_output=True,
                            check=False)
    return {} if result.returncode == 0 else {"DOCKER_BUILDKIT": "0"}
