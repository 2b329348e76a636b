"""Hubs on a real PostgreSQL server and a real S3 server (SeaweedFS, the store tests' fixture):
two hub processes on one database and one bucket serve the same data."""

from __future__ import annotations

import uuid

import dosirak
from conftest import build_iris_bento, save_iris, use_home
from live_server import Served
from store.conftest import s3_server  # noqa: F401 - the session's SeaweedFS server


def test_two_hubs_on_one_postgres_and_one_bucket(start_hub, pg_url, s3_server, tmp_path,  # noqa: F811
                                                 monkeypatch):
    storage = f"s3://{s3_server.bucket}/hub-{uuid.uuid4().hex[:8]}"
    args = ("--db", pg_url, "--storage", storage, "--chunk-size", str(256 << 10))
    first = start_hub(*args, data=tmp_path / "hub-1", env=s3_server.env)
    second = start_hub(*args, data=tmp_path / "hub-2", env=s3_server.env)
    token = first.admin_token  # made once, by whichever started first
    assert not (tmp_path / "hub-2" / "admin-token").exists()
    use_home(monkeypatch, tmp_path / "alice")
    model = save_iris(labels={"stage": "prod"}, extra_bytes=1 << 20)
    bento = build_iris_bento(tmp_path)
    with first.client(token) as client:
        assert client.push_bento(bento.tag)["status"] == "pushed"
        client.json("PUT", "/models/iris_clf/aliases/prod", json={"version": model.tag.version})
    with second.client(token) as client:  # the other process sees it all
        assert client.push_model(model.tag)["status"] == "exists"
        found = client.json("GET", "/models/-/versions", params={"selector": "stage=prod"})
        assert [item["tag"] for item in found["items"]] == [str(model.tag)]
        assert found["items"][0]["aliases"] == ["prod"]
        bob = use_home(monkeypatch, tmp_path / "bob")
        assert client.pull_bento("iris_classifier:latest")["status"] == "pulled"
        events = [e["action"] for e in client.json("GET", "/events")["items"]]
    assert events.count("push") == 2 and "alias.move" in events and "pull" in events
    blobs = s3_server.filesystem().find(f"{storage.removeprefix('s3://')}/blobs")
    assert len(blobs) >= 2  # the files are in the bucket, not on either hub's disk
    assert not list((tmp_path / "hub-1").rglob("blobs"))
    assert dosirak.bentos.verify(bento.tag) == []
    with Served([str(bento.tag)], env={"DOSIRAK_HOME": str(bob)}, cwd=tmp_path) as server:
        status, _, answer = server.post("/classify", [[5.1, 3.5, 1.4, 0.2]])
    assert status == 200 and answer == [0]
    # Failed attempts are counted in the database: ten at one hub, and the other refuses too.
    bad = "dsk_000000000000_" + "x" * 43
    with first.http(bad) as http:
        assert [http.get("/api/v1/whoami").status_code for _ in range(10)] == [401] * 10
    with second.http(bad) as http:
        refused = http.get("/api/v1/whoami")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
