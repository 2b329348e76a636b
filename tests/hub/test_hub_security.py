"""What the hub refuses, with which status, and that nothing of it is stored."""

from __future__ import annotations

import hashlib
import io
import sqlite3
import tarfile
import time

import pytest
from openapi_spec_validator import validate
from sqlalchemy import text

from conftest import archive_of, chunks_sha256, save_iris, use_home
from dosirak.bentos.build import manifest_digest
from dosirak.hub import selectors, tokens
from dosirak.store.versioned_store import dump_yaml


def _versions(http) -> list[str]:
    return [item["tag"] for item in http.get("/api/v1/models/-/versions").json()["items"]]


def _chunk_files(hub) -> list:
    folder = hub.data / "objects" / "uploads"
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


_archive = archive_of


def _begin(http, name, version, digest, size):
    return http.post(f"/api/v1/models/{name}/versions/{version}/uploads",
                     json={"digest": digest, "size": size})


def _push_raw(http, name, version, data, digest, chunk_sha=None, whole_sha=None):
    begun = _begin(http, name, version, digest, len(data))
    assert begun.status_code == 201, begun.text
    upload, size = begun.json()["upload_id"], begun.json()["chunk_size"]
    for index in range(begun.json()["chunks"]):
        piece = data[index * size:(index + 1) * size]
        answer = http.put(f"/api/v1/uploads/{upload}/chunks/{index}", content=piece,
                          headers={"X-Chunk-Sha256": chunk_sha or
                                   hashlib.sha256(piece).hexdigest()})
        if answer.status_code != 200:
            return answer
    return http.post(f"/api/v1/uploads/{upload}/complete",
                     json={"chunks_sha256": whole_sha} if whole_sha
                     else chunks_sha256(data, size))


def test_tokens_and_scopes(hub, tmp_path, monkeypatch):
    use_home(monkeypatch, tmp_path / "alice")
    model = save_iris()
    data, digest = _archive(model)
    with hub.http() as admin:
        reader = admin.post("/api/v1/tokens", json={"name": "reader", "scopes": ["read"]})
        short = admin.post("/api/v1/tokens", json={"name": "short", "scopes": ["write"],
                                                   "expires_in": "1s"})
        gone = admin.post("/api/v1/tokens", json={"name": "gone", "scopes": ["admin"]})
        assert admin.delete("/api/v1/tokens/gone").status_code == 200
        time.sleep(1.1)  # past the expiry of "short"
        for token, status in [("", 401), ("dsk_bad", 401), (short.json()["token"], 401),
                              (gone.json()["token"], 401), (reader.json()["token"], 403)]:
            with hub.http(token) as http:
                answer = _begin(http, model.tag.name, model.tag.version, digest, len(data))
                assert answer.status_code == status, (token, answer.text)
                if status == 401:
                    assert answer.headers["www-authenticate"].startswith("Bearer")
        with hub.http(reader.json()["token"]) as http:
            assert http.get("/api/v1/models").status_code == 200
            assert http.get("/api/v1/tokens").status_code == 403
        assert _versions(admin) == [] and _chunk_files(hub) == []
        listed = {t["name"]: t for t in admin.get("/api/v1/tokens").json()["items"]}
        assert listed["gone"]["revoked_at"] and listed["short"]["expires_at"]
        assert listed["reader"]["last_used_at"] and "token" not in listed["reader"]
        assert all("secret" not in str(t) for t in listed.values())
    assert (hub.data / "admin-token").stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(hub.data / "hub.db") as db:  # stored hashed, never the text
        hashes = [row[0] for row in db.execute("SELECT secret_hash FROM tokens")]
    secret = hub.admin_token[len("dsk_") + 13:]  # dsk_<id>_<secret>
    assert secret not in str(hashes)
    assert hashlib.sha256(secret.encode()).hexdigest() in hashes


def test_failed_attempts_are_rate_limited(hub):
    with hub.http("dsk_000000000000_" + "x" * 43) as http:
        statuses = [http.get("/api/v1/whoami").status_code for _ in range(12)]
        assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
        assert int(http.get("/api/v1/whoami").headers["retry-after"]) >= 1
    with hub.http() as admin:  # the same address with a good token is refused too, for now
        assert admin.get("/api/v1/whoami").status_code == 429


def test_failures_count_per_client_behind_a_trusted_proxy(start_hub):
    hub = start_hub("--forwarded-allow-ips", "127.0.0.1")  # the load balancer's address
    with hub.http("dsk_000000000000_" + "x" * 43) as http:
        guesser = {"X-Forwarded-For": "203.0.113.5"}
        statuses = [http.get("/api/v1/whoami", headers=guesser).status_code for _ in range(11)]
        assert statuses == [401] * 10 + [429]
    with hub.http() as admin:  # other clients through the same proxy are not affected
        answer = admin.get("/api/v1/whoami", headers={"X-Forwarded-For": "203.0.113.6"})
        assert answer.status_code == 200
    untrusted = start_hub("--forwarded-allow-ips", "192.0.2.1", data=hub.data / "other")
    with untrusted.http("dsk_000000000000_" + "x" * 43) as http:  # a header anyone can send
        for number in range(10):
            http.get("/api/v1/whoami", headers={"X-Forwarded-For": f"198.51.100.{number}"})
        assert http.get("/api/v1/whoami").status_code == 429


