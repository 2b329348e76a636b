"""Tags: the naming rule, parsing, generated versions, and resolution against a real store."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dosirak.exceptions import InvalidArgument, ModelNotFound
from dosirak.store import model_store
from dosirak.tag import MAX_PART_LENGTH, Tag, new_version

RULE_WORDS = ("lowercase letters, digits", f"at most {MAX_PART_LENGTH} characters")
VALID_PART = re.compile(r"[a-z0-9]([-._a-z0-9]*[a-z0-9])?")


def assert_states_rule(error: pytest.ExceptionInfo[InvalidArgument]) -> None:
    for words in RULE_WORDS:
        assert words in str(error.value)


@pytest.mark.parametrize("text", ["iris_clf", "a", "0", "a-b.c_d", "x" * MAX_PART_LENGTH,
                                  "model.v2", "9lives"])
def test_valid_names_and_versions(text: str) -> None:
    assert Tag.parse(text) == Tag(text, None)
    assert Tag.parse(f"{text}:{text}") == Tag(text, text)


@pytest.mark.parametrize("text", [
    "Iris", "iris clf", "-iris", "iris-", "_x", "x.", "x" * (MAX_PART_LENGTH + 1), "ir/is",
    "..", "é", "a\n", "\na", "a\x00", "a\tb",
])
def test_invalid_names_state_the_rule(text: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        Tag.parse(text)
    assert_states_rule(error)
    with pytest.raises(InvalidArgument) as error:
        Tag.parse(f"iris:{text}")
    assert_states_rule(error)
    with pytest.raises(InvalidArgument) as error:
        Tag(text)
    assert_states_rule(error)


@pytest.mark.parametrize("text, words", [
    ("", "non-empty"), ("iris:", "ends with ':'"), ("a:b:c", "more than one ':'"),
    (":v1", "lowercase letters"),
])
def test_malformed_tags_say_how_to_write_one(text: str, words: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(words)):
        Tag.parse(text)


def test_non_string_tag_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="non-empty string"):
        Tag.parse(42)  # type: ignore[arg-type]


@given(st.from_regex(VALID_PART, fullmatch=True).filter(lambda s: len(s) <= MAX_PART_LENGTH))
def test_every_part_matching_the_rule_is_accepted(part: str) -> None:
    assert Tag.parse(f"{part}:{part}") == Tag(part, part)


@given(st.text(max_size=70))
def test_anything_accepted_matches_the_rule(text: str) -> None:
    try:
        tag = Tag.parse(text)
    except InvalidArgument:
        return
    for part in (tag.name, tag.version):
        if part is not None:
            assert VALID_PART.fullmatch(part) and len(part) <= MAX_PART_LENGTH


def test_latest_means_no_version_and_prints_as_latest() -> None:
    assert Tag.parse("iris") == Tag.parse("iris:latest") == Tag("iris")
    assert str(Tag("iris")) == "iris:latest"
    assert str(Tag("iris", "v1")) == "iris:v1"


def test_generated_versions_are_valid_unique_and_sorted() -> None:
    versions = [new_version() for _ in range(20_000)]
    assert len(set(versions)) == len(versions)
    assert versions == sorted(versions)
    for version in versions[:100]:
        Tag("x", version)


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=0, max_value=2**62), min_size=2, max_size=20, unique=True))
def test_versions_sort_like_their_creation_times(times_ns: list[int]) -> None:
    by_micro = {}
    for ns in times_ns:
        by_micro.setdefault(ns // 1000, ns)
    ordered = sorted(by_micro.values())
    versions = [new_version(ns) for ns in ordered]
    assert versions == sorted(versions)


# ----- resolution against a real store --------------------------------------------------------


def _save(name: str, version: str, created: str) -> None:
    store = model_store()
    draft = store.new_draft()
    (draft / "weights.bin").write_bytes(version.encode())
    store.commit(draft, Tag(name, version), {"name": name, "version": version,
                                             "creation_time": created, "manifest": {}})


def test_name_and_latest_resolve_to_newest_by_creation_time() -> None:
    # The newest by creation time is not the greatest version string: resolution must use time.
    _save("iris", "zzz", "2024-01-01T00:00:00+00:00")
    _save("iris", "aaa", "2024-01-03T00:00:00+00:00")
    _save("iris", "mmm", "2024-01-02T00:00:00.500000+00:00")
    store = model_store()
    assert store.resolve("iris") == Tag("iris", "aaa")
    assert store.resolve("iris:latest") == Tag("iris", "aaa")


def test_latest_compares_times_not_strings() -> None:
    # 10:00 in UTC+9 is 01:00 UTC, earlier than 02:00 UTC although it sorts later as text.
    _save("iris", "seoul", "2024-01-01T10:00:00+09:00")
    _save("iris", "london", "2024-01-01T02:00:00+00:00")
    assert model_store().resolve("iris:latest") == Tag("iris", "london")


def test_unique_prefix_resolves_and_exact_version_wins() -> None:
    _save("iris", "abc123", "2024-01-01T00:00:00+00:00")
    _save("iris", "abd456", "2024-01-02T00:00:00+00:00")
    _save("iris", "ab", "2024-01-03T00:00:00+00:00")
    store = model_store()
    assert store.resolve("iris:abc") == Tag("iris", "abc123")
    assert store.resolve("iris:abd4") == Tag("iris", "abd456")
    assert store.resolve("iris:ab") == Tag("iris", "ab")  # an exact match is never ambiguous


def test_ambiguous_prefix_fails_clearly() -> None:
    _save("iris", "abc123", "2024-01-01T00:00:00+00:00")
    _save("iris", "abd456", "2024-01-02T00:00:00+00:00")
    with pytest.raises(InvalidArgument) as error:
        model_store().resolve("iris:a")
    message = str(error.value)
    assert "ambiguous" in message and "abc123" in message and "abd456" in message
    assert "more characters" in message


def test_unknown_name_or_version_is_not_found() -> None:
    _save("iris", "abc123", "2024-01-01T00:00:00+00:00")
    store = model_store()
    for tag in ("nope", "nope:latest", "iris:x", "iris:abc1234"):
        with pytest.raises(ModelNotFound, match="dosirak models list"):
            store.resolve(tag)
