"""Label selectors, as Kubernetes writes them: ``stage=prod,team in (a,b),!deprecated``.

Requirements are joined by commas and must all hold:

- ``key=value`` (or ``==``), ``key!=value`` (true also where the key is absent)
- ``key in (v1,v2)``, ``key notin (v1,v2)`` (true also where the key is absent)
- ``key`` (the label is set), ``!key`` (it is not)

Each becomes an ``EXISTS`` (or ``NOT EXISTS``) over the indexed ``version_labels`` table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, exists, not_, select

from dosirak.exceptions import InvalidArgument
from dosirak.hub.db import Version, VersionLabel

_WORD = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_REQUIREMENT = re.compile(
    rf"\s*(?:(?P<not>!)\s*(?P<absent>{_WORD})"
    rf"|(?P<key>{_WORD})\s*(?:(?P<op>==|=|!=)\s*(?P<value>{_WORD}|)"
    rf"|\s+(?P<set>in|notin)\s*\((?P<values>[^()]*)\))?)\s*(?:,|$)")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "in", "notin", "exists", "absent"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "absent":
            return not present
        inside = present and labels[self.key] in self.values
        return inside if self.op == "in" else not inside


def parse(text: str) -> list[Requirement]:
    """The requirements of a selector; an InvalidArgument says where it stops making sense."""
    requirements: list[Requirement] = []
    position, text = 0, text.strip()
    while position < len(text):
        match = _REQUIREMENT.match(text, position)
        if match is None or match.end() == position:
            raise InvalidArgument(
                f"label selector {text!r} cannot be read at {text[position:][:20]!r}; write "
                "requirements like 'stage=prod', 'team in (a,b)', 'key!=v', 'key' or '!key', "
                "joined by commas")
        position = match.end()
        if match["absent"]:
            requirements.append(Requirement(match["absent"], "absent"))
        elif match["op"]:
            op = "notin" if match["op"] == "!=" else "in"
            requirements.append(Requirement(match["key"], op, (match["value"],)))
        elif match["set"]:
            values = tuple(v.strip() for v in match["values"].split(",") if v.strip())
            if not values or not all(re.fullmatch(_WORD, v) for v in values):
                raise InvalidArgument(f"label selector {text!r}: '{match['key']} "
                                      f"{match['set']} (...)' needs a list of values like (a,b)")
            requirements.append(Requirement(match["key"], match["set"], values))
        else:
            requirements.append(Requirement(match["key"], "exists"))
    return requirements


def condition(requirement: Requirement) -> ColumnElement[bool]:
    """The SQL condition on ``versions`` that one requirement makes."""
    where = [VersionLabel.version_id == Version.id, VersionLabel.key == requirement.key]
    if requirement.op in ("in", "notin"):
        where.append(VersionLabel.value.in_(requirement.values))
    found = exists(select(VersionLabel.version_id).where(and_(*where)))
    return found if requirement.op in ("in", "exists") else not_(found)