def test_failure_limiter_on_a_virtual_clock(tmp_path):
    from dosirak.hub.db import Database

    database = Database(f"sqlite:///{tmp_path / 'hub.db'}")
    database.migrate()
    now = [1000.0]
    limiter = tokens.FailureLimiter(database, limit=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        limiter.check("a")
        limiter.failed("a")
        now[0] += 1
    with pytest.raises(tokens.TooManyFailures) as refused:
        limiter.check("a")
    assert refused.value.retry_after == 57  # when the first of the three leaves the window
    limiter.check("b")  # another client is not affected
    now[0] = 1060.5
    limiter.check("a")
    now[0] = 1200.0
    limiter.failed("b")  # old failures are forgotten as new ones come
    with database.read() as session:
        assert session.scalar(text("SELECT count(*) FROM auth_failures")) == 1
    database.close()


def test_failed_attempts_are_counted_across_hub_processes(tmp_path):
    """Hubs behind one load balancer share one count: failures at one refuse at the others."""
    from dosirak.hub.hub import Hub, HubSettings

    now = [5000.0]
    hubs = [Hub(HubSettings(data=tmp_path / "hub")) for _ in range(2)]
    for hub in hubs:
        hub.start()
        hub.failures = tokens.FailureLimiter(hub.db, limit=4, window=60, clock=lambda: now[0])
    bad = "dsk_000000000000_" + "x" * 43
    for attempt in range(4):
        with pytest.raises(tokens.Unauthorized):
            hubs[attempt % 2].authenticate(bad, "10.0.0.7")
    for hub in hubs:
        with pytest.raises(tokens.TooManyFailures):
            hub.authenticate(bad, "10.0.0.7")
    admin = (tmp_path / "hub" / "admin-token").read_text().strip()
    assert hubs[1].authenticate(admin, "10.0.0.8").name == "admin"  # another client
    now[0] += 61
    assert hubs[1].authenticate(admin, "10.0.0.7").name == "admin"  # the window has passed
    for hub in hubs:
        hub.close()


@pytest.mark.parametrize("name", ["..", "a%2Fb", "UPPER", "a b", "-x", "x" * 64])
def test_path_characters_in_names_are_refused(hub, name):
    with hub.http() as http:
        answer = _begin(http, name, "v1", "0" * 64, 100)
        assert answer.status_code in (400, 404), answer.text
        assert http.get(f"/api/v1/models/{name}/versions/latest").status_code in (400, 404)
        assert _versions(http) == [] and _chunk_files(hub) == []


def test_forged_digests_and_oversize_chunks(hub, tmp_path, monkeypatch):
    use_home(monkeypatch, tmp_path / "alice")
    model = save_iris(extra_bytes=600 << 10)  # three chunks of 256 KiB
    data, digest = _archive(model)
    name, version = model.tag.name, model.tag.version
    with hub.http() as http:
        forged = _push_raw(http, name, version, data, digest, chunk_sha="0" * 64)
        assert forged.status_code == 400 and "X-Chunk-Sha256" in forged.json()["message"]
        assert _chunk_files(hub) == []
        wrong_digest = _push_raw(http, name, version, data, "1" * 64)
        assert wrong_digest.status_code == 400 and "digest" in wrong_digest.json()["message"]
        wrong_whole = _push_raw(http, name, version, data, digest, whole_sha="2" * 64)
        assert wrong_whole.status_code == 400 and "sha256" in wrong_whole.json()["message"]
        assert _versions(http) == []
        before = {p: p.stat().st_mtime_ns for p in _chunk_files(hub)}
        begun = _begin(http, name, version, digest, len(data)).json()
        big = data[:begun["chunk_size"]] + b"x"
        oversize = http.put(f"/api/v1/uploads/{begun['upload_id']}/chunks/0", content=big,
                            headers={"X-Chunk-Sha256": hashlib.sha256(big).hexdigest()})
        assert oversize.status_code == 413
        assert {p: p.stat().st_mtime_ns for p in _chunk_files(hub)} == before
        huge = _begin(http, name, version, digest, 1 << 50)
        assert huge.status_code == 413
        assert _push_raw(http, name, version, data, digest).status_code == 201
        assert _versions(http) == [str(model.tag)]


@pytest.mark.parametrize("trailing", [0, 2 << 20], ids=["one chunk", "refused mid-push"])
def test_unsafe_archive_is_refused_like_an_import(hub, tmp_path, monkeypatch, trailing):
    use_home(monkeypatch, tmp_path / "alice")
    model = save_iris()
    info = model.info.to_dict()
    info_bytes = dump_yaml(info).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        head = tarfile.TarInfo("model.yaml")
        head.size = len(info_bytes)
        tar.addfile(head, io.BytesIO(info_bytes))
        for name in info["manifest"]:
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
        if trailing:  # chunks after the one the checks refuse (in the first chunk)
            filler = tarfile.TarInfo("filler")
            filler.size = trailing
            tar.addfile(filler, io.BytesIO(bytes(trailing)))
    data = buffer.getvalue()
    with hub.http() as http:
        answer = _push_raw(http, model.tag.name, model.tag.version, data,
                           manifest_digest(info["manifest"]))
        assert answer.status_code == 400
        assert "symbolic link" in answer.json()["message"]
        # Refused at the chunk after the one that shows it, or at complete.
        assert answer.request.method == ("PUT" if trailing else "POST")
        assert _versions(http) == [] and _chunk_files(hub) == []
        again = _begin(http, model.tag.name, model.tag.version,
                       manifest_digest(info["manifest"]), len(data)).json()
        assert again["received"] == []  # the refused upload is gone, chunks and all


def test_event_log_is_append_only(hub):
    with sqlite3.connect(hub.data / "hub.db") as db:
        for statement in ("UPDATE events SET actor = 'x'", "DELETE FROM events"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                db.execute(statement)


def test_openapi_document_describes_every_route(hub):
    with hub.http("") as http:
        document = http.get("/docs.json").json()
    validate(document)
    from dosirak.hub.api import OPERATIONS, PREFIX

    described = {(method.upper(), path) for path, item in document["paths"].items()
                 for method in item}
    assert described == {(op.method, PREFIX + op.path) for op in OPERATIONS}


def test_label_selectors():
    parse = selectors.parse
    labels = {"stage": "prod", "team": "a"}
    assert all(r.matches(labels) for r in parse("stage=prod,team in (a,b),!deprecated"))
    assert not all(r.matches(labels) for r in parse("stage!=prod"))
    assert all(r.matches(labels) for r in parse("owner notin (x), team"))
    for bad in ("stage=", "team in ()", "=x", "a,,b", "team in (a"):
        if bad == "stage=":
            assert parse(bad)[0].values == ("",)
            continue
        with pytest.raises(Exception, match="selector"):
            parse(bad)


def test_selector_search_over_the_api(hub, tmp_path, monkeypatch):
    use_home(monkeypatch, tmp_path / "alice")
    tags = {save_iris("a", labels={"stage": "prod", "team": "x"}).tag: "prod-x",
            save_iris("b", labels={"stage": "dev", "team": "y"}).tag: "dev-y",
            save_iris("c", labels={"stage": "prod", "deprecated": "1"}).tag: "prod-old"}
    with hub.client() as client:
        for tag in tags:
            client.push_model(tag)
    with hub.http() as http:
        def names(selector: str) -> list[str]:
            answer = http.get("/api/v1/models/-/versions", params={"selector": selector})
            assert answer.status_code == 200, answer.text
            return sorted(item["name"] for item in answer.json()["items"])

        assert names("stage=prod") == ["a", "c"]
        assert names("stage=prod,!deprecated") == ["a"]
        assert names("team in (x,y)") == ["a", "b"]
        assert names("team notin (x)") == ["b", "c"]
        bad = http.get("/api/v1/models/-/versions", params={"selector": "team in ("})
        assert bad.status_code == 400
        assert http.get("/api/v1/models/-/versions",
                        params={"since": "2999-01-01T00:00:00Z"}).json()["items"] == []


def test_pushes_are_checked_by_public_validators_only():
    """The hub checks a pushed model.yaml / bento.yaml with the validators its modules export,
    never with another module's private helpers."""
    import ast
    from pathlib import Path

    from dosirak.bentos.archive import valid_bento
    from dosirak.hub import transfers
    from dosirak.models import valid_info

    private = []
    for path in Path(transfers.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dosirak.")
                    and not node.module.startswith("dosirak.hub")):
                private += [f"{path.name}: {node.module}.{alias.name}" for alias in node.names
                            if alias.name.startswith("_")
                            and not alias.name.endswith("__")]
    assert private == []
    with pytest.raises(Exception, match="module"):
        valid_info({"name": "m", "version": "v1", "module": "os", "api_version": "v1",
                    "signatures": {}, "labels": {}, "options": {}, "metadata": {},
                    "context": {}, "creation_time": "2024-01-01T00:00:00+00:00",
                    "manifest": {}})
    with pytest.raises(ValueError, match="models"):
        valid_bento({"models": [{"tag": "m:v1"}]})
