"""``dosirak models ...``: the real console script, run in subprocesses against a tmp home."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

import dosirak

DOSIRAK = str(Path(sys.executable).parent / "dosirak")


def run(*args: str, home: Path | None = None, columns: int | None = None,
        ) -> subprocess.CompletedProcess[str]:
    """Run ``dosirak ARGS`` with stdin closed (not a terminal), as a script would."""
    env = dict(os.environ)
    if home is not None:
        env["DOSIRAK_HOME"] = str(home)
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run([DOSIRAK, *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60, check=False)


def run_in_terminal(*args: str, answer: str = "", columns: int = 60) -> tuple[int, str]:
    """Run ``dosirak ARGS`` on a pseudo-terminal, type ``answer``, return (status, screen)."""
    env = dict(os.environ, COLUMNS=str(columns), TERM="xterm")
    controller, terminal = pty.openpty()
    process = subprocess.Popen([DOSIRAK, *args], env=env, stdin=terminal, stdout=terminal,
                               stderr=terminal, close_fds=True)
    os.close(terminal)
    if answer:
        os.write(controller, answer.encode())
    screen = b""
    try:
        while select.select([controller], [], [], 30)[0]:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
    finally:
        os.close(controller)
    return process.wait(timeout=30), screen.decode(errors="replace")


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A user mistake: non-zero exit, one ``error: ...`` line on stderr, no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def iris() -> tuple[np.ndarray, np.ndarray]:
    data = load_iris()
    return data.data, data.target


@pytest.fixture
def models(iris: tuple[np.ndarray, np.ndarray]) -> list[dosirak.Model]:
    """Two versions of iris_clf and one other model, saved in this order."""
    features, target = iris
    saved = []
    for depth, name in [(2, "iris_clf"), (3, "iris_clf"), (2, "other_clf")]:
        clf = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(features, target)
        saved.append(dosirak.sklearn.save_model(
            name, clf, labels={"owner": "nlp_team", "stage": "dev"}, metadata={"depth": depth}))
    return saved


# ----- list ----------------------------------------------------------------------------------


def test_list_of_an_empty_store() -> None:
    result = run("models", "list", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_list_json_is_newest_first_with_labels(models: list[dosirak.Model]) -> None:
    result = run("models", "list", "-o", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["tag"] for row in rows] == [str(m.tag) for m in reversed(models)]
    assert {row["module"] for row in rows} == {"dosirak.sklearn"}
    assert all(row["labels"] == {"owner": "nlp_team", "stage": "dev"} for row in rows)
    assert all(row["size"] > 0 for row in rows)


def test_list_yaml_filtered_by_name(models: list[dosirak.Model]) -> None:
    result = run("models", "list", "iris_clf", "-o", "yaml")
    assert result.returncode == 0, result.stderr
    rows = yaml.safe_load(result.stdout)["models"]
    assert [row["tag"] for row in rows] == [str(models[1].tag), str(models[0].tag)]


@pytest.mark.parametrize("columns", [None, 60])
def test_list_table_shows_whole_tags(models: list[dosirak.Model], columns: int | None) -> None:
    # Piped output (no terminal) must keep each tag on one line so grep and awk can use it.
    result = run("models", "list", columns=columns)
    assert result.returncode == 0, result.stderr
    for model in models:
        assert str(model.tag) in result.stdout
    assert "owner=nlp_team" in result.stdout


def test_list_table_on_a_narrow_terminal_keeps_tags_whole(models: list[dosirak.Model]) -> None:
    status, screen = run_in_terminal("models", "list", columns=60)
    assert status == 0, screen
    for model in models:
        assert str(model.tag) in screen
    assert "┏" in screen  # a boxed table for people


def test_list_unknown_name_is_empty(models: list[dosirak.Model]) -> None:
    result = run("models", "list", "nothing_like_it", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


# ----- get -----------------------------------------------------------------------------------


def test_get_yaml_latest(models: list[dosirak.Model]) -> None:
    result = run("models", "get", "iris_clf:latest")
    assert result.returncode == 0, result.stderr
    info = yaml.safe_load(result.stdout)
    assert f"{info['name']}:{info['version']}" == str(models[1].tag)
    assert info["labels"] == {"owner": "nlp_team", "stage": "dev"}
    assert info["metadata"] == {"depth": 3}
    assert info["module"] == "dosirak.sklearn"
    assert Path(info["path"]) == models[1].path
    assert "predict" in info["signatures"]


def test_get_json_by_full_tag(models: list[dosirak.Model]) -> None:
    result = run("models", "get", str(models[0].tag), "-o", "json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["version"] == models[0].tag.version
    assert info["metadata"] == {"depth": 2}
    assert set(info["manifest"]) >= {"saved_model.joblib"}


def test_get_unknown_tag(models: list[dosirak.Model]) -> None:
    assert_user_error(run("models", "get", "iris_clf:doesnotexist"), "iris_clf:doesnotexist")
    assert_user_error(run("models", "get", "never_saved"), "never_saved")


@pytest.mark.parametrize("tag", ["Iris Clf", "iris_clf:v1:extra", "../iris", "iris_clf:"])
def test_get_invalid_tag(tag: str) -> None:
    assert_user_error(run("models", "get", tag))


# ----- delete --------------------------------------------------------------------------------


def test_delete_with_yes(models: list[dosirak.Model]) -> None:
    result = run("models", "delete", "iris_clf:latest", "-y")
    assert result.returncode == 0, result.stderr
    assert f"deleted {models[1].tag}" in result.stdout
    assert not models[1].path.exists()
    remaining = json.loads(run("models", "list", "-o", "json").stdout)
    assert [row["tag"] for row in remaining] == [str(models[2].tag), str(models[0].tag)]


def test_delete_without_yes_on_a_non_terminal_refuses(models: list[dosirak.Model]) -> None:
    result = run("models", "delete", str(models[0].tag))
    assert_user_error(result, "-y")
    assert models[0].path.is_dir()
    assert dosirak.models.get(models[0].tag).tag == models[0].tag


@pytest.mark.parametrize(("answer", "deleted"), [("y\n", True), ("n\n", False)])
def test_delete_asks_on_a_terminal(models: list[dosirak.Model], answer: str,
                                   deleted: bool) -> None:
    status, screen = run_in_terminal("models", "delete", str(models[0].tag), answer=answer)
    assert f"Delete {models[0].tag}?" in screen
    assert "Traceback" not in screen
    assert status == (0 if deleted else 1), screen
    assert models[0].path.exists() is not deleted


@pytest.mark.parametrize(("answer", "deleted"), [("y\n", True), ("n\n", False)])
def test_delete_a_bare_name_asks_then_deletes_every_version(models: list[dosirak.Model],
                                                            answer: str, deleted: bool) -> None:
    # BentoML's meaning of `models delete NAME` (issue 17): every version, after asking.
    status, screen = run_in_terminal("models", "delete", "iris_clf", answer=answer)
    assert "every version of iris_clf (2: " in screen, screen
    assert str(models[1].tag.version) in screen and str(models[0].tag.version) in screen
    assert status == (0 if deleted else 1), screen
    assert models[0].path.exists() is not deleted and models[1].path.exists() is not deleted
    assert models[2].path.exists()  # another name is untouched


def test_delete_a_bare_name_with_yes_and_without_a_terminal(models: list[dosirak.Model]) -> None:
    assert_user_error(run("models", "delete", "iris_clf"), "-y")
    assert models[0].path.exists() and models[1].path.exists()
    result = run("models", "delete", "iris_clf", "-y")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("deleted iris_clf:") == 2
    remaining = json.loads(run("models", "list", "-o", "json").stdout)
    assert [row["tag"] for row in remaining] == [str(models[2].tag)]
    assert_user_error(run("models", "delete", "iris_clf", "-y"), "iris_clf")


def test_delete_unknown_tag(models: list[dosirak.Model]) -> None:
    assert_user_error(run("models", "delete", "iris_clf:nope", "-y"), "iris_clf:nope")


# ----- export / import -----------------------------------------------------------------------


def test_export_then_import_into_another_home(
    models: list[dosirak.Model], iris: tuple[np.ndarray, np.ndarray], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = models[1]
    folder = tmp_path / "exports"
    folder.mkdir()
    result = run("models", "export", "iris_clf:latest", str(folder))
    assert result.returncode == 0, result.stderr
    archive = folder / f"iris_clf-{model.tag.version}.dosirakmodel"
    assert archive.is_file()
    assert str(archive) in result.stdout

    other = tmp_path / "other-home"
    imported = run("models", "import", str(archive), home=other)
    assert imported.returncode == 0, imported.stderr
    assert f"imported {model.tag}" in imported.stdout
    listed = json.loads(run("models", "list", "-o", "json", home=other).stdout)
    assert [row["tag"] for row in listed] == [str(model.tag)]

    # The imported copy lives in the other home and predicts exactly like the original.
    got = json.loads(run("models", "get", str(model.tag), "-o", "json", home=other).stdout)
    assert Path(got["path"]).is_relative_to(other)
    monkeypatch.setenv("DOSIRAK_HOME", str(other))
    copy = dosirak.sklearn.load_model(model.tag)
    np.testing.assert_array_equal(copy.predict_proba(iris[0]),
                                  model.load_model().predict_proba(iris[0]))


def test_export_to_explicit_file_name(models: list[dosirak.Model], tmp_path: Path) -> None:
    dest = tmp_path / "deep" / "dir" / "my_model.dosirakmodel"
    result = run("models", "export", str(models[0].tag), str(dest))
    assert result.returncode == 0, result.stderr
    assert dest.is_file()


def test_import_of_an_existing_tag_needs_force(models: list[dosirak.Model],
                                               tmp_path: Path) -> None:
    archive = tmp_path / "iris.dosirakmodel"
    assert run("models", "export", str(models[0].tag), str(archive)).returncode == 0
    assert_user_error(run("models", "import", str(archive)), str(models[0].tag), "--force")

    forced = run("models", "import", str(archive), "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"imported {models[0].tag}" in forced.stdout
    dosirak.models.get(models[0].tag, verify=True)


def test_import_of_a_bad_archive(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.dosirakmodel"
    garbage.write_bytes(os.urandom(4096))
    assert_user_error(run("models", "import", str(garbage)), "garbage.dosirakmodel")
    assert json.loads(run("models", "list", "-o", "json").stdout) == []


def test_import_of_a_truncated_archive(models: list[dosirak.Model], tmp_path: Path) -> None:
    archive = tmp_path / "full.dosirakmodel"
    assert run("models", "export", str(models[0].tag), str(archive)).returncode == 0
    cut = tmp_path / "cut.dosirakmodel"
    # Cut inside the data: a plain tar cut in its trailing padding would still be complete.
    with tarfile.open(archive) as unpacked:
        largest = max(unpacked.getmembers(), key=lambda member: member.size)
    cut.write_bytes(archive.read_bytes()[: largest.offset_data + largest.size // 2])
    other = tmp_path / "other-home"
    assert_user_error(run("models", "import", str(cut), home=other), "cut.dosirakmodel")
    assert json.loads(run("models", "list", "-o", "json", home=other).stdout) == []


def test_import_of_a_missing_file(tmp_path: Path) -> None:
    assert_user_error(run("models", "import", str(tmp_path / "absent.dosirakmodel")), "absent")


def test_export_of_an_unknown_tag(tmp_path: Path) -> None:
    assert_user_error(run("models", "export", "ghost:latest", str(tmp_path / "out")), "ghost")
    assert not (tmp_path / "out").exists()


def test_export_to_an_impossible_path(models: list[dosirak.Model], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    result = run("models", "export", str(models[0].tag), str(blocker / "x.dosirakmodel"))
    assert_user_error(result, str(blocker))


def test_import_of_a_folder(tmp_path: Path) -> None:
    assert_user_error(run("models", "import", str(tmp_path)), "not a file")


def test_export_without_dest_writes_into_the_current_folder(models: list[dosirak.Model],
                                                            tmp_path: Path) -> None:
    # The seeds run `bentoml models export iris_clf:latest` with no destination.
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = subprocess.run([DOSIRAK, "models", "export", "iris_clf:latest"], cwd=workdir,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in workdir.iterdir()] == [f"iris_clf-{models[1].tag.version}.dosirakmodel"]


def test_keygen_signed_export_and_import_that_requires_the_signature(
    models: list[dosirak.Model], tmp_path: Path
) -> None:
    made = run("models", "keygen", str(tmp_path / "keys"))
    assert made.returncode == 0, made.stderr
    private, public = (tmp_path / "keys" / name for name in ("dosirak-signing.key",
                                                             "dosirak-signing.pub"))
    assert str(private) in made.stdout and oct(private.stat().st_mode & 0o777) == "0o600"
    signed, unsigned = tmp_path / "signed.dosirakmodel", tmp_path / "unsigned.dosirakmodel"
    tag = str(models[0].tag)
    exported = run("models", "export", tag, str(signed), "--sign", str(private))
    assert exported.returncode == 0 and "(signed)" in exported.stdout, exported.stderr
    assert run("models", "export", tag, str(unsigned)).returncode == 0

    other = tmp_path / "other-home"
    assert_user_error(run("models", "import", str(unsigned), "--require-signature", str(public),
                          home=other), "is not signed")
    imported = run("models", "import", str(signed), "--require-signature", str(public),
                   home=other)
    assert imported.returncode == 0, imported.stderr
    assert f"imported {tag} (signature checked)" in imported.stdout


def test_import_max_size_and_the_warning_in_its_help(models: list[dosirak.Model],
                                                     tmp_path: Path) -> None:
    archive = tmp_path / "iris.dosirakmodel"
    assert run("models", "export", str(models[0].tag), str(archive)).returncode == 0
    other = tmp_path / "other-home"
    assert_user_error(run("models", "import", str(archive), "--max-size", "1KiB", home=other),
                      "over the import limit of 1.0 KiB")
    assert run("models", "import", str(archive), "--max-size", "1MiB", home=other).returncode == 0
    bad = run("models", "import", str(archive), "--max-size", "lots")
    assert bad.returncode == 2 and "is not a size" in bad.stderr
    assert "runs code from it" in " ".join(run("models", "import", "--help").stdout.split())
