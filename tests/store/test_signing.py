"""Signed archives and the trust an import gives: Ed25519 signatures, adapter modules only."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import cloudpickle
import pytest
import yaml

from dosirak import models, picklable_model
from dosirak.exceptions import InvalidArgument, MissingDependency, UnsafeArchive
from dosirak.store.signing import PAX_RECORD


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return models.generate_signing_keys(tmp_path / "keys")


@pytest.fixture
def signed(keys: tuple[Path, Path], tmp_path: Path) -> Path:
    """A signed archive of ``victim:v1``, which is then deleted from the store."""
    picklable_model.save_model("victim:v1", [1, 2, 3])
    path = Path(models.export_model("victim:v1", str(tmp_path / "signed.dosirakmodel"),
                                    sign=keys[0]))
    models.delete("victim:v1")
    return path


def _members(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(path) as archive:
        return [(m, archive.extractfile(m).read()) for m in archive.getmembers()]  # type: ignore[union-attr]


def _write(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for member, data in members:
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return path


def _edit_info(path: Path, out: Path, **changes: object) -> Path:
    """The archive with model.yaml changed; its signature record is kept as it was."""
    (info_member, info_bytes), *rest = _members(path)
    info = {**yaml.safe_load(info_bytes), **changes}
    return _write(out, [(info_member, yaml.safe_dump(info, sort_keys=False).encode()), *rest])


def test_key_pair_files_and_modes(keys: tuple[Path, Path]) -> None:
    private, public = keys
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()
    with pytest.raises(InvalidArgument, match="exists already; keys are never overwritten"):
        models.generate_signing_keys(private.parent)


def test_a_signed_archive_imports_with_and_without_its_key(
    signed: Path, keys: tuple[Path, Path]
) -> None:
    assert PAX_RECORD in _members(signed)[0][0].pax_headers
    model = models.import_model(str(signed), require_signature=keys[1])
    assert picklable_model.load_model(model) == [1, 2, 3]
    models.delete("victim:v1")
    assert models.import_model(str(signed)).tag == model.tag  # no signature asked for


def test_an_unsigned_archive_is_refused_when_a_signature_is_required(
    keys: tuple[Path, Path], tmp_path: Path
) -> None:
    picklable_model.save_model("victim:v1", [1])
    unsigned = models.export_model("victim:v1", str(tmp_path / "unsigned.dosirakmodel"))
    models.delete("victim:v1")
    with pytest.raises(UnsafeArchive, match="is not signed, and a signature by the key"):
        models.import_model(unsigned, require_signature=keys[1])
    assert models.list() == []
    assert models.import_model(unsigned).tag.name == "victim"  # old archives still import


def test_a_tampered_signed_archive_is_refused(signed: Path, keys: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    tampered = _edit_info(signed, tmp_path / "tampered.dosirakmodel",
                          labels={"owner": "mallory"})
    with pytest.raises(UnsafeArchive, match=r"signature does not match its model\.yaml"):
        models.import_model(str(tampered), require_signature=keys[1])
    assert models.list() == []


def test_a_manifest_recomputed_over_a_swapped_pickle_is_refused_when_signed(
    signed: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    # The attack checksums cannot stop: new payload, manifest recomputed to match it.
    payload = cloudpickle.dumps("owned", protocol=5)
    (info_member, info_bytes), *rest = _members(signed)
    info = yaml.safe_load(info_bytes)
    info["manifest"]["saved_model.pkl"] = {"size": len(payload),
                                           "sha256": hashlib.sha256(payload).hexdigest()}
    swapped = [(member, payload if member.name == "saved_model.pkl" else data)
               for member, data in rest]
    path = _write(tmp_path / "swapped.dosirakmodel", [
        (info_member, yaml.safe_dump(info, sort_keys=False).encode()), *swapped])
    with pytest.raises(UnsafeArchive, match="signature does not match"):
        models.import_model(str(path), require_signature=keys[1])
    assert models.list() == []
    # Without a signature required, checksums alone let it in: what signatures are for.
    assert picklable_model.load_model(models.import_model(str(path))) == "owned"


def test_an_archive_signed_by_another_key_is_refused(signed: Path, tmp_path: Path) -> None:
    _, other_public = models.generate_signing_keys(tmp_path / "other")
    with pytest.raises(UnsafeArchive, match=r"is signed by the key [0-9a-f]{16}, not by"):
        models.import_model(str(signed), require_signature=other_public)


def test_a_bad_key_file_is_a_clear_error(signed: Path, keys: tuple[Path, Path],
                                         tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="is not a PEM public key"):
        models.import_model(str(signed), require_signature=keys[0])
    picklable_model.save_model("m", 1)
    with pytest.raises(InvalidArgument, match="cannot read the private key"):
        models.export_model("m", str(tmp_path / "out"), sign=tmp_path / "missing.key")
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


@pytest.mark.parametrize("module", ["os", "dosirak.config", "tests.evil", "dosirak.frameworks"])
def test_a_model_naming_a_foreign_module_is_refused_at_import_and_load(
    module: str, tmp_path: Path
) -> None:
    model = picklable_model.save_model("victim:v1", [1])
    archive = Path(models.export_model("victim:v1", str(tmp_path / "a.dosirakmodel")))
    edited = _edit_info(archive, tmp_path / "foreign.dosirakmodel", module=module)
    with pytest.raises(UnsafeArchive, match=f"names the module '{module}', which is not one of "
                                            "dosirak's framework adapters"):
        models.import_model(str(edited), overwrite=True)
    # A store edited by hand: loading refuses before importing the module.
    info_path = model.path / "model.yaml"
    info_path.write_text(info_path.read_text().replace("dosirak.picklable_model", module))
    with pytest.raises(InvalidArgument, match="not one of dosirak's framework adapters"):
        models.get("victim:v1").load_model()


def test_without_cryptography_signing_says_how_to_install_it(tmp_path: Path) -> None:
    # A real interpreter in which the package cannot be imported (a None entry in sys.modules).
    code = ("import sys; sys.modules['cryptography'] = None\n"
            "from dosirak import models\n"
            "try:\n    models.generate_signing_keys(sys.argv[1])\n"
            "except Exception as error:\n    print(type(error).__name__, error)\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "k")],
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.startswith(MissingDependency.__name__)
    assert "pip install 'dosirak[signing]'" in done.stdout
