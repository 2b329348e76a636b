"""Each pushed byte written once on the hub, and pushes whose chunks reach several hub
processes, or a hub that restarted, still complete whole."""

from __future__ import annotations

import hashlib
from pathlib import Path

import dosirak
from conftest import archive_of, chunks_sha256, save_iris, use_home


def _written(pid: int) -> int:
    """Bytes the process has passed to write() so far (all its threads)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/PID/io")


def _begin(http, version: str, data: bytes, digest: str) -> dict:
    answer = http.post(f"/api/v1/models/iris_clf/versions/{version}/uploads",
                       json={"digest": digest, "size": len(data)})
    assert answer.status_code == 201, answer.text
    return answer.json()


def _put(http, begun: dict, data: bytes, index: int) -> None:
    step = begun["chunk_size"]
    piece = data[index * step:(index + 1) * step]
    answer = http.put(f"/api/v1/uploads/{begun['upload_id']}/chunks/{index}", content=piece,
                      headers={"X-Chunk-Sha256": hashlib.sha256(piece).hexdigest()})
    assert answer.status_code == 200, answer.text


def test_an_in_order_push_writes_each_byte_once(hub, tmp_path, monkeypatch):
    use_home(monkeypatch, tmp_path / "alice")
    model = save_iris(extra_bytes=16 << 20)  # 64 chunks of 256 KiB
    size = len(archive_of(model)[0])
    before = _written(hub.process.pid)
    with hub.client() as client:
        assert client.push_model(model.tag)["status"] == "pushed"
    written = _written(hub.process.pid) - before
    # Once is the archive's size; the old path (chunks, then a draft) wrote it twice. The rest
    # is the database's own writes (a few pages per chunk).
    assert size <= written < 1.25 * size, (written, size)
    assert not list((hub.data / "objects").glob("uploads/*/*"))  # no chunk objects
    use_home(monkeypatch, tmp_path / "bob")
    with hub.client() as client:
        client.pull_model(str(model.tag))
    dosirak.models.get(model.tag, verify=True)


def test_chunks_split_between_two_hub_processes(start_hub, tmp_path, monkeypatch):
    first = start_hub("--chunk-size", str(256 << 10))
    second = start_hub("--chunk-size", str(256 << 10), data=first.data)  # one database
    use_home(monkeypatch, tmp_path / "alice")
    model = save_iris(extra_bytes=1 << 20)
    data, digest = archive_of(model)
    hubs = [first.http(), second.http()]
    try:
        begun = _begin(hubs[0], model.tag.version, data, digest)
        upload, step = begun["upload_id"], begun["chunk_size"]
        for index in range(begun["chunks"]):  # a load balancer alternating between the two
            _put(hubs[index % 2], begun, data, index)
        whole = chunks_sha256(data, step)
        asked = hubs[1].post(f"/api/v1/uploads/{upload}/complete", json=whole)
        # Chunk 0 went into the first process's assembly, which the second cannot read.
        assert asked.status_code == 409 and asked.json()["missing"] == [0], asked.text
        _put(hubs[1], begun, data, 0)
        done = hubs[1].post(f"/api/v1/uploads/{upload}/complete", json=whole)
        assert done.status_code == 201, done.text
    finally:
        for http in hubs:
            http.close()
    use_home(monkeypatch, tmp_path / "bob")
    with first.client() as client:
        assert client.pull_model(str(model.tag))["status"] == "pulled"
    dosirak.models.get(model.tag, verify=True)


def _small_push(start_hub, tmp_path, monkeypatch):
    """A hub of 256 KiB chunks, and a model of a few chunks with its archive and digest."""
    hub = start_hub("--chunk-size", str(256 << 10))
    use_home(monkeypatch, tmp_path / "alice")
    model = save_iris(extra_bytes=1 << 20)
    return (hub, model, *archive_of(model))


def test_a_client_resends_what_a_restarted_hub_lost(start_hub, tmp_path, monkeypatch):
    hub, model, data, digest = _small_push(start_hub, tmp_path, monkeypatch)
    with hub.http() as http:
        begun = _begin(http, model.tag.version, data, digest)
        for index in range(3):  # taken by the assembly, then the hub dies
            _put(http, begun, data, index)
    hub.kill()
    hub = start_hub("--chunk-size", str(256 << 10), data=hub.data)
    with hub.client() as client:
        result = client.push_model(model.tag)
    assert result["status"] == "pushed" and result["resumed_chunks"] == 0
    use_home(monkeypatch, tmp_path / "bob")
    with hub.client() as client:
        client.pull_model(str(model.tag))
    dosirak.models.get(model.tag, verify=True)


def test_a_stored_chunk_damaged_since_it_arrived_is_asked_for_again(start_hub, tmp_path,
                                                                     monkeypatch):
    hub, model, data, digest = _small_push(start_hub, tmp_path, monkeypatch)
    with hub.http() as http:
        begun = _begin(http, model.tag.version, data, digest)
        upload = begun["upload_id"]
        # Out of order: no assembly starts, every chunk is stored as an object.
        for index in reversed(range(begun["chunks"])):
            _put(http, begun, data, index)
        stored = hub.data / "objects" / "uploads" / upload / f"{2:08d}"
        damaged = bytearray(stored.read_bytes())
        damaged[100] ^= 1
        stored.write_bytes(damaged)
        whole = chunks_sha256(data, begun["chunk_size"])
        asked = http.post(f"/api/v1/uploads/{upload}/complete", json=whole)
        assert asked.status_code == 409 and asked.json()["missing"] == [2], asked.text
        assert not stored.exists()
        _put(http, begun, data, 2)
        done = http.post(f"/api/v1/uploads/{upload}/complete", json=whole)
        assert done.status_code == 201, done.text
    use_home(monkeypatch, tmp_path / "bob")
    with hub.client() as client:
        client.pull_model(str(model.tag))
    dosirak.models.get(model.tag, verify=True)
