"""Pushes and pulls between two dosirak homes through a real hub process."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

import dosirak
from conftest import DOSIRAK, archive_of, build_iris_bento, save_iris, use_home
from dosirak.exceptions import NotFound
from dosirak.hub.client import HubClient
from live_server import Served


def test_model_push_pull_between_homes(hub, tmp_path, monkeypatch):
    use_home(monkeypatch, tmp_path / "alice")
    model = save_iris(labels={"stage": "prod"}, extra_bytes=1 << 20)
    with hub.client() as client:
        pushed = client.push_model(model.tag)
        assert pushed["status"] == "pushed" and pushed["tag"] == str(model.tag)
        again = client.push_model(model.tag)
        assert again["status"] == "exists"  # idempotent: says so, sends nothing
        client.json("PUT", "/models/iris_clf/aliases/champion",
                    json={"version": model.tag.version})
    use_home(monkeypatch, tmp_path / "bob")
    with hub.client() as client:
        pulled = client.pull_model("iris_clf@champion")
        assert pulled["status"] == "pulled" and pulled["tag"] == str(model.tag)
        assert client.pull_model("iris_clf:latest")["status"] == "exists"
    mine = dosirak.models.get(model.tag, verify=True)  # every file re-hashed
    assert mine.info.labels == {"stage": "prod"}
    assert mine.custom_objects["blob"] == model.custom_objects["blob"]
    assert not (tmp_path / "bob" / "hub" / "downloads").exists()  # straight into the store


def test_bento_push_pull_then_serve(hub, tmp_path, monkeypatch):
    use_home(monkeypatch, tmp_path / "alice")
    model = save_iris()
    bento = build_iris_bento(tmp_path)
    with hub.client() as client:
        result = client.push_bento(bento.tag)
    assert result["status"] == "pushed"
    assert [m["status"] for m in result["models"]] == ["pushed"]
    bob = use_home(monkeypatch, tmp_path / "bob")
    env = {"DOSIRAK_HOME": str(bob), "DOSIRAK_HUB_URL": hub.url,
           "DOSIRAK_HUB_TOKEN": hub.admin_token}
    run = subprocess.run([DOSIRAK, "pull", "iris_classifier:latest"], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert f"pulled bento {bento.tag}" in run.stdout
    assert dosirak.bentos.verify(bento.tag) == []
    assert dosirak.models.get(model.tag).tag == model.tag
    with Served([str(bento.tag)], env=env, cwd=tmp_path) as server:
        status, _, answer = server.post("/classify", [[5.1, 3.5, 1.4, 0.2]])
    assert status == 200 and answer == [0]


def test_cli_login_push_pull(hub, tmp_path, monkeypatch):
    alice = use_home(monkeypatch, tmp_path / "alice")
    model = save_iris()

    def cli(*args: str, home: Path = alice) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DOSIRAK, *args], env={**os.environ, "DOSIRAK_HOME": str(home)},
                              capture_output=True, text=True, timeout=120)

    assert cli("models", "push", "iris_clf").returncode == 1  # not signed in: one line
    login = cli("hub", "login", hub.url, "--token", hub.admin_token)
    assert login.returncode == 0, login.stderr
    assert (alice / "hub-login.json").stat().st_mode & 0o777 == 0o600
    made = cli("hub", "token", "create", "ci", "--scope", "read", "--expires", "30d")
    assert made.returncode == 0, made.stderr
    read_token = made.stdout.strip()
    first = cli("models", "push", "iris_clf:latest")
    assert first.returncode == 0 and "pushed model" in first.stdout, first.stderr
    assert "already there" in cli("models", "push", "iris_clf:latest").stdout
    bob = tmp_path / "bob"
    assert cli("hub", "login", hub.url, "--token", read_token, home=bob).returncode == 0
    pulled = cli("models", "pull", f"iris_clf:{model.tag.version}", home=bob)
    assert pulled.returncode == 0, pulled.stderr
    refused = cli("models", "push", f"iris_clf:{model.tag.version}", home=bob)
    assert refused.returncode == 1 and "lacks the 'write' scope" in refused.stderr
    listed = cli("hub", "token", "list")
    assert "ci" in listed.stdout and "admin" in listed.stdout
    assert cli("hub", "token", "revoke", "ci").returncode == 0
    again = cli("models", "pull", "iris_clf", home=bob)
    assert again.returncode == 1 and "valid hub token" in again.stderr
    assert cli("hub", "logout", home=bob).returncode == 0
    assert not (bob / "hub-login.json").exists()


def _chunks_on_hub(http: httpx.Client, model, size: int, digest: str) -> int:
    """Chunks the hub holds (taken by its assembly, or stored), as a resuming push hears it."""
    begun = http.post(f"/api/v1/models/{model.tag.name}/versions/{model.tag.version}/uploads",
                      json={"digest": digest, "size": size})
    assert begun.status_code == 201, begun.text
    return len(begun.json()["received"])


def _written(pid: int) -> int:
    """Bytes the process has passed to write() so far (all its threads)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/PID/io")


