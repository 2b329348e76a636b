"""What the hub holds and how it is found: repositories, versions, aliases, deletion.

Versions are immutable: a row is written once, with its files, labels and references, in the
transaction that ends a push. A version is named by its version string, ``latest`` (the newest
creation time) or ``@alias``. Aliases move; every move is in the event log.
"""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from dosirak.exceptions import InUse, InvalidArgument, NotFound
from dosirak.hub import selectors
from dosirak.hub.db import Alias, Version, VersionFile, VersionRef, utcnow
from dosirak.hub.hub import Hub
from dosirak.hub.tokens import Principal
from dosirak.tag import RULE, is_valid_part

KINDS = ("model", "bento")
MAX_LIMIT = 1000


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise NotFound(f"{kind!r} is not a kind of repository; the hub holds models and bentos")
    return kind


def check_name(what: str, value: str) -> str:
    """A name, version or alias; anything else (a '/', '..', upper case) is refused."""
    if not is_valid_part(value):
        raise InvalidArgument(f"invalid {what} {value!r}: {RULE}")
    return value


def resolve(session: Session, kind: str, name: str, ref: str) -> Version:
    """The version ``ref`` names: a version, ``latest`` or ``@alias``."""
    check_name("name", name)
    query = select(Version).where(Version.kind == kind, Version.name == name)
    if ref.startswith("@"):
        alias = session.get(Alias, (kind, name, check_name("alias", ref[1:])))
        if alias is None:
            raise NotFound(f"{kind} {name} has no alias {ref[1:]!r}; see its aliases with "
                           f"GET /api/v1/{kind}s/{name}")
        query = query.where(Version.version == alias.version)
    elif ref in ("latest", ""):
        query = query.order_by(Version.creation_time.desc(), Version.version.desc()).limit(1)
    else:
        query = query.where(Version.version == check_name("version", ref))
    row = session.scalars(query).first()
    if row is None:
        raise NotFound(f"the hub has no {kind} {name}:{ref or 'latest'}; see what it has with "
                       f"GET /api/v1/{kind}s")
    return row


def summary(row: Version, aliases: list[str] | None = None) -> dict[str, Any]:
    return {"kind": row.kind, "name": row.name, "version": row.version,
            "tag": f"{row.name}:{row.version}", "digest": row.digest, "size": row.size,
            "labels": row.labels, "metadata": row.meta,
            "creation_time": row.creation_time.isoformat(),
            "pushed_at": row.pushed_at.isoformat(), "pushed_by": row.pushed_by,
            "aliases": sorted(aliases or [])}


def _aliases_of(session: Session, rows: list[Version]) -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    names = {row.name for row in rows}
    if not rows:
        return found
    query = select(Alias).where(Alias.kind == rows[0].kind, Alias.name.in_(names))
    for alias in session.scalars(query):
        found.setdefault((alias.name, alias.version), []).append(alias.alias)
    return found


def list_versions(hub: Hub, kind: str, *, name: str | None = None, q: str | None = None,
                  selector: str | None = None, since: datetime.datetime | None = None,
                  until: datetime.datetime | None = None, limit: int = 100,
                  offset: int = 0) -> dict[str, Any]:
    """Versions newest first, filtered by name (exact), text in the name, labels and time."""
    check_kind(kind)
    query: Select[Any] = select(Version).where(Version.kind == kind)
    if name:
        query = query.where(Version.name == check_name("name", name))
    if q:
        query = query.where(Version.name.contains(q, autoescape=True))
    for requirement in selectors.parse(selector or ""):
        query = query.where(selectors.condition(requirement))
    if since is not None:
        query = query.where(Version.pushed_at >= since)
    if until is not None:
        query = query.where(Version.pushed_at < until)
    limit = max(1, min(limit, MAX_LIMIT))
    query = query.order_by(Version.pushed_at.desc(), Version.id.desc())
    with hub.db.read() as session:
        rows = list(session.scalars(query.offset(max(offset, 0)).limit(limit + 1)))
        aliases = _aliases_of(session, rows[:limit])
    items = [summary(row, aliases.get((row.name, row.version))) for row in rows[:limit]]
    return {"items": items, "next_offset": offset + limit if len(rows) > limit else None}


