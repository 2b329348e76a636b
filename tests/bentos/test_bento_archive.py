"""``.bento`` archives and ``verify``: real bentos built from examples/iris, exported to files and
imported into other homes (DOSIRAK_HOME switched in-process; the CLI runs as real processes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn import datasets
from sklearn.dummy import DummyClassifier

import dosirak
from dosirak.exceptions import AlreadyExists, UnsafeArchive
from live_server import Served

DOSIRAK = str(Path(sys.executable).parent / "dosirak")
ROW = "[[5.1,3.5,1.4,0.2]]"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOSIRAK, *args], capture_output=True, text=True, cwd=cwd,
                          env=os.environ.copy(), timeout=120, stdin=subprocess.DEVNULL)


def _fresh_home(monkeypatch: pytest.MonkeyPatch, path: Path) -> Path:
    monkeypatch.setenv("DOSIRAK_HOME", str(path))
    return path


def _versions(home: Path, kind: str, name: str) -> list[str]:
    folder = home / kind / name
    return sorted(os.listdir(folder)) if folder.is_dir() else []


@pytest.fixture
def bento(iris_project: Path) -> dosirak.bentos.Bento:
    return dosirak.bentos.build(iris_project)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    directory = tmp_path / "work"
    directory.mkdir()
    return directory


def test_export_import_into_a_fresh_home_then_serve_and_run_by_tag(
        bento: dosirak.bentos.Bento, workdir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    done = _cli("export", str(bento.tag), cwd=workdir)
    assert done.returncode == 0, done.stderr
    archive = workdir / f"{bento.tag.name}-{bento.tag.version}.bento"
    assert archive.is_file()
    home = _fresh_home(monkeypatch, tmp_path / "fresh")
    done = _cli("import", str(archive), cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert _versions(home, "bentos", "iris_classifier") == [bento.tag.version]
    assert dosirak.bentos.get("iris_classifier").digest == bento.digest
    done = _cli("verify", str(bento.tag), cwd=workdir)
    assert done.returncode == 0, done.stderr
    with Served(["iris_classifier:latest"], cwd=workdir) as server:
        status, _, answer = server.post("/classify", [[5.1, 3.5, 1.4, 0.2]])
        assert (status, answer) == (200, [0])
    done = _cli("run", str(bento.tag), "classify", "--input", ROW, cwd=workdir)
    assert (done.returncode, done.stdout.strip()) == (0, "[0]"), done.stderr
    done = _cli("import", str(archive), cwd=workdir)  # once is enough
    assert done.returncode == 1 and "--force" in done.stderr


def test_two_bentos_sharing_a_model_store_it_once_in_either_order(
        bento: dosirak.bentos.Bento, iris_project: Path, workdir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    bentofile = iris_project / "bentofile.yaml"
    bentofile.write_text(bentofile.read_text().replace("name: iris_classifier", "name: iris_twin"))
    twin = dosirak.bentos.build(iris_project)
    assert twin.models == bento.models
    archives = [dosirak.bentos.export_bento(b.tag, str(workdir) + "/") for b in (bento, twin)]
    model = dosirak.models.get(bento.models[0]["tag"]).tag
    for order in (archives, archives[::-1]):
        home = _fresh_home(monkeypatch, tmp_path / f"home-{Path(order[0]).name}")
        dosirak.bentos.import_bento(order[0])
        model_yaml = home / "models" / model.name / model.version / "model.yaml"
        first_inode = model_yaml.stat().st_ino
        dosirak.bentos.import_bento(order[1])
        assert _versions(home, "models", model.name) == [model.version]
        assert model_yaml.stat().st_ino == first_inode  # reused, not rewritten
        for tag in (bento.tag, twin.tag):
            assert dosirak.bentos.verify(tag) == []
            done = _cli("run", str(tag), "classify", "--input", ROW, cwd=workdir)
            assert (done.returncode, done.stdout.strip()) == (0, "[0]"), done.stderr


def test_a_model_the_store_holds_is_not_read_again(
        bento: dosirak.bentos.Bento, workdir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Import skips the bytes of a model the store holds with the digest the bento records: the
    stored files stay as they are, and the archive's copy is not even read (here it is garbage
    of the same length, which unpacking would refuse)."""
    archive = Path(dosirak.bentos.export_bento(bento.tag, str(workdir / "iris.bento")))
    model = dosirak.models.get(bento.models[0]["tag"])
    weights = max((p for p in model.path.rglob("*") if p.name != "model.yaml"),
                  key=lambda p: p.stat().st_size)
    original = weights.read_bytes()
    data = archive.read_bytes()
    assert data.count(original) == 1
    at = data.index(original)
    garbage = bytes(b ^ 0xFF for b in original)
    archive.write_bytes(data[:at] + garbage + data[at + len(original):])
    model_archive = dosirak.models.export_model(model.tag, str(workdir) + "/")

    home = _fresh_home(monkeypatch, tmp_path / "fresh")
    with pytest.raises(UnsafeArchive, match="sha256"):  # a store without it reads it: refused
        dosirak.bentos.import_bento(str(archive))
    dosirak.models.import_model(model_archive)
    stored = home / "models" / model.tag.name / model.tag.version
    before = {p: p.stat().st_ino for p in stored.rglob("*")}
    imported = dosirak.bentos.import_bento(str(archive))
    assert {p: p.stat().st_ino for p in stored.rglob("*")} == before
    assert dosirak.bentos.verify(imported.tag) == []
    assert [str(b.tag) for b in dosirak.bentos.list()] == [str(bento.tag)]


