"""Tags name a stored thing: ``name:version``.

Names and versions are lowercase ``[a-z0-9]([-._a-z0-9]*[a-z0-9])?`` and at most 63 characters.
Generated versions are 16 characters of base32 whose first 11 encode the creation time in
microseconds, so that sorting versions as strings sorts them by creation time.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from dataclasses import dataclass

from dosirak.exceptions import InvalidArgument

MAX_PART_LENGTH = 63
#: What a name looks like (of a model, a bento, a service or a runner, and of a version):
#: lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or digit.
NAME_PATTERN = r"[a-z0-9](?:[-._a-z0-9]*[a-z0-9])?"
NAME = re.compile(NAME_PATTERN)  # NAME.fullmatch(text): is ``text`` a name
_PART = NAME
_ALPHABET = "0123456789abcdefghijklmnopqrstuv"  # base32, sorts like its values
_TIME_CHARS = 11  # 32**11 microseconds is about 1,100 years
_RANDOM_CHARS = 5
_log = logging.getLogger("dosirak")

RULE = (
    "names and versions are lowercase letters, digits, '-', '_' and '.', start and end with a "
    f"letter or digit, and are at most {MAX_PART_LENGTH} characters"
)


def is_valid_part(value: str) -> bool:
    """Whether ``value`` may be a name or a version."""
    # fullmatch, not match with '$': '$' also matches before a trailing newline.
    return len(value) <= MAX_PART_LENGTH and _PART.fullmatch(value) is not None


def _check_part(kind: str, value: str, tag: str) -> None:
    if not is_valid_part(value):
        raise InvalidArgument(f"invalid {kind} {value!r} in tag {tag!r}: {RULE}")


@dataclass(frozen=True, order=True)
class Tag:
    """A parsed ``name:version``; ``version`` is None for "the latest"."""

    name: str
    version: str | None = None

    def __post_init__(self) -> None:
        text = self.name if self.version is None else f"{self.name}:{self.version}"
        _check_part("name", self.name, text)
        if self.version is not None:
            _check_part("version", self.version, text)

    @classmethod
    def parse(cls, value: str | Tag) -> Tag:
        """Parse ``name``, ``name:latest`` or ``name:version``; ``latest`` becomes None."""
        if isinstance(value, Tag):
            return value
        if not isinstance(value, str) or not value:
            raise InvalidArgument(
                f"a tag must be a non-empty string like 'iris_clf:latest', got {value!r}"
            )
        name, sep, version = value.partition(":")
        if sep and not version:
            raise InvalidArgument(f"tag {value!r} ends with ':': write 'name' or 'name:version'")
        if ":" in version:
            raise InvalidArgument(f"tag {value!r} has more than one ':': write 'name:version'")
        if name != name.lower() or version != version.lower():
            raise InvalidArgument(f"tag {value!r} is not lowercase: {RULE}")
        return cls(name, None if version in ("", "latest") else version)

    @classmethod
    def from_taglike(cls, value: str | Tag) -> Tag:
        """BentoML's spelling of ``parse``, forgiving about case: ``"IrisClf:V1"`` becomes
        ``irisclf:v1`` with a warning, as BentoML converts it."""
        if isinstance(value, str):
            value = lowercase(value, "tag")
        return cls.parse(value)

    @classmethod
    def from_str(cls, value: str) -> Tag:
        """``Tag.from_taglike`` for strings (BentoML's name)."""
        if not isinstance(value, str):
            raise InvalidArgument(f"Tag.from_str takes a string like 'iris_clf:v1', got "
                                  f"{value!r}")
        return cls.from_taglike(value)

    def __str__(self) -> str:
        return f"{self.name}:{self.version or 'latest'}"


def lowercase(value: str, what: str) -> str:
    """``value`` lowercased, with a warning when that changed it (BentoML converts names such as
    ``IrisClassifier`` the same way instead of refusing them)."""
    lowered = value.lower()
    if lowered != value:
        _log.warning("converting %s %r to lowercase: %r", what, value, lowered)
    return lowered


def new_version(now_ns: int | None = None) -> str:
    """A fresh version string, unique across processes and sorting by creation time."""
    micros = (time.time_ns() if now_ns is None else now_ns) // 1000
    chars = []
    for _ in range(_TIME_CHARS):
        micros, digit = divmod(micros, 32)
        chars.append(_ALPHABET[digit])
    stamp = "".join(reversed(chars))
    return stamp + "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_CHARS))
