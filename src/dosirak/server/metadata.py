"""The ``/metadata`` document: what a running service is made of, for people and tools.

    >>> build_metadata(svc, placements={"iris_clf": "local"})
    {"service": "iris_classifier", "dosirak_version": "...", "apis": [...], "runners": [...],
     "models": [...]}

Each runner lists its methods (batchable, batch dimensions, batching limits), where it runs and
the stored models it serves with their tags, labels and metadata (what seed 001 reads over REST).
Models a class-style service declares are listed under ``models``. Built once per server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dosirak.__about__ import __version__


def build_metadata(svc: Any, placements: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The metadata of ``svc`` as plain, JSON-ready data."""
    placements = placements or {}
    return {
        "service": svc.name,
        "dosirak_version": __version__,
        "apis": [_api(api) for api in svc.apis.values()],
        "runners": [_runner(runner, placements.get(runner.name)) for runner in svc.runners],
        "models": [model_metadata(model) for model in getattr(svc, "models", [])],
        # What a BentoML 0.x service says of itself (its bentoml.yml: artifacts' metadata...).
        **getattr(svc, "extra_metadata", {}),
    }


def model_metadata(model: Any) -> dict[str, Any]:
    """Tag, framework, labels, metadata, signatures, size and creation time of a stored model."""
    info = model.info
    return {
        "tag": str(model.tag),
        "module": info.module,
        "labels": dict(info.labels),
        "metadata": dict(info.metadata),
        "signatures": {name: signature.to_dict() for name, signature in info.signatures.items()},
        "creation_time": info.creation_time.isoformat(),
        "size": info.size,
    }


def _api(api: Any) -> dict[str, Any]:
    spec = api.to_spec()
    return {"name": spec["name"], "route": spec["route"], "doc": spec["doc"],
            "input": spec["input"], "output": spec["output"], "batchable": spec["batchable"]}


def _runner(runner: Any, placement: str | None) -> dict[str, Any]:
    methods = []
    for name, method in runner.methods.items():
        signature = method.signature
        methods.append({"name": name, "batchable": signature.batchable,
                        "batch_dim": list(signature.batch_dim),
                        "max_batch_size": method.max_batch_size,
                        "max_latency_ms": method.max_latency_ms})
    return {"name": runner.name, "placement": placement,
            "workers": runner.workers if placement == "process" else None,
            "methods": methods,
            "models": [model_metadata(model) for model in runner.models]}
