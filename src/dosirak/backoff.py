"""How long to wait before restarting a process that keeps dying: the one rule of the API
workers' supervisor (``serve/supervisor.py``) and of a runner's worker pool
(``runner/worker.py``).

    >>> [restart_delay(n) for n in (1, 2, 3, 9)]
    [0.1, 0.2, 0.4, 10.0]
"""

from __future__ import annotations

#: Seconds before the first restart that waits; each quick death after it doubles the wait.
FIRST_DELAY = 0.1
#: The longest wait: a process that cannot start is retried every 10 s, not abandoned.
MAX_DELAY = 10.0
#: A process that lived this long (seconds) died of something new: its count starts over.
STABLE_AFTER = 30.0


def restart_delay(quick_deaths: int) -> float:
    """Seconds to wait after ``quick_deaths`` deaths in a row (1 or more), each of a process
    that lived less than ``STABLE_AFTER``: 0.1 s, doubling up to 10 s."""
    return min(FIRST_DELAY * 2 ** (quick_deaths - 1), MAX_DELAY)
