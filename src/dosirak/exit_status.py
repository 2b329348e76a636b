"""How a child process ended, in words for log lines and error messages.

A leaf module (standard library only) so the lean supervisor and the runner workers share it.
"""

from __future__ import annotations

import signal


def describe_exit(code: int | None) -> str:
    """``exit code 1`` or ``signal 9: SIGKILL`` (``subprocess`` return codes)."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"signal {-code}: {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
