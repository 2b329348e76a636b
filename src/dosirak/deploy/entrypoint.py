"""The entrypoint of a dosirak image: serve the image's bento, and be a proper PID 1.

    ENTRYPOINT ["/opt/dosirak/venv/bin/python", "-m", "dosirak.deploy.entrypoint"]
    docker run IMAGE [SERVE OPTIONS...]       # e.g. --workers 2

It serves ``$DOSIRAK_BENTO`` on ``$DOSIRAK_HOST:$PORT`` (the image sets 0.0.0.0 and 3000),
with any arguments added to ``dosirak serve``.

As PID 1 of a container (``docker run`` without ``--init``), it forks: the child serves, the
parent forwards every stop signal to it (``docker stop``'s SIGTERM starts the supervisor's
graceful drain), reaps orphaned processes (the kernel hands them to PID 1), and exits with the
child's status (0 after a graceful stop; 128+N if a signal N killed it). Elsewhere it serves in
this very process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
              signal.SIGUSR2, signal.SIGWINCH)


def serve_arguments(environ: dict[str, str] | os._Environ[str], extra: list[str]) -> list[str]:
    """The ``dosirak`` command line the container runs; exits with a one-line error on a bad
    environment."""
    bento = environ.get("DOSIRAK_BENTO")
    if not bento:
        _fail("DOSIRAK_BENTO is not set: the image names the bento it serves there; rebuild it "
              "with dosirak containerize, or set DOSIRAK_BENTO=name:version")
    port = environ.get("PORT", "3000")
    if not port.isdigit() or not 0 < int(port) < 65536:
        _fail(f"PORT={port!r} is not a TCP port; set PORT to a number from 1 to 65535")
    host = environ.get("DOSIRAK_HOST", "0.0.0.0")
    return ["serve", bento, "--host", host, "--port", port, *extra]


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _serve(arguments: list[str]) -> int:
    from dosirak.cli import cli

    try:
        cli.main(arguments, prog_name="dosirak", standalone_mode=True)
    except SystemExit as stop:
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


def _init(arguments: list[str]) -> int:
    """PID 1: run the server in a child, forward signals to it, reap every child."""
    watched = {*_FORWARDED, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    child = os.fork()
    if child == 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)
        os._exit(_serve(arguments))
    while True:
        info = signal.sigtimedwait(watched, 1.0)
        if info is not None and info.si_signo != signal.SIGCHLD:
            with contextlib.suppress(ProcessLookupError):  # it is exiting: reaped below
                os.kill(child, info.si_signo)
        while True:  # reap the server and any orphan handed to PID 1
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return 0
            if pid == 0:
                break
            if pid == child:
                code = os.waitstatus_to_exitcode(status)
                return code if code >= 0 else 128 - code


def main() -> None:
    arguments = serve_arguments(os.environ, sys.argv[1:])
    sys.exit(_init(arguments) if os.getpid() == 1 else _serve(arguments))


if __name__ == "__main__":
    main()
