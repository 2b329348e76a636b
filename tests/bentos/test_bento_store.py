"""The bento store through Python (get/list/delete) and through the real CLI (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import dosirak
from dosirak.exceptions import BentoNotFound, InUse, NotFound

DOSIRAK = [str(Path(sys.executable).parent / "dosirak")]


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DOSIRAK, *args], capture_output=True, text=True, cwd=cwd,
                          env=os.environ.copy(), timeout=60, stdin=subprocess.DEVNULL)


def test_get_list_delete(iris_project: Path) -> None:
    old = dosirak.bentos.build(iris_project, version="1old")
    new = dosirak.bentos.build(iris_project, version="2new")
    for tag in ("iris_classifier", "iris_classifier:latest", "iris_classifier:2n"):
        assert dosirak.bentos.get(tag).tag == new.tag
    assert dosirak.bentos.get("iris_classifier:1old").digest == old.digest
    assert [b.tag for b in dosirak.bentos.list()] == [new.tag, old.tag]
    assert [b.tag for b in dosirak.bentos.list("iris_classifier")] == [new.tag, old.tag]
    assert dosirak.bentos.list("other") == []
    assert dosirak.bentos.delete("iris_classifier:latest") == new.tag
    assert not new.path.exists()
    assert dosirak.bentos.get("iris_classifier").tag == old.tag
    with pytest.raises(BentoNotFound, match=r"no bento 'iris_classifier:2new' .* `dosirak list`"):
        dosirak.bentos.get("iris_classifier:2new")
    # Bento tags are read case-insensitively (as BentoML 1.x), for 0.x's IrisClassifier:latest
    assert dosirak.bentos.get("IRIS_Classifier").tag == old.tag
    with pytest.raises(BentoNotFound, match=r"no bento 'iris:latest'"):
        dosirak.bentos.get("Iris")
    assert dosirak.models.get("iris_clf")  # the bento's model stays in the model store


def test_a_model_a_bento_uses_is_not_deleted_without_force(iris_project: Path,
                                                          tmp_path: Path) -> None:
    first = dosirak.bentos.build(iris_project, version="1")
    second = dosirak.bentos.build(iris_project, version="2")
    model = first.models[0]["tag"]
    with pytest.raises(InUse, match=rf"model {model} is used by the bentos "
                                    rf"({first.tag}, {second.tag}|{second.tag}, {first.tag});"):
        dosirak.models.delete(model)
    done = _cli("models", "delete", model, "-y", cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "--force" in done.stderr and dosirak.models.get(model)
    dosirak.bentos.delete(first.tag)
    with pytest.raises(InUse, match=rf"used by the bento {second.tag};"):
        dosirak.models.delete(model)
    done = _cli("models", "delete", model, "-y", "--force", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with pytest.raises(NotFound):
        dosirak.models.get(model)


def test_cli_build_list_get_delete(iris_project: Path, tmp_path: Path) -> None:
    built = _cli("build", str(iris_project), "--label", "team=ml", "-o", "json", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    summary = json.loads(built.stdout)
    tag = summary["tag"]
    assert summary["labels"]["team"] == "ml" and len(summary["digest"]) == 64

    assert _cli("build", "-o", "tag", cwd=iris_project).stdout.startswith("iris_classifier:")
    listed = json.loads(_cli("list", "-o", "json").stdout)
    assert len(listed) == 2 and listed[1]["tag"] == tag
    assert {"tag", "size", "creation_time", "labels"} <= set(listed[1])
    assert listed[1]["size"] > 0
    assert "iris_classifier" in _cli("list").stdout
    assert yaml.safe_load(_cli("list", "iris_classifier", "-o", "yaml").stdout)["bentos"]

    got = json.loads(_cli("get", tag, "-o", "json").stdout)
    assert got["tag"] == tag and got["service"] == "service.py:svc"
    assert got["digest"] == summary["digest"] and got["labels"]["team"] == "ml"
    assert [m["tag"].split(":")[0] for m in got["models"]] == ["iris_clf"]
    assert yaml.safe_load(_cli("get", tag).stdout)["digest"] == summary["digest"]
    path = Path(_cli("get", tag, "-o", "path").stdout.strip())
    assert (path / "bento.yaml").is_file()

    refused = _cli("delete", tag)
    assert refused.returncode == 1 and "pass -y" in refused.stderr and path.exists()
    deleted = _cli("delete", tag, "-y")
    assert deleted.returncode == 0 and not path.exists()
    assert len(json.loads(_cli("list", "-o", "json").stdout)) == 1


@pytest.mark.parametrize(("args", "bentofile", "expected"), [
    (["build", "DIR/service.py"], None, "is not a directory"),
    (["build", "DIR"], "service: service.py:svc\nmodles: []\n",
     "modles: unknown key (did you mean 'models'?)"),
    (["build", "DIR"], "name: x\n", "service: missing, it is required"),
    (["build", "DIR", "--version", "Bad"], None, "invalid version 'Bad' in tag"),
    (["build", "DIR", "--label", "novalue"], None, "is not KEY=VALUE"),
    (["get", "Iris:Bad"], None, "no bento 'iris:bad'"),
    (["get", "ghost:latest"], None, "no bento 'ghost:latest' in"),
    (["delete", "ghost", "-y"], None, "no bento 'ghost:latest' in"),
])
def test_cli_errors_are_one_line(iris_project: Path, args: list[str], bentofile: str | None,
                                 expected: str) -> None:
    if bentofile is not None:
        (iris_project / "bentofile.yaml").write_text(bentofile)
    result = _cli(*[arg.replace("DIR", str(iris_project)) for arg in args])
    assert result.returncode in (1, 2), result
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    if result.returncode == 1:
        assert len(result.stderr.strip().splitlines()) == 1



def test_a_store_the_process_cannot_write_serves_without_a_lease(
        iris_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bento in a store that the serving user cannot write (a read-only file system, or a
    container image's store owned by root): taking the lease is skipped, not an error."""
    import errno

    from dosirak.bentos import store

    bento = dosirak.bentos.build(iris_project)
    real_open = os.open

    def read_only(path: object, *args: object, **kwargs: object) -> int:
        if store._LEASES in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", read_only)
    with store.lease(bento.tag) as held:
        assert held.tag == bento.tag
        assert not store._lease_path(bento.tag).exists()
