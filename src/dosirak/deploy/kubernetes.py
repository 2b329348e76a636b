"""Plain Kubernetes manifests for a bento's image: no operator to install.

    >>> documents = manifests(KubernetesOptions(name="iris-classifier", image="iris:1", ...))
    >>> write_manifests(documents, Path("k8s"))      # one file per object, then kubectl apply -f

A Deployment (startup, readiness and liveness probes on the server's ``/readyz`` and ``/livez``;
a grace period longer than the server's graceful drain plus the pre-stop pause; resources;
non-root, no privilege escalation, all capabilities dropped; Prometheus scrape annotations), a
Service, a HorizontalPodAutoscaler (``autoscaling/v2``, on CPU) and a PodDisruptionBudget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dosirak.deploy.dockerfile import PORT, PYTHON, UID
from dosirak.exceptions import InvalidArgument

# Seconds the pod keeps serving after it is marked terminating, while endpoints and load
# balancers stop sending it new connections; only then does SIGTERM start the drain.
PRE_STOP_SECONDS = 5
_MARGIN_SECONDS = 10
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?")


@dataclass
class KubernetesOptions:
    """What the manifests say; ``graceful_timeout``: the server's api_server.graceful_timeout."""

    name: str
    image: str
    bento_tag: str
    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_cpu: int = 70
    cpu: str = "500m"
    memory: str = "512Mi"
    namespace: str | None = None
    graceful_timeout: float = 30.0

    def check(self) -> None:
        if not _DNS_LABEL.fullmatch(self.name) or len(self.name) > 63:
            raise InvalidArgument(f"--name {self.name!r} is not a Kubernetes name: lower-case "
                                  "letters, digits and '-', at most 63 (e.g. iris-classifier)")
        if self.namespace is not None and not _DNS_LABEL.fullmatch(self.namespace):
            raise InvalidArgument(f"--namespace {self.namespace!r} is not a Kubernetes name")
        for what, value in (("--cpu", self.cpu), ("--memory", self.memory)):
            if not _QUANTITY.fullmatch(value):
                raise InvalidArgument(f"{what} {value!r} is not a Kubernetes quantity; write "
                                      "e.g. --cpu 500m --memory 512Mi")
        low = self.min_replicas if self.min_replicas is not None else self.replicas
        high = self.max_replicas if self.max_replicas is not None else max(low, self.replicas)
        if low < 1 or high < low:
            raise InvalidArgument(f"replicas must satisfy 1 <= --min-replicas ({low}) <= "
                                  f"--max-replicas ({high})")
        if not 1 <= self.target_cpu <= 100:
            raise InvalidArgument(f"--target-cpu {self.target_cpu} is a percentage, 1 to 100")

    @property
    def grace_period(self) -> int:
        """terminationGracePeriodSeconds: the pre-stop pause, the drain, and a margin."""
        return PRE_STOP_SECONDS + int(self.graceful_timeout + 0.999) + _MARGIN_SECONDS


def default_name(bento_tag: str) -> str:
    """A Kubernetes name from a bento name: ``iris_classifier`` -> ``iris-classifier``."""
    name = re.sub(r"[^a-z0-9-]+", "-", bento_tag.partition(":")[0].lower()).strip("-")
    return name[:63].rstrip("-") or "bento"


def manifests(options: KubernetesOptions) -> list[dict[str, Any]]:
    """The Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget."""
    options.check()
    name = options.name
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "dosirak"}
    selector = {"app.kubernetes.io/name": name}
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if options.namespace:
        meta["namespace"] = options.namespace
    low = options.min_replicas if options.min_replicas is not None else options.replicas
    high = (options.max_replicas if options.max_replicas is not None
            else max(low, options.replicas))

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period,
                "timeoutSeconds": 3, "failureThreshold": failures}

    container = {
        "name": "bento",
        "image": options.image,
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [{"name": "PORT", "value": str(PORT)},
                {"name": "DOSIRAK_HOST", "value": "0.0.0.0"}],
        "resources": {"requests": {"cpu": options.cpu, "memory": options.memory},
                      "limits": {"memory": options.memory}},
        # Startup: up to 5 minutes to load the model; then readiness and liveness take over.
        "startupProbe": probe("/readyz", 2, 150),
        "readinessProbe": probe("/readyz", 5, 2),
        "livenessProbe": probe("/livez", 10, 3),
        "lifecycle": {"preStop": {"exec": {"command": [
            PYTHON, "-c", f"import time; time.sleep({PRE_STOP_SECONDS})"]}}},
        "securityContext": {"allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**meta, "annotations": {"dosirak.dev/bento": options.bento_tag}},
        "spec": {
            "replicas": low,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels, "annotations": {
                    "prometheus.io/scrape": "true", "prometheus.io/port": str(PORT),
                    "prometheus.io/path": "/metrics"}},
                "spec": {
                    "terminationGracePeriodSeconds": options.grace_period,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": UID,
                                        "runAsGroup": UID,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {"selector": selector, "type": "ClusterIP",
                 "ports": [{"name": "http", "port": 80, "targetPort": "http",
                            "protocol": "TCP"}]},
    }
    autoscaler = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": low,
            "maxReplicas": high,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization",
                                          "averageUtilization": options.target_cpu}}}],
        },
    }
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta,
        # One pod at a time may be evicted; with one replica, drains are not blocked forever.
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    }
    return [deployment, service, autoscaler, budget]


def write_manifests(documents: list[dict[str, Any]], directory: Path) -> list[Path]:
    """One YAML file per object (``deployment.yaml``...) in ``directory``; returns the paths."""
    from dosirak.store.versioned_store import dump_yaml

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for document in documents:
        path = directory / f"{document['kind'].lower()}.yaml"
        path.write_text(dump_yaml(document), "utf-8")
        paths.append(path)
    return paths


def dump_all(documents: list[dict[str, Any]]) -> str:
    """The manifests as one multi-document YAML stream (for stdout or ``kubectl apply -f -``)."""
    from dosirak.store.versioned_store import dump_yaml

    return "---\n".join(dump_yaml(document) for document in documents)
