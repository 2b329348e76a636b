"""`dosirak deploy kubernetes` and `dosirak deploy compose`: the schemas of Kubernetes 1.29 and
1.37 (kubernetes-validate --strict, offline), and what a schema cannot check."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from conftest import run_cli
from dosirak.deploy.compose import ComposeOptions, compose_document
from dosirak.deploy.kubernetes import KubernetesOptions, manifests
from dosirak.exceptions import InvalidArgument
from live_server import Served

VERSIONS = ("1.29", "1.37")


def _home() -> Path:
    return Path(os.environ["DOSIRAK_HOME"])


def _by_kind(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {document["kind"]: document for document in documents}


@pytest.fixture
def k8s_dir(bento_home: str, tmp_path: Path) -> Path:
    out = tmp_path / "k8s"
    run_cli("deploy", "kubernetes", bento_home, "--image", "registry.example.com/iris:1",
            "--min-replicas", "2", "--max-replicas", "6", "--target-cpu", "60", "--cpu", "250m",
            "--memory", "384Mi", "--namespace", "ml", "--output", str(out), home=_home())
    return out


def test_manifests_pass_kubernetes_validate_strict_for_1_29_and_1_37(k8s_dir: Path) -> None:
    files = sorted(k8s_dir.glob("*.yaml"))
    assert [path.name for path in files] == ["deployment.yaml", "horizontalpodautoscaler.yaml",
                                             "poddisruptionbudget.yaml", "service.yaml"]
    for version in VERSIONS:
        for path in files:
            kubernetes_validate.validate(yaml.safe_load(path.read_text()), version, strict=True)
        # The command-line tool, as a user runs it, agrees.
        result = subprocess.run([str(Path(sys.executable).parent / "kubernetes-validate"),
                                 "--strict", "-k", f"{version}.0", *map(str, files)],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_a_misspelled_field_fails_strict_validation() -> None:
    """The check above can fail: strict validation refuses what the API server would drop."""
    deployment = _by_kind(manifests(KubernetesOptions("iris", "iris:1", "iris:v1")))["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.37", strict=True)


def test_selectors_ports_probes_and_grace_period_agree(k8s_dir: Path, bento_home: str) -> None:
    kinds = _by_kind([yaml.safe_load(path.read_text()) for path in k8s_dir.glob("*.yaml")])
    deployment, service = kinds["Deployment"], kinds["Service"]
    hpa, pdb = kinds["HorizontalPodAutoscaler"], kinds["PodDisruptionBudget"]
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    for selector in (deployment["spec"]["selector"]["matchLabels"], service["spec"]["selector"],
                     pdb["spec"]["selector"]["matchLabels"]):
        assert selector and selector.items() <= pod_labels.items()
    assert {doc["metadata"]["namespace"] for doc in kinds.values()} == {"ml"}
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert deployment["spec"]["replicas"] == 2
    container = pod["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 3000}
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["PORT"] == "3000"
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    probes = {kind: container[kind]["httpGet"] for kind in
              ("startupProbe", "readinessProbe", "livenessProbe")}
    assert all(probe["port"] == "http" for probe in probes.values())
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "3000"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] != 0
    assert container["resources"]["requests"] == {"cpu": "250m", "memory": "384Mi"}
    # Longer than the pre-stop pause plus the server's drain (api_server.graceful_timeout).
    from dosirak.config import load_config

    graceful = load_config(None).api_server.graceful_timeout
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][-1]
                     .split("sleep(")[1].rstrip(")"))
    assert pod["spec"]["terminationGracePeriodSeconds"] > graceful + pre_stop
    # Every path the manifests name answers 200 on the real server of the bento.
    paths = {probe["path"] for probe in probes.values()} | {annotations["prometheus.io/path"]}
    with Served([bento_home]) as server:
        for path in sorted(paths):
            assert server.get(path)[0] == 200, path


def test_grace_period_follows_the_configured_graceful_timeout(bento_home: str,
                                                              tmp_path: Path) -> None:
    config = tmp_path / "serving.yaml"
    config.write_text("api_server:\n  graceful_timeout: 120\n")
    out = run_cli("deploy", "kubernetes", bento_home, "--image", "iris:1", "--config",
                  str(config), home=_home()).stdout
    deployment = next(doc for doc in yaml.safe_load_all(out) if doc["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 125


@pytest.mark.parametrize(("args", "message"), [
    (["--name", "Iris_Classifier"], "is not a Kubernetes name"),
    (["--cpu", "lots"], "is not a Kubernetes quantity"),
    (["--min-replicas", "5", "--max-replicas", "2"], "--min-replicas (5) <= --max-replicas (2)"),
])
def test_bad_options_are_one_line_errors(bento_home: str, args: list[str],
                                         message: str) -> None:
    result = run_cli("deploy", "kubernetes", bento_home, "--image", "iris:1", *args,
                     home=_home(), check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_compose_file_runs_the_image_on_loopback_with_a_graceful_stop(
        bento_home: str, tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    run_cli("deploy", "compose", bento_home, "--image", "iris:1", "--port", "8080",
            "--output", str(path), home=_home())
    document = yaml.safe_load(path.read_text())
    (name, service), = document["services"].items()
    assert name == "iris-classifier" and service["image"] == "iris:1"
    assert service["ports"] == [{"target": 3000, "published": "8080", "host_ip": "127.0.0.1",
                                 "protocol": "tcp"}]
    assert service["environment"]["PORT"] == "3000"
    assert service["healthcheck"]["test"][-1] == "dosirak.deploy.healthcheck"
    assert int(service["stop_grace_period"].rstrip("s")) > 30
    compose = _compose_command()
    if compose is not None:  # the compose tool's own schema, where it is installed
        result = subprocess.run([*compose, "-f", str(path), "config", "--quiet"],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr


def _compose_command() -> list[str] | None:
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) and subprocess.run(
                [*command, "version"], capture_output=True, check=False).returncode == 0:
            return command
    return None


def test_compose_refuses_a_bad_name() -> None:
    with pytest.raises(InvalidArgument, match="not valid for compose"):
        compose_document(ComposeOptions("Bad Name", "iris:1", "iris:v1"))
