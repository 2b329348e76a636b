"""The garbage collector: what no version uses any more, and pushes that were abandoned.

Removed (or, with ``dry_run``, only listed):

- blobs that no version's files name, untouched for ``grace`` (a push marks the blobs it is
  about to use, so a push in progress never loses one);
- uploads older than the hub's upload lifetime, with their chunks;
- objects without a row: chunks of finished uploads and blobs a killed push stored but never
  recorded, once older than ``grace``;
- on local storage, the partial files of writes a kill cut short (a chunk, a blob), once not
  written to for ``grace``: a write in progress keeps its file fresh, and one that stalls that
  long fails at its end and is sent again.

Each blob row is deleted in the transaction that deletes its object, and a push selects the
blob rows it relies on ``FOR UPDATE``: the two never interleave.
"""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import delete, exists, select

from dosirak.hub.db import Blob, Upload, VersionFile, utcnow
from dosirak.hub.hub import Hub
from dosirak.hub.storage import age_seconds, blob_key, stale_partials
from dosirak.hub.tokens import Principal

DEFAULT_GRACE = datetime.timedelta(hours=1)


def collect(hub: Hub, by: Principal, *, dry_run: bool = False,
            grace: datetime.timedelta = DEFAULT_GRACE) -> dict[str, Any]:
    by.require("admin")
    now = utcnow()
    cutoff = now - grace
    unused = ~exists(select(VersionFile.version_id).where(VersionFile.sha256 == Blob.sha256))
    with hub.db.read() as session:
        candidates = [(b.sha256, b.size) for b in session.scalars(
            select(Blob).where(Blob.touched_at < cutoff, unused))]
        known_blobs = set(session.scalars(select(Blob.sha256)))
        uploads = {u.id: u.created_at for u in session.scalars(select(Upload))}
    removed_blobs, freed = [], 0
    for sha256, size in candidates:
        if dry_run:
            removed_blobs.append(sha256)
            freed += size
            continue
        with hub.db.write() as session:
            gone = session.execute(delete(Blob).where(
                Blob.sha256 == sha256, Blob.touched_at < cutoff, unused))
            if gone.rowcount:  # type: ignore[attr-defined]
                hub.storage.delete(blob_key(sha256))
                removed_blobs.append(sha256)
                freed += size
    expired = [upload_id for upload_id, created in uploads.items()
               if created < now - hub.settings.upload_ttl]
    if not dry_run:
        for upload_id in expired:
            with hub.db.write() as session:
                session.execute(delete(Upload).where(Upload.id == upload_id))
            hub.storage.delete_prefix(f"uploads/{upload_id}")
    orphans = []
    for key in hub.storage.keys("uploads"):
        upload_id = key.split("/")[1]
        if upload_id not in uploads and age_seconds(hub.storage, key) > grace.total_seconds():
            orphans.append(key)
    for key in hub.storage.keys("blobs"):
        sha256 = key.rsplit("/", 1)[-1]
        if sha256 not in known_blobs and age_seconds(hub.storage, key) > grace.total_seconds():
            orphans.append(key)
    partials = stale_partials(hub.storage, grace.total_seconds())
    if not dry_run:
        for key in orphans + partials:
            hub.storage.delete(key)
    result = {"dry_run": dry_run, "blobs": len(removed_blobs), "bytes": freed,
              "uploads": len(expired), "orphans": len(orphans), "partials": len(partials),
              "removed": removed_blobs[:1000]}
    if not dry_run:
        with hub.db.write() as session:
            hub.log_event(session, "gc", "hub", by, {k: v for k, v in result.items()
                                                     if k != "removed"})
    return result
