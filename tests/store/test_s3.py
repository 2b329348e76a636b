"""Export and import through ``s3://`` URLs against a real S3 server (SeaweedFS on 127.0.0.1)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import dosirak
from dosirak.exceptions import DosirakError, UnsafeArchive

from .conftest import S3Server

SUFFIX = ".dosirakmodel"
DOSIRAK = str(Path(sys.executable).parent / "dosirak")


@pytest.fixture
def iris() -> tuple[np.ndarray, np.ndarray]:
    data = load_iris()
    return data.data, data.target


@pytest.fixture
def saved(iris: tuple[np.ndarray, np.ndarray]) -> dosirak.Model:
    features, target = iris
    clf = LogisticRegression(max_iter=300).fit(features, target)
    return dosirak.sklearn.save_model(
        "iris_clf", clf, labels={"owner": "s3-tests"}, metadata={"acc": 0.97},
        custom_objects={"classes": ["setosa", "versicolor", "virginica"]},
    )


def _switch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> Path:
    home = tmp_path / name
    monkeypatch.setenv("DOSIRAK_HOME", str(home))
    assert dosirak.models.list() == []
    return home


def _assert_same_model(original: dosirak.Model, features: np.ndarray) -> None:
    imported = dosirak.models.get(original.tag, verify=True)
    assert imported.tag == original.tag
    assert imported.info.labels == {"owner": "s3-tests"}
    assert imported.info.metadata == {"acc": 0.97}
    assert imported.custom_objects == {"classes": ["setosa", "versicolor", "virginica"]}
    expected = original.load_model().predict_proba(features)
    np.testing.assert_array_equal(imported.load_model().predict_proba(features), expected)


def test_export_into_directory_url_then_import_into_empty_home(
    s3: S3Server, s3_prefix: str, saved: dosirak.Model, iris: tuple[np.ndarray, np.ndarray],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    where = dosirak.models.export_model("iris_clf:latest", f"{s3_prefix}/models/")
    assert where == f"{s3_prefix}/models/iris_clf-{saved.tag.version}{SUFFIX}"
    fs = s3.filesystem()
    assert fs.ls(f"{s3_prefix}/models/") == [where.removeprefix("s3://")]
    assert fs.size(where) > 0

    _switch_home(tmp_path, monkeypatch, "other-home")
    imported = dosirak.models.import_model(where)
    assert imported.tag == saved.tag
    _assert_same_model(saved, iris[0])


@pytest.mark.parametrize("key", ["shared/iris.dosirakmodel", "shared/iris"])
def test_export_to_explicit_key(
    s3: S3Server, s3_prefix: str, saved: dosirak.Model, iris: tuple[np.ndarray, np.ndarray],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str,
) -> None:
    where = dosirak.models.export_model(saved.tag, f"{s3_prefix}/{key}")
    # A key without a suffix gets one, as a local path does.
    assert where == f"{s3_prefix}/shared/iris{SUFFIX}"
    assert s3.filesystem().exists(where)

    _switch_home(tmp_path, monkeypatch, "other-home")
    dosirak.models.import_model(where)
    _assert_same_model(saved, iris[0])


def test_existing_prefix_without_slash_counts_as_a_directory(
    s3: S3Server, s3_prefix: str, saved: dosirak.Model,
) -> None:
    s3.filesystem().pipe(f"{s3_prefix}/models/README", b"archives of the team\n")
    where = dosirak.models.export_model(saved.tag, f"{s3_prefix}/models")
    assert where == f"{s3_prefix}/models/iris_clf-{saved.tag.version}{SUFFIX}"
    assert s3.filesystem().exists(where)


def test_storage_options_reach_the_server_without_environment(
    s3: S3Server, s3_prefix: str, saved: dosirak.Model, iris: tuple[np.ndarray, np.ndarray],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in s3.env:
        monkeypatch.delenv(name)
    options = s3.storage_options
    where = dosirak.models.export_model(saved.tag, f"{s3_prefix}/opts/", storage_options=options)
    assert s3.filesystem().exists(where)

    _switch_home(tmp_path, monkeypatch, "other-home")
    dosirak.models.import_model(where, storage_options=options)
    _assert_same_model(saved, iris[0])


def test_import_refuses_an_existing_tag_unless_overwrite(
    s3: S3Server, s3_prefix: str, saved: dosirak.Model,
) -> None:
    where = dosirak.models.export_model(saved.tag, f"{s3_prefix}/")
    with pytest.raises(dosirak.exceptions.AlreadyExists, match="overwrite=True"):
        dosirak.models.import_model(where)
    assert dosirak.models.import_model(where, overwrite=True).tag == saved.tag


def test_failed_export_leaves_no_object_behind(s3: S3Server, s3_prefix: str,
                                               saved: dosirak.Model) -> None:
    def interrupted(_written: int) -> None:
        raise KeyboardInterrupt

    target = f"{s3_prefix}/broken{SUFFIX}"
    with pytest.raises(KeyboardInterrupt):
        dosirak.models.export_model(saved.tag, target, progress=interrupted)
    assert not s3.filesystem().exists(target)


def test_missing_remote_archive_is_a_clear_error(s3: S3Server, s3_prefix: str) -> None:
    missing = f"{s3_prefix}/nothing-here{SUFFIX}"
    with pytest.raises(DosirakError, match="nothing-here"):
        dosirak.models.import_model(missing)


# ----- hostile archives ----------------------------------------------------------------------


def _archive(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for member, data in members:
            archive.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return buffer.getvalue()


def _regular(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    member = tarfile.TarInfo(name)
    member.size = len(data)
    return member, data


def _genuine_members(saved: dosirak.Model, tmp_path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    """The members of a real export, read back so the hostile ones can be built from them."""
    path = dosirak.models.export_model(saved.tag, str(tmp_path / "genuine"), compression="none")
    with tarfile.open(path) as archive:
        return [(member, archive.extractfile(member).read()) for member in archive]  # type: ignore[union-attr]


def _traversal(members: list[tuple[tarfile.TarInfo, bytes]]) -> list[tuple[tarfile.TarInfo, bytes]]:
    return [*members, _regular("../../escaped.txt", b"owned\n")]


def _symlink(members: list[tuple[tarfile.TarInfo, bytes]]) -> list[tuple[tarfile.TarInfo, bytes]]:
    link = tarfile.TarInfo("saved_model.joblib")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return [members[0], (link, b"")]


def _tampered(members: list[tuple[tarfile.TarInfo, bytes]]) -> list[tuple[tarfile.TarInfo, bytes]]:
    tampered = []
    for member, data in members:
        if member.name == "saved_model.joblib":
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        tampered.append((member, data))
    return tampered


@pytest.mark.parametrize(("make", "reason"), [
    (_traversal, "climbs out"),
    (_symlink, "symbolic link"),
    (_tampered, "sha256"),
])
def test_hostile_archive_on_s3_is_refused(
    s3: S3Server, s3_prefix: str, saved: dosirak.Model, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, make, reason: str,
) -> None:
    hostile = _archive(make(_genuine_members(saved, tmp_path)))
    url = f"{s3_prefix}/hostile{SUFFIX}"
    s3.filesystem().pipe(url, hostile)

    home = _switch_home(tmp_path, monkeypatch, "victim-home")
    with pytest.raises(UnsafeArchive, match=reason):
        dosirak.models.import_model(url)
    assert dosirak.models.list() == []
    escaped = [path for path in tmp_path.rglob("escaped.txt")]
    assert escaped == []
    assert not (home / "models" / "iris_clf").exists()


# ----- the CLI -------------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOSIRAK, *args], env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)


def test_cli_export_and_import_with_s3_urls(
    s3: S3Server, s3_prefix: str, saved: dosirak.Model, iris: tuple[np.ndarray, np.ndarray],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = dict(os.environ)  # carries DOSIRAK_HOME and the AWS_* settings of the fixture
    exported = _cli("models", "export", "iris_clf:latest", f"{s3_prefix}/cli/", env=env)
    assert exported.returncode == 0, exported.stderr
    where = f"{s3_prefix}/cli/iris_clf-{saved.tag.version}{SUFFIX}"
    assert where in exported.stdout
    assert s3.filesystem().exists(where)

    refused = _cli("models", "import", where, env=env)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: ") and "Traceback" not in refused.stderr
    assert "--force" in refused.stderr

    _switch_home(tmp_path, monkeypatch, "cli-home")
    env["DOSIRAK_HOME"] = os.environ["DOSIRAK_HOME"]
    imported = _cli("models", "import", where, env=env)
    assert imported.returncode == 0, imported.stderr
    assert f"imported {saved.tag}" in imported.stdout
    _assert_same_model(saved, iris[0])

    missing = _cli("models", "import", f"{s3_prefix}/cli/absent{SUFFIX}", env=env)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: ") and "Traceback" not in missing.stderr
