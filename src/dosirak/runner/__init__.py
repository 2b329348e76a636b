"""Runners: run a model's methods for a service, with adaptive micro-batching.

``Runnable`` holds the model and its methods; ``Runner`` runs them in-process (``init_local``) or
in worker processes, batching concurrent calls of batchable methods (``dispatcher``), moving
arrays between processes without pickle (``transport``, ``worker``).
"""

from dosirak.runner.runnable import Runnable, RunnableSpec
from dosirak.runner.runner import Runner, RunnerMethod

__all__ = ["Runnable", "RunnableSpec", "Runner", "RunnerMethod"]
