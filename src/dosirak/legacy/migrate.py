"""``dosirak migrate PATH`` (and ``dosirak import PATH``): a directory saved by BentoML 0.13
turned into a dosirak bento, with a list of what could not be carried over.

    >>> result = migrate("saved/IrisClassifier")
    >>> result.bento.tag, result.not_carried

BentoML 1.0 left 0.13 users a manual rewrite. Here the bundle's own module is imported (its
``import bentoml`` resolved to dosirak's 0.x layer in this process only, ``compat.py``), its
artifacts are read from ``artifacts/`` and saved into the model store through the framework
adapters, and the service is saved as any 0.x service is (``bundle.save_to_store``), keeping its
name and version. The bento serves as the bundle did, on the same routes and port.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dosirak.legacy.bundle import BUNDLE_FILE, STATIC_DIR, load_artifacts, load_class

#: Files BentoML 0.13 generated beside the service: dosirak makes its own equivalents.
_GENERATED = {"Dockerfile", "MANIFEST.in", "README.md", "bentoml-init.sh",
              "docker-entrypoint.sh", "environment.yml", "python_version", "requirements.txt",
              "setup.py", "setup.cfg", "docs.json", BUNDLE_FILE, "__init__.py", "__pycache__"}


@dataclass
class Migration:
    """The bento made and what of the 0.13 bundle it does not hold (one line each)."""

    bento: Any
    not_carried: list[str] = field(default_factory=list)


def migrate(path: str | Path, *, version: str | None = None,
            labels: dict[str, str] | None = None) -> Migration:
    """Import the BentoML 0.13 bundle at ``path`` as a bento; see the module docstring."""
    from dosirak import bentos

    root = Path(path).resolve()
    cls, data = load_class(root)
    svc = load_artifacts(cls(), data, root)
    not_carried = _not_carried(root, data, svc.name, cls)
    saved = svc.save(version=version,  # None: the bundle's own version
                     labels={"migrated_from": f"bentoml-{data.get('version', '0.x')}",
                             **(labels or {})})
    return Migration(bentos.get(f"{_tag_of(saved)}"), not_carried)


def _tag_of(bento_path: str) -> str:
    path = Path(bento_path)
    return f"{path.parent.name}:{path.name}"


def _not_carried(root: Path, data: dict[str, Any], name: str, cls: type) -> list[str]:
    found = []
    env = data.get("env") if isinstance(data.get("env"), dict) else {}
    conda = env.get("conda_env") or {}
    dependencies = conda.get("dependencies") if isinstance(conda, dict) else None
    if dependencies:
        found.append(f"conda dependencies {dependencies}: a dosirak bento installs with pip "
                     "only; add their pip equivalents to @env(pip_packages=[...])")
    image = env.get("docker_base_image")
    if isinstance(image, str) and image.startswith("bentoml/"):
        found.append(f"docker_base_image {image}: BentoML's own image; the bento uses "
                     "dosirak's default base image")
    if (root / "bundled_pip_dependencies").is_dir():
        found.append("bundled_pip_dependencies/: a BentoML build of its own; not needed")
    if env.get("zipimport_archives"):
        found.append(f"zipimport_archives {env['zipimport_archives']}: put the code in the "
                     "service's directory instead")
    module_dir = root / name if (root / name).is_dir() else root
    kept = {Path(data["metadata"]["module_file"]).name, "artifacts", STATIC_DIR, name}
    for folder in {root, module_dir}:
        for entry in sorted(folder.iterdir()):
            if entry.name in _GENERATED or entry.name in kept:
                continue
            if entry.suffix == ".py" and folder == module_dir:
                continue  # local modules the service imports are copied with it
            found.append(f"{entry.relative_to(root)}: not part of the service (regenerated or "
                         "unused by dosirak)")
    return found