def repositories(hub: Hub, kind: str, q: str | None = None) -> list[dict[str, Any]]:
    """One entry per name: how many versions, the newest push."""
    check_kind(kind)
    query = (select(Version.name, func.count(), func.max(Version.pushed_at))
             .where(Version.kind == kind).group_by(Version.name).order_by(Version.name))
    if q:
        query = query.where(Version.name.contains(q, autoescape=True))
    with hub.db.read() as session:
        rows = session.execute(query).all()
    return [{"name": name, "versions": count,
             "updated_at": when.isoformat() if isinstance(when, datetime.datetime)
             else str(when)} for name, count, when in rows]


def get_version(hub: Hub, kind: str, name: str, ref: str) -> dict[str, Any]:
    """Everything about one version: its files, aliases, the models a bento uses, the bentos
    that use a model, and the info file as pushed."""
    check_kind(kind)
    with hub.db.read() as session:
        row = resolve(session, kind, name, ref)
        aliases = _aliases_of(session, [row]).get((row.name, row.version), [])
        data = summary(row, aliases)
        files = session.scalars(select(VersionFile).where(VersionFile.version_id == row.id)
                                .order_by(VersionFile.path))
        data["files"] = [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files]
        data["info"] = row.info
        refs = session.scalars(select(VersionRef).where(VersionRef.version_id == row.id))
        data["models"] = [{"tag": f"{r.model_name}:{r.model_version}", "digest": r.digest}
                          for r in refs]
        data["used_by"] = _users(session, row) if kind == "model" else []
    return data


def _users(session: Session, row: Version) -> list[str]:
    query = (select(Version.name, Version.version).join(VersionRef,
                                                        VersionRef.version_id == Version.id)
             .where(VersionRef.model_name == row.name, VersionRef.model_version == row.version))
    return [f"{name}:{version}" for name, version in session.execute(query)]


def move_alias(hub: Hub, by: Principal, kind: str, name: str, alias: str,
               version: str) -> dict[str, Any]:
    """Point ``name@alias`` at ``version`` (creating the alias if new)."""
    by.require("write")
    check_kind(kind)
    check_name("alias", alias)
    if alias == "latest":
        raise InvalidArgument("'latest' always means the newest version; pick another alias")
    with hub.db.write() as session:
        target = resolve(session, kind, name, version)
        row = session.get(Alias, (kind, name, alias))
        previous = row.version if row else None
        if row is None:
            row = Alias(kind=kind, name=name, alias=alias)
            session.add(row)
        row.version, row.moved_at, row.moved_by = target.version, utcnow(), by.name
        hub.log_event(session, "alias.move", f"{kind} {name}@{alias}", by,
                      {"from": previous, "to": target.version})
    return {"alias": alias, "name": name, "version": target.version, "previous": previous}


def remove_alias(hub: Hub, by: Principal, kind: str, name: str, alias: str) -> None:
    by.require("write")
    check_kind(kind)
    with hub.db.write() as session:
        row = session.get(Alias, (kind, check_name("name", name), check_name("alias", alias)))
        if row is None:
            raise NotFound(f"{kind} {name} has no alias {alias!r}")
        hub.log_event(session, "alias.remove", f"{kind} {name}@{alias}", by,
                      {"from": row.version})
        session.delete(row)


def delete_version(hub: Hub, by: Principal, kind: str, name: str, version: str, *,
                   force: bool = False) -> dict[str, Any]:
    """Delete one version. A model a stored bento uses is kept unless ``force``. Its files stay
    in the object store until the collector finds them unused."""
    by.require("write")
    check_kind(kind)
    with hub.db.write() as session:
        row = resolve(session, kind, name, check_name("version", version))
        users = _users(session, row) if kind == "model" else []
        if users and not force:
            raise InUse(
                f"model {row.name}:{row.version} is used by {len(users)} bento(s) on the hub "
                f"({', '.join(users[:3])}); delete them first, or pass force (CLI: --force), "
                "after which they cannot be pulled whole")
        aliases = [a.alias for a in session.scalars(
            select(Alias).where(Alias.kind == kind, Alias.name == row.name,
                                Alias.version == row.version))]
        session.execute(delete(Alias).where(Alias.kind == kind, Alias.name == row.name,
                                            Alias.version == row.version))
        hub.log_event(session, "delete", f"{kind} {row.name}:{row.version}", by,
                      {"digest": row.digest, "forced": bool(users), "used_by": users,
                       "aliases": aliases})
        session.delete(row)
    return {"deleted": f"{row.name}:{row.version}", "aliases_removed": aliases}