def test_verify_reports_each_tampered_file(bento: dosirak.bentos.Bento, workdir: Path) -> None:
    assert dosirak.bentos.verify(bento.tag) == []
    service = bento.path / "src" / "service.py"
    service.write_bytes(service.read_bytes().replace(b"svc", b"svd", 1))  # same size
    model = dosirak.models.get(bento.models[0]["tag"])
    weights = next(p for p in sorted(model.path.rglob("*")) if p.is_file()
                   and p.name != "model.yaml")
    weights.write_bytes(weights.read_bytes() + b"\0")
    problems = dosirak.bentos.verify(bento.tag)
    assert len(problems) == 2
    assert f"bento {bento.tag}: src/service.py does not match" in problems[0]
    assert f"model {model.tag}: {weights.relative_to(model.path).as_posix()}" in problems[1]
    done = _cli("verify", "iris_classifier", cwd=workdir)
    assert done.returncode == 1
    assert done.stderr.splitlines() == problems


@pytest.mark.parametrize("part", ["bento source", "model file"])
def test_a_tampered_archive_is_refused_and_leaves_nothing(
        part: str, bento: dosirak.bentos.Bento, workdir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    archive = Path(dosirak.bentos.export_bento(bento.tag, str(workdir / "iris.bento")))
    if part == "bento source":
        original = (bento.path / "src" / "service.py").read_bytes()
    else:
        model = dosirak.models.get(bento.models[0]["tag"])
        original = max((p for p in model.path.rglob("*") if p.name != "model.yaml"),
                       key=lambda p: p.stat().st_size).read_bytes()[:256]
    data = archive.read_bytes()
    assert data.count(original) == 1
    at = data.index(original) + len(original) // 2
    archive.write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1:])
    home = _fresh_home(monkeypatch, tmp_path / "fresh")
    with pytest.raises(UnsafeArchive, match="sha256"):
        dosirak.bentos.import_bento(str(archive))
    assert dosirak.bentos.list() == []
    assert not dosirak.models.list()
    leftovers = [p for p in home.rglob("*") if p.is_file()]
    assert leftovers == []


