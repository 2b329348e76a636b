"""What runs inside an image on every start (the entrypoint) and every health check: it must not
pay for the build machinery (a cold start's time; a health check's CPU every interval)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Modules of `dosirak containerize` and what they pull in, none of which serving needs.
BUILD_MACHINERY = ("dosirak.deploy.backends", "dosirak.deploy.context", "dosirak.deploy.wheels",
                   "dosirak.deploy.dockerfile", "dosirak.bentos.build", "dosirak.bentos.archive",
                   "jinja2", "fsspec", "pydantic")


def _modules_after(code: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", f"{code}\nimport json, sys\n"
                             "print(json.dumps(sorted(sys.modules)))"],
                            capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout.splitlines()[-1]))


@pytest.mark.parametrize("module", ["dosirak.deploy.entrypoint", "dosirak.deploy.healthcheck"])
def test_the_image_s_own_programs_import_no_build_machinery(module: str) -> None:
    loaded = _modules_after(f"import {module}")
    assert module in loaded
    assert not loaded & set(BUILD_MACHINERY), sorted(loaded & set(BUILD_MACHINERY))


def test_the_package_still_offers_containerize_and_its_parts() -> None:
    import dosirak.deploy
    from dosirak.deploy.backends import find_backend
    from dosirak.deploy.context import Plan, plan, write_context

    assert dosirak.deploy.plan is plan and dosirak.deploy.write_context is write_context
    assert dosirak.deploy.Plan is Plan and dosirak.deploy.find_backend is find_backend
    assert callable(dosirak.deploy.containerize)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        dosirak.deploy.nothing  # noqa: B018


def test_finding_the_bento_to_serve_imports_no_build_machinery() -> None:
    """What `dosirak serve TAG` runs before its first worker starts (dosirak.target reads the
    bento from the store): no archives, no bentofile models, no event loop."""
    loaded = _modules_after("import dosirak.cli, dosirak.serve, dosirak.serve.worker, "
                            "dosirak.serve.process_log, dosirak.target, dosirak.bentos.serving, "
                            "dosirak.bentos.store, dosirak.server.deployment")
    # (dosirak.bentos.build itself loads: dosirak.bentos.build() is a function of the package.)
    # asyncio and importlib.metadata: the worker needs them, the supervisor after the spawn.
    heavy = set(BUILD_MACHINERY) - {"dosirak.bentos.build"} | {
        "dosirak.bentos.bentofile", "asyncio", "importlib.metadata"}
    assert not loaded & heavy, sorted(loaded & heavy)
    import dosirak.bentos
    from dosirak.bentos.archive import export_bento

    assert dosirak.bentos.export_bento is export_bento
    assert callable(dosirak.bentos.build)


def test_the_supervisor_leaves_prometheus_client_to_its_workers() -> None:
    """After forking its first worker, the supervisor reads its configuration and binds while
    that worker imports and loads the service: whatever the supervisor imports then takes CPU
    from the worker's start. prometheus_client is the workers'; the supervisor needs it only
    once a worker has exited."""
    loaded = _modules_after("import dosirak.serve.supervisor, dosirak.observability.multiprocess")
    assert "prometheus_client" not in loaded
