"""The models API on a real store: save, get, list, delete, export, import, verify."""

from __future__ import annotations

import datetime
import enum
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

import dosirak
from dosirak import models
from dosirak.exceptions import InvalidArgument, ModelNotFound, StoreCorrupted
from dosirak.frameworks import picklable_model, sklearn
from dosirak.store import model_store
from dosirak.tag import Tag


def _fitted() -> tuple[LogisticRegression, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    return LogisticRegression().fit(x, y), x


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its bytes (None for directories)."""
    found: dict[str, bytes | None] = {}
    if not root.exists():
        return found
    for directory, _dirs, files in os.walk(root):
        found[os.path.relpath(directory, root)] = None
        for name in files:
            path = Path(directory, name)
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


class Color(enum.IntEnum):
    RED = 1


def test_save_with_labels_metadata_and_custom_objects_round_trips() -> None:
    clf, x = _fitted()
    saved = sklearn.save_model(
        "iris_clf", clf, labels={"owner": "ds-team", "stage": 2},  # label values become text
        metadata={"acc": 0.93, "classes": [0, 1], "nested": {"k": "v"}},
        custom_objects={"scale": 2.5, "names": ["a", "b"]},
        signatures={"predict": {"batchable": True, "batch_dim": 0}},
    )
    model = models.get("iris_clf")
    assert model.tag == saved.tag and model.tag.version
    assert model.info.labels == {"owner": "ds-team", "stage": "2"}
    assert model.info.metadata == {"acc": 0.93, "classes": [0, 1], "nested": {"k": "v"}}
    assert model.info.module == "dosirak.sklearn"
    assert model.info.signatures["predict"].batchable is True
    assert set(model.info.signatures) == {"predict"}
    assert model.custom_objects == {"scale": 2.5, "names": ["a", "b"]}
    assert model.info.size == sum(e["size"] for e in model.info.manifest.values()) > 0
    assert set(model.info.manifest) == {"saved_model.joblib", "custom_objects.pkl"}
    assert model.info.creation_time.tzinfo is not None
    np.testing.assert_array_equal(model.load_model().predict(x), clf.predict(x))
    np.testing.assert_array_equal(sklearn.load_model("iris_clf:latest").predict(x), clf.predict(x))
    model.verify()
    assert models.get(f"iris_clf:{model.tag.version[:12]}", verify=True) == model


def test_save_with_an_explicit_version_and_refuses_to_replace_it() -> None:
    picklable_model.save_model("adder:v1", [1, 2, 3])
    assert models.get("adder:v1").load_model() == [1, 2, 3]
    with pytest.raises(dosirak.exceptions.AlreadyExists, match="exists already"):
        picklable_model.save_model("adder:v1", [4])
    assert models.get("adder:v1").load_model() == [1, 2, 3]
    assert not os.listdir(model_store().root / ".tmp")


def test_list_is_newest_first_and_filters_by_name() -> None:
    first = picklable_model.save_model("a", 1)
    second = picklable_model.save_model("b", 2)
    third = picklable_model.save_model("a", 3)
    assert [m.tag for m in models.list()] == [third.tag, second.tag, first.tag]
    assert [m.tag for m in models.list("a")] == [third.tag, first.tag]
    assert models.list("nothing") == []
    assert models.get("a").tag == third.tag


def test_delete_one_version_and_latest() -> None:
    first = picklable_model.save_model("a", 1)
    second = picklable_model.save_model("a", 2)
    assert models.delete("a:latest") == second.tag
    assert models.get("a").tag == first.tag
    assert models.delete(str(first.tag)) == first.tag
    assert models.list() == []
    assert not (model_store().root / "a").exists()  # the empty name directory goes too
    with pytest.raises(ModelNotFound, match="no model 'a:latest'"):
        models.get("a")
    with pytest.raises(ModelNotFound):
        models.delete("a")


def test_export_to_file_and_directory_then_import_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clf, x = _fitted()
    saved = sklearn.save_model("iris_clf", clf, metadata={"acc": 0.9},
                               custom_objects={"k": 1})
    as_file = models.export_model("iris_clf:latest", str(tmp_path / "out" / "clf.dosirakmodel"))
    assert as_file == str(tmp_path / "out" / "clf.dosirakmodel")
    (tmp_path / "dir").mkdir()
    in_dir = models.export_model("iris_clf", str(tmp_path / "dir"))
    assert in_dir == str(tmp_path / "dir" / f"iris_clf-{saved.tag.version}.dosirakmodel")
    assert sorted(os.listdir(tmp_path / "dir")) == [Path(in_dir).name]  # no partial left

    for index, archive in enumerate([as_file, in_dir]):
        monkeypatch.setenv("DOSIRAK_HOME", str(tmp_path / f"other{index}"))
        assert models.list() == []
        imported = models.import_model(archive)
        assert imported.tag == saved.tag
        assert imported.info.metadata == {"acc": 0.9}
        assert imported.info.manifest == saved.info.manifest
        assert imported.info.creation_time == saved.info.creation_time
        assert imported.custom_objects == {"k": 1}
        imported.verify()
        np.testing.assert_array_equal(imported.load_model().predict(x), clf.predict(x))
        assert [m.tag for m in models.list()] == [saved.tag]


def test_verify_detects_an_edited_file_of_the_same_size() -> None:
    model = picklable_model.save_model("m", b"x" * 1000)
    path = model.path / picklable_model.MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoreCorrupted, match="sha256") as error:
        model.verify()
    assert picklable_model.MODEL_FILE in str(error.value)
    with pytest.raises(StoreCorrupted, match="sha256"):
        models.get("m", verify=True)


def test_get_detects_a_truncated_file_without_hashing() -> None:
    model = picklable_model.save_model("m", b"x" * 1000)
    path = model.path / picklable_model.MODEL_FILE
    with open(path, "r+b") as stream:
        stream.truncate(10)
    with pytest.raises(StoreCorrupted, match="truncated") as error:
        models.get("m")
    assert "10 bytes" in str(error.value) and "delete it" in str(error.value)


def test_get_detects_missing_and_extra_files() -> None:
    model = picklable_model.save_model("m", 1, custom_objects={"a": 1})
    (model.path / "stray.txt").write_text("hi")
    with pytest.raises(StoreCorrupted, match=r"not in its manifest.*stray\.txt"):
        models.get("m")
    (model.path / "stray.txt").unlink()
    (model.path / "custom_objects.pkl").unlink()
    with pytest.raises(StoreCorrupted, match=r"missing custom_objects\.pkl"):
        models.get("m")


def test_numpy_and_other_scalar_subclasses_are_stored_as_plain_values() -> None:
    metadata = {
        "f64": np.float64(0.25), "f32": np.float32(0.5), "i64": np.int64(7),
        "bool": np.bool_(True), "text": np.str_("hi"), "array": np.arange(3),
        "zero_d": np.array(1.5), "color": Color.RED, np.str_("key"): 1,
        "when": datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC),
        "tuple": (np.int32(1), 2.0),
    }
    model = picklable_model.save_model("m", 1, metadata=metadata)
    raw = (model.path / "model.yaml").read_text()
    assert "!!python" not in raw and "numpy" not in raw
    stored = models.get("m").info.metadata
    assert stored == {"f64": 0.25, "f32": 0.5, "i64": 7, "bool": True, "text": "hi",
                      "array": [0, 1, 2], "zero_d": 1.5, "color": 1, "key": 1,
                      "when": datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC),
                      "tuple": [1, 2.0]}
    for key in ("f64", "f32", "zero_d"):
        assert type(stored[key]) is float
    for key in ("i64", "color"):
        assert type(stored[key]) is int
    assert type(stored["text"]) is str and type(stored["bool"]) is bool
    assert yaml.safe_load(raw)["metadata"]["f64"] == 0.25


@pytest.mark.parametrize("bad, where", [
    ({"obj": object()}, "metadata.obj"),
    ({"nested": {"s": {1, 2}}}, "metadata.nested.s"),
    ({"list": [1, b"bytes"]}, "metadata.list[1]"),
])
def test_unstorable_metadata_fails_before_anything_is_written(
    bad: dict, where: str, dosirak_home: Path
) -> None:
    picklable_model.save_model("m", 1)
    before = _tree(dosirak_home)
    with pytest.raises(InvalidArgument, match="cannot be stored as metadata") as error:
        picklable_model.save_model("m", 2, metadata=bad)
    assert where in str(error.value) and "custom_objects" in str(error.value)
    assert _tree(dosirak_home) == before


def test_bad_labels_and_tags_fail_before_anything_is_written(dosirak_home: Path) -> None:
    with pytest.raises(InvalidArgument, match="labels must be a dict"):
        picklable_model.save_model("m", 1, labels=["a"])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="lowercase"):
        picklable_model.save_model("Bad Name", 1)
    assert not (dosirak_home / "models" / "m").exists()
    assert not (dosirak_home / "models" / "Bad Name").exists()


def test_a_failing_writer_leaves_nothing_behind() -> None:
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle me")

    with pytest.raises(RuntimeError, match="cannot pickle me"):
        picklable_model.save_model("m", Unpicklable())
    assert models.list() == []
    assert os.listdir(model_store().root / ".tmp") == []


def test_get_accepts_tag_objects_and_models() -> None:
    saved = picklable_model.save_model("m", 1)
    assert models.get(Tag("m")) == saved
    assert models.get(saved) is saved
    with pytest.raises(InvalidArgument, match=r"was saved with dosirak\.picklable_model"):
        sklearn.get("m")  # saved by another adapter


def test_loading_a_model_deleted_after_get_is_model_not_found() -> None:
    # The window of a load racing a delete (14 bare FileNotFoundErrors in 282k loads), held open.
    picklable_model.save_model("gone", b"weights", custom_objects={"k": 1})
    first, second = models.get("gone"), models.get("gone")
    models.delete("gone")
    with pytest.raises(ModelNotFound, match="was deleted while it was being loaded"):
        first.load_model()
    with pytest.raises(ModelNotFound, match="was deleted while it was being loaded"):
        second.custom_objects  # noqa: B018 - the property loads the file


def test_an_adapters_load_model_racing_a_delete_is_model_not_found() -> None:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression().fit(np.array([[0.0], [1.0]]), [0, 1])
    sklearn.save_model("gone", clf)
    for load in (sklearn.load_model, picklable_model.load_model):
        if load is picklable_model.load_model:
            picklable_model.save_model("gone", b"weights")
        got = models.get("gone")
        models.delete("gone")
        with pytest.raises(ModelNotFound, match="was deleted while it was being loaded"):
            load(got)
