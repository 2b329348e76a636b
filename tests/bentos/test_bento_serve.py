"""Serving, running and batching a bento by tag: real ``dosirak`` processes, started from a
directory whose decoy ``service.py`` would fail if the working copy were used instead of the
bento's own ``src/``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import dosirak
from dosirak.tag import Tag
from dosirak.target import ServeTargetError, load_service, parse_target
from live_server import Served

DOSIRAK = str(Path(sys.executable).parent / "dosirak")
ROW = [[5.1, 3.5, 1.4, 0.2]]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOSIRAK, *args], capture_output=True, text=True, cwd=cwd,
                          env=os.environ.copy(), timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working directory whose decoy service.py fails on import."""
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    (directory / "service.py").write_text("raise SystemExit('the decoy service.py was imported')\n")
    return directory


@pytest.fixture
def bento(iris_project: Path) -> dosirak.bentos.Bento:
    built = dosirak.bentos.build(iris_project)
    (iris_project / "service.py").write_text("raise SystemExit('the working copy was imported')\n")
    return built


def test_serve_by_tag_from_another_directory(bento: dosirak.bentos.Bento, elsewhere: Path
                                             ) -> None:
    for target in ("iris_classifier:latest", f"iris_classifier:{bento.tag.version[:6]}"):
        with Served([target], cwd=elsewhere) as server:
            status, _, answer = server.post("/classify", ROW)
            assert (status, answer) == (200, [0])
        assert server.process.returncode == 0
        assert not any("decoy" in line for line in server.lines)


