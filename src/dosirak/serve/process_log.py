"""The log lines of the serving processes: ``time LEVEL [role pid] message`` on stderr.

    >>> setup_process_logging("supervisor")
    >>> setup_process_logging("worker 1")

Covers dosirak's own loggers (``dosirak.serve``, ``dosirak.runner``, ``dosirak.server`` ...);
the access and prediction logs have their own handlers (``dosirak.observability.log_setup``).
"""

from __future__ import annotations

import logging
import os
import sys
import time

_OURS = "_dosirak_process_handler"


class ProcessFormatter(logging.Formatter):
    """``2024-05-01T12:00:00.123Z INFO [worker 1 4242] message``."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        """One line (plus the traceback, if any)."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = (f"{stamp}.{int(record.msecs):03d}Z {record.levelname} "
                f"[{self.role} {os.getpid()}] {record.getMessage()}")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_process_logging(role: str, level: int = logging.INFO) -> None:
    """Send the ``dosirak`` loggers' records of ``level`` and above to stderr, tagged ``role``,
    and uvicorn's warnings and errors (a malformed request, a protocol error) with them."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ProcessFormatter(role))
    setattr(handler, _OURS, True)
    for name, threshold in (("dosirak", level), ("uvicorn", logging.WARNING)):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, _OURS, False)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(threshold)
        logger.propagate = False