def test_push_resumes_after_client_sigkill(hub, tmp_path, monkeypatch):
    home = use_home(monkeypatch, tmp_path / "alice")
    model = save_iris(extra_bytes=48 << 20)  # ~190 chunks of 256 KiB
    env = {**os.environ, "DOSIRAK_HOME": str(home), "DOSIRAK_HUB_URL": hub.url,
           "DOSIRAK_HUB_TOKEN": hub.admin_token}
    pusher = subprocess.Popen([DOSIRAK, "models", "push", str(model.tag)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data, digest = archive_of(model)
    deadline = time.monotonic() + 120
    with hub.http() as http:
        while (_chunks_on_hub(http, model, len(data), digest) < 10 and pusher.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.005)
        pusher.send_signal(signal.SIGKILL)
        pusher.wait(timeout=30)
        held = _chunks_on_hub(http, model, len(data), digest)
    assert 10 <= held < 190, f"the kill did not land half-way ({held} chunks)"
    with hub.client() as client:
        with pytest.raises(NotFound):  # nothing half-there
            client.version("model", str(model.tag))
        result = client.push_model(model.tag)
    assert result["status"] == "pushed"
    assert result["resumed_chunks"] >= held  # finished chunks were not sent again
    use_home(monkeypatch, tmp_path / "bob")
    with hub.client() as client:
        client.pull_model(str(model.tag))
    dosirak.models.get(model.tag, verify=True)


class _CutArchive(httpx.SyncByteStream):
    """An archive's body that breaks off, as a dropped connection does, after ``limit``
    bytes."""

    def __init__(self, inner: httpx.SyncByteStream, limit: int) -> None:
        self.inner, self.limit = inner, limit

    def __iter__(self):
        sent = 0
        for piece in self.inner:
            if sent + len(piece) >= self.limit:
                yield piece[:self.limit - sent]
                raise httpx.ReadError("the connection dropped")
            sent += len(piece)
            yield piece

    def close(self) -> None:
        self.inner.close()


class _CuttingTransport(httpx.HTTPTransport):
    """The real transport; the first archive download is cut after ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.ranges: list[tuple[str | None, str | None]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path.endswith("/archive"):
            self.ranges.append((request.headers.get("range"), request.headers.get("if-range")))
            if len(self.ranges) == 1:
                response.stream = _CutArchive(response.stream, self.limit)
        return response


def test_pull_resumes_a_cut_download(hub, tmp_path, monkeypatch):
    use_home(monkeypatch, tmp_path / "alice")
    model = save_iris(extra_bytes=8 << 20)
    with hub.client() as client:
        client.push_model(model.tag)
    use_home(monkeypatch, tmp_path / "bob")
    transport = _CuttingTransport(3 << 20)  # the first 3 MiB arrive, then the connection drops
    with HubClient(hub.url, hub.admin_token, transport=transport) as client:
        assert client.pull_model(str(model.tag))["status"] == "pulled"
    (first, _), (resumed, if_range) = transport.ranges
    assert first is None and resumed == f"bytes={3 << 20}-" and if_range  # the same archive
    dosirak.models.get(model.tag, verify=True)


def test_hub_sigkill_during_pushes_leaves_no_partial_version(start_hub, tmp_path, monkeypatch):
    hub = start_hub("--chunk-size", str(256 << 10))
    use_home(monkeypatch, tmp_path / "alice")
    tags = [save_iris(f"model-{i}", extra_bytes=(4 + i) << 20).tag for i in range(10)]
    token = hub.admin_token
    errors: list[BaseException] = []

    def push(tag) -> None:
        try:
            with HubClient(hub.url, token) as client:
                client.push_model(tag)
        except BaseException as error:  # the hub died under it
            errors.append(error)

    threads = [threading.Thread(target=push, args=(tag,)) for tag in tags]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    start = _written(hub.process.pid)
    # Forty chunks' worth of bytes written into drafts: the kill lands in the middle of pushes.
    while _written(hub.process.pid) - start < 40 * (256 << 10) and time.monotonic() < deadline:
        time.sleep(0.005)
    hub.kill()
    for thread in threads:
        thread.join(timeout=120)
    assert errors, "every push finished before the kill: it did not land during the pushes"
    hub = start_hub("--chunk-size", str(256 << 10), data=hub.data)
    with hub.client() as client:
        listed = client.json("GET", "/models/-/versions")["items"]
        for item in listed:  # whatever is listed is whole: pull it and re-hash every file
            detail = client.json("GET", f"/models/{item['name']}/versions/{item['version']}")
            assert sum(f["size"] for f in detail["files"]) == item["size"]
        use_home(monkeypatch, tmp_path / "bob")
        for item in listed:
            client.pull_model(item["tag"])
            dosirak.models.get(item["tag"], verify=True)
        # The cut pushes resume and finish.
        use_home(monkeypatch, tmp_path / "alice")
        for tag in tags:
            assert client.push_model(tag)["status"] in ("pushed", "exists")
        assert len(client.json("GET", "/models/-/versions")["items"]) == 10


def test_eight_concurrent_pushers_of_one_model(hub, tmp_path, monkeypatch):
    use_home(monkeypatch, tmp_path / "alice")
    tags = [save_iris("shared", labels={"run": str(i)}, extra_bytes=1 << 20).tag
            for i in range(8)]
    token = hub.admin_token
    results: dict[str, dict] = {}
    barrier = threading.Barrier(8)

    def push(tag) -> None:
        with HubClient(hub.url, token) as client:
            barrier.wait()
            results[str(tag)] = client.push_model(tag)

    threads = [threading.Thread(target=push, args=(tag,)) for tag in tags]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert {t: r["status"] for t, r in results.items()} == {str(t): "pushed" for t in tags}
    use_home(monkeypatch, tmp_path / "bob")
    with hub.client() as client:
        listed = client.json("GET", "/models/shared/versions")["items"]
        assert sorted(item["tag"] for item in listed) == sorted(str(t) for t in tags)
        for tag in tags:
            client.pull_model(str(tag))
            dosirak.models.get(tag, verify=True)


def test_delete_protection_aliases_and_gc(hub, tmp_path, monkeypatch):
    use_home(monkeypatch, tmp_path / "alice")
    model = save_iris()
    bento = build_iris_bento(tmp_path)
    lone = save_iris("lone", extra_bytes=1 << 20)
    with hub.http() as http, hub.client() as client:
        client.push_bento(bento.tag)
        client.push_model(lone.tag)
        base = f"/api/v1/models/iris_clf/versions/{model.tag.version}"
        refused = http.delete(base)
        assert refused.status_code == 409 and "used by 1 bento" in refused.json()["message"]
        moved = http.put("/api/v1/models/lone/aliases/prod", json={"version": lone.tag.version})
        assert moved.status_code == 200
        assert http.get("/api/v1/models/lone/versions/@prod").json()["version"] == \
            lone.tag.version
        assert http.delete(f"/api/v1/models/lone/versions/{lone.tag.version}").status_code == 200
        assert http.get("/api/v1/models/lone/versions/@prod").status_code == 404
        time.sleep(1.1)  # past the grace period given below
        dry = http.post("/api/v1/gc", json={"dry_run": True, "grace": "1s"}).json()
        assert dry["blobs"] >= 1 and dry["bytes"] >= 1 << 20
        assert http.post("/api/v1/gc", json={"dry_run": True, "grace": "1s"}).json() == dry
        done = http.post("/api/v1/gc", json={"grace": "1s"}).json()
        assert done["blobs"] == dry["blobs"] and not done["dry_run"]
        assert http.post("/api/v1/gc", json={"dry_run": True, "grace": "1s"}).json()["blobs"] == 0
        forced = http.delete(base, params={"force": "true"})
        assert forced.status_code == 200
        pull = http.get(f"/api/v1/bentos/iris_classifier/versions/{bento.tag.version}/archive")
        assert pull.status_code == 404 and "push that model again" in pull.json()["message"]
        actions = [e["action"] for e in http.get("/api/v1/events").json()["items"]]
        for action in ("push", "delete", "alias.move", "gc"):
            assert action in actions


def test_yatai_service_start_alias(start_hub):
    from dosirak.cli.hub import serve_hub, yatai_service_start

    def port_default(command) -> int:
        return next(p.default for p in command.params if p.name == "port")

    assert port_default(yatai_service_start) == 3000  # the seeds open it on localhost:3000
    assert port_default(serve_hub) == 3333
    hub = start_hub(command="yatai-service-start")
    assert hub.url.startswith("http://127.0.0.1:")
    with hub.http() as http:
        assert http.get("/api/v1/whoami").json()["name"] == "admin"


def test_bento_pull_fetches_only_the_models_it_lacks(hub, tmp_path, monkeypatch):
    use_home(monkeypatch, tmp_path / "alice")
    model = save_iris(extra_bytes=4 << 20)
    bento = build_iris_bento(tmp_path)
    with hub.client() as client:
        client.push_bento(bento.tag)
    use_home(monkeypatch, tmp_path / "bob")
    received: list[int] = []
    with hub.client() as client:
        client.pull_model(str(model.tag))  # bob holds the model already (same digest)
        result = client.pull_bento(str(bento.tag), progress=received.append)
        assert result["status"] == "pulled"
        assert [(m["tag"], m["status"]) for m in result["models"]] == [(str(model.tag),
                                                                       "exists")]
        assert 0 < sum(received) < 1 << 20  # the bento's own files; not the 4 MiB model again
        pulls = [e["subject"] for e in client.json("GET", "/events",
                                                   params={"action": "pull"})["items"]]
    assert pulls == [f"bento {bento.tag}", f"model {model.tag}"]  # newest first
    assert dosirak.bentos.verify(bento.tag) == []
    use_home(monkeypatch, tmp_path / "carol")  # holds nothing: the model comes too
    with hub.client() as client:
        result = client.pull_bento("iris_classifier:latest")
    assert [(m["tag"], m["status"]) for m in result["models"]] == [(str(model.tag), "pulled")]
    assert dosirak.bentos.verify(bento.tag) == []
    dosirak.models.get(model.tag, verify=True)