def test_run_and_batch_by_tag(bento: dosirak.bentos.Bento, elsewhere: Path) -> None:
    done = _cli("run", "iris_classifier:latest", "classify", "--input", "[[5.1,3.5,1.4,0.2]]",
                cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[0]"
    pd.DataFrame([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]],
                 columns=["sepal_length", "sepal_width", "petal_length", "petal_width"]
                 ).to_csv(elsewhere / "in.csv", index=False)
    done = _cli("batch", str(bento.tag), "classify", "--input", "in.csv", "--output", "out.csv",
                "--workers", "2", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert pd.read_csv(elsewhere / "out.csv")["result"].tolist() == [0, 2]


def test_bento_target_imports_the_bentos_src_not_the_cwd(bento: dosirak.bentos.Bento,
                                                          elsewhere: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(elsewhere)
    monkeypatch.syspath_prepend(str(elsewhere))
    monkeypatch.setattr(dosirak.models, "_PINS", {})  # what loading the bento pins ends here
    monkeypatch.delitem(sys.modules, "service", raising=False)
    parsed = parse_target("iris_classifier")
    assert parsed.bento == str(bento.tag) and parsed.file == bento.path / "src" / "service.py"
    assert load_service(parsed).name == "iris_classifier"
    assert str(elsewhere) not in sys.path and "" not in sys.path
    assert dosirak.models.get("iris_clf").tag == Tag.parse(bento.models[0]["tag"])
    sys.modules.pop("service", None)


def test_an_existing_module_or_path_wins_over_a_bento(bento: dosirak.bentos.Bento,
                                                     tmp_path: Path) -> None:
    (tmp_path / "iris_classifier.py").write_text("")
    assert parse_target("iris_classifier:latest", cwd=tmp_path).bento is None
    (tmp_path / "iris_classifier.py").unlink()
    assert parse_target("iris_classifier:latest", cwd=tmp_path).bento == str(bento.tag)


def test_a_bento_whose_model_is_gone_or_replaced_does_not_serve(bento: dosirak.bentos.Bento,
                                                               elsewhere: Path) -> None:
    model = bento.models[0]["tag"]
    dosirak.models.delete(model, force=True)
    with Served(["iris_classifier:latest"], cwd=elsewhere, wait=False) as server:
        assert server.process.wait(60) == 1
    output = "\n".join(server.lines)
    assert f"bento {bento.tag} uses the model {model}, which the model store" in output
    assert "dosirak models import" in output and "dosirak import" in output
    done = _cli("run", "iris_classifier", "classify", "--input", "[[1,2,3,4]]", cwd=elsewhere)
    assert done.returncode == 1 and f"uses the model {model}" in done.stderr


def test_unknown_tag_and_reload_are_clear_errors(bento: dosirak.bentos.Bento, elsewhere: Path
                                                 ) -> None:
    done = _cli("serve", "nope:latest", "--port", "0", cwd=elsewhere)
    assert done.returncode == 1
    assert "no module named 'nope'" in done.stderr and "no bento nope:latest" in done.stderr
    assert "dosirak list" in done.stderr
    done = _cli("serve", "iris_classifier", "--reload", "--port", "0", cwd=elsewhere)
    assert done.returncode == 1
    assert f"--reload cannot serve the bento {bento.tag}" in done.stderr
    with pytest.raises(ServeTargetError, match="no bento iris_classifier:0nothere"):
        parse_target("iris_classifier:0nothere", cwd=elsewhere)


def test_a_bento_loads_the_model_it_was_built_with_not_a_newer_one(
        bento: dosirak.bentos.Bento, elsewhere: Path) -> None:
    from sklearn import datasets
    from sklearn.dummy import DummyClassifier

    iris = datasets.load_iris()
    always_two = DummyClassifier(strategy="constant", constant=2).fit(iris.data, iris.target)
    newer = dosirak.sklearn.save_model("iris_clf", always_two,
                                       signatures={"predict": {"batchable": True}})
    assert dosirak.models.get("iris_clf:latest").tag == newer.tag
    by_tag = _cli("run", "iris_classifier", "classify", "--input", "[[5.1,3.5,1.4,0.2]]",
                  cwd=elsewhere)
    assert by_tag.returncode == 0, by_tag.stderr
    assert by_tag.stdout.strip() == "[0]"  # the bento's iris_clf, not the newer constant one
    with Served(["iris_classifier:latest"], cwd=elsewhere) as server:
        assert server.post("/classify", ROW)[2] == [0]
    source = dosirak.bentos.get("iris_classifier").path / "src" / "service.py"
    by_file = _cli("run", f"{source}:svc", "classify", "--input", "[[5.1,3.5,1.4,0.2]]",
                   cwd=elsewhere)
    assert by_file.stdout.strip() == "[2]"  # the same code outside a bento takes the latest


def test_a_bento_whose_model_was_replaced_under_its_tag_does_not_serve(
        bento: dosirak.bentos.Bento, elsewhere: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn import datasets
    from sklearn.dummy import DummyClassifier

    model = bento.models[0]["tag"]
    home = os.environ["DOSIRAK_HOME"]
    monkeypatch.setenv("DOSIRAK_HOME", str(tmp_path / "other_home"))  # another machine's store
    iris = datasets.load_iris()
    always_two = DummyClassifier(strategy="constant", constant=2).fit(iris.data, iris.target)
    dosirak.sklearn.save_model(model, always_two, signatures={"predict": {"batchable": True}})
    dosirak.models.export_model(model, str(tmp_path / "other.dosirakmodel"))
    monkeypatch.setenv("DOSIRAK_HOME", home)
    dosirak.models.import_model(str(tmp_path / "other.dosirakmodel"), overwrite=True)
    with Served(["iris_classifier:latest"], cwd=elsewhere, wait=False) as server:
        assert server.process.wait(60) == 1
    output = "\n".join(server.lines)
    assert f"bento {bento.tag} was built with the model {model} of digest" in output
    assert f"the model store holds {model} with digest" in output
    assert "--force" in output


def test_a_served_bento_is_not_deleted_without_force(bento: dosirak.bentos.Bento,
                                                     iris_project: Path, elsewhere: Path) -> None:
    """`dosirak serve TAG` holds the bento's lease (supervisor and workers): delete refuses it
    until the server stops; --force deletes it anyway."""
    (iris_project / "service.py").write_bytes((bento.path / "src" / "service.py").read_bytes())
    again = dosirak.bentos.build(iris_project, version="again")
    with Served([str(bento.tag)], cwd=elsewhere) as server:
        done = _cli("delete", str(bento.tag), "-y", cwd=elsewhere)
        assert done.returncode == 1, done.stderr
        assert f"bento {bento.tag} is in use" in done.stderr and "--force" in done.stderr
        assert server.post("/classify", ROW)[2] == [0]
    assert dosirak.bentos.get(bento.tag).tag == bento.tag
    done = _cli("delete", str(bento.tag), "-y", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    with pytest.raises(dosirak.exceptions.BentoNotFound):
        dosirak.bentos.get(bento.tag)

    with Served([str(again.tag)], cwd=elsewhere):
        done = _cli("delete", str(again.tag), "-y", "--force", cwd=elsewhere)
        assert done.returncode == 0, done.stderr
    assert dosirak.bentos.list() == []