def test_an_archive_holding_a_link_is_refused(bento: dosirak.bentos.Bento, workdir: Path,
                                              tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import tarfile

    archive = Path(dosirak.bentos.export_bento(bento.tag, str(workdir) + "/"))
    hostile = workdir / "hostile.bento"
    with tarfile.open(archive) as source, tarfile.open(hostile, "w") as target:
        first = source.next()
        assert first is not None
        target.addfile(first, source.extractfile(first))
        link = tarfile.TarInfo("models/x-y.dosirakmodel")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        target.addfile(link)
    _fresh_home(monkeypatch, tmp_path / "fresh")
    with pytest.raises(UnsafeArchive, match="symbolic link"):
        dosirak.bentos.import_bento(str(hostile))
    assert dosirak.bentos.list() == []


def test_a_model_of_the_same_tag_and_another_digest_needs_force(
        bento: dosirak.bentos.Bento, workdir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    archive = dosirak.bentos.export_bento(bento.tag, str(workdir) + "/")
    model = bento.models[0]
    home = _fresh_home(monkeypatch, tmp_path / "fresh")
    iris = datasets.load_iris()
    always_two = DummyClassifier(strategy="constant", constant=2).fit(iris.data, iris.target)
    dosirak.sklearn.save_model(model["tag"], always_two,
                               signatures={"predict": {"batchable": True}})
    from dosirak.bentos.build import manifest_digest

    stored = manifest_digest(dosirak.models.get(model["tag"]).info.manifest)
    with pytest.raises(AlreadyExists) as refused:
        dosirak.bentos.import_bento(archive)
    assert model["tag"] in str(refused.value)
    assert stored[:12] in str(refused.value) and model["digest"][:12] in str(refused.value)
    assert dosirak.bentos.list() == []
    done = _cli("import", archive, cwd=workdir)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert stored[:12] in done.stderr and model["digest"][:12] in done.stderr
    done = _cli("import", archive, "--force", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert dosirak.bentos.verify(bento.tag) == []
    shutil.rmtree(home / "bentos")
    assert manifest_digest(dosirak.models.get(model["tag"]).info.manifest) == model["digest"]


def test_signed_bento_archives(bento: dosirak.bentos.Bento, workdir: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """export --sign / import --require-signature: the signature over bento.yaml binds the
    sources and the models (by digest); unsigned, wrongly signed and altered archives are
    refused before anything is stored."""
    private, public = dosirak.models.generate_signing_keys(tmp_path / "keys")
    _, stranger = dosirak.models.generate_signing_keys(tmp_path / "other-keys")
    done = _cli("export", str(bento.tag), str(workdir / "signed.bento"), "--sign", str(private),
                cwd=workdir)
    assert done.returncode == 0 and "(signed)" in done.stdout, done.stderr
    unsigned = dosirak.bentos.export_bento(bento.tag, str(workdir / "unsigned.bento"))
    signed = workdir / "signed.bento"
    data = signed.read_bytes()
    altered = workdir / "altered.bento"  # a label edited in the signed bento.yaml, same size
    assert data.count(b"stage: demo") == 1
    altered.write_bytes(data.replace(b"stage: demo", b"stage: demO"))

    _fresh_home(monkeypatch, tmp_path / "fresh")
    for archive, key, error in [(unsigned, public, "not signed"),
                                (signed, stranger, "is signed by the key"),
                                (altered, public, "does not match its bento.yaml")]:
        done = _cli("import", str(archive), "--require-signature", str(key), cwd=workdir)
        assert done.returncode == 1 and error in done.stderr, done.stderr
        assert dosirak.bentos.list() == [] and not dosirak.models.list()
    done = _cli("import", str(signed), "--require-signature", str(public), cwd=workdir)
    assert done.returncode == 0 and "(signature checked)" in done.stdout, done.stderr
    assert dosirak.bentos.verify(bento.tag) == []
    done = _cli("import", unsigned, "--force", cwd=workdir)  # no key asked: no check
    assert done.returncode == 0, done.stderr


def test_import_max_size(bento: dosirak.bentos.Bento, workdir: Path, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    archive = dosirak.bentos.export_bento(bento.tag, str(workdir) + "/")
    _fresh_home(monkeypatch, tmp_path / "fresh")
    done = _cli("import", archive, "--max-size", "1KiB", cwd=workdir)
    assert done.returncode == 1 and "limit" in done.stderr and len(done.stderr.splitlines()) == 1
    assert dosirak.bentos.list() == []
    done = _cli("import", archive, "--max-size", "lots", cwd=workdir)
    assert done.returncode == 2 and "'lots' is not a size" in done.stderr


def test_export_to_and_import_from_an_fsspec_url(bento: dosirak.bentos.Bento, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url = dosirak.bentos.export_bento(bento.tag, "memory://bentos/")
    assert url == f"memory://bentos/{bento.tag.name}-{bento.tag.version}.bento"
    _fresh_home(monkeypatch, tmp_path / "fresh")
    imported = dosirak.bentos.import_bento(url)
    assert (imported.tag, imported.digest) == (bento.tag, bento.digest)
    assert dosirak.bentos.verify(bento.tag) == []


def test_a_big_model_goes_through_the_kernel_copy_and_is_checked(
        workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model member bigger than one chunk, nested in the .bento, is copied by the kernel from
    the archive file and hashed from the written file: it arrives whole, and one flipped byte
    in it is still refused."""
    import dosirak.picklable_model

    blob = os.urandom(3 << 20)
    dosirak.picklable_model.save_model("big_blob", blob)
    project = tmp_path / "big"
    project.mkdir()
    (project / "service.py").write_text("import dosirak\nsvc = dosirak.Service('big')\n")
    (project / "bentofile.yaml").write_text("service: service:svc\nname: big\n"
                                            "models: [big_blob:latest]\n")
    built = dosirak.bentos.build(project)
    archive = Path(dosirak.bentos.export_bento(built.tag, str(workdir / "big.bento")))
    data = archive.read_bytes()
    at = data.index(blob[:4096]) + len(blob) // 2
    flipped = workdir / "flipped.bento"
    flipped.write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1:])

    _fresh_home(monkeypatch, tmp_path / "fresh")
    with pytest.raises(UnsafeArchive, match="sha256"):
        dosirak.bentos.import_bento(str(flipped))
    assert dosirak.bentos.list() == [] and not dosirak.models.list()
    dosirak.bentos.import_bento(str(archive))
    assert dosirak.picklable_model.load_model("big_blob:latest") == blob
    assert dosirak.bentos.verify(built.tag) == []
