"""Limits from the configuration (503 at capacity, 504, CORS) and clear errors for what cannot
be served."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

from conftest import DOSIRAK, REPO, Served, children_of, wait_until
from dosirak.config import ServingConfig
from dosirak.server.app import DEFAULT_SYNC_THREADS, admission_limit, configure_runners

SLOW_SERVICE = '''
import asyncio
import os
import time

import dosirak
from dosirak.io import JSON

svc = dosirak.Service("slow")


@svc.api(input=JSON(), output=JSON())
async def sleep(body):
    await asyncio.sleep(body["seconds"])
    return {"slept": body["seconds"]}


@svc.api(input=JSON(), output=JSON())
def pid(body):
    return {"pid": os.getpid()}


@svc.api(input=JSON(), output=JSON())
async def block(body):
    time.sleep(body["seconds"])  # holds the event loop: requests pile up unread meanwhile
    return {"blocked": body["seconds"]}
'''


def slow_service(directory: Path) -> str:
    (directory / "slow_service.py").write_text(SLOW_SERVICE)
    return str(directory / "slow_service.py") + ":svc"


def in_progress(server: Served, path: str) -> float:
    """API calls to ``path`` in progress, as the server's metrics say."""
    metrics = server.get("/metrics")[1].decode()
    found = re.search(rf'dosirak_requests_in_progress{{endpoint="{path}",http_method="POST"}} '
                      r"(\S+)", metrics)
    return float(found.group(1)) if found else 0.0


def overload(server: Served, calls: int, seconds: float) -> tuple[list[threading.Thread],
                                                                 list[int]]:
    """``calls`` calls to /sleep at once, each for ``seconds``; return once all are in
    progress."""
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(
        server.post("/sleep", {"seconds": seconds})[0])) for _ in range(calls)]
    for thread in threads:
        thread.start()
    wait_until(lambda: in_progress(server, "/sleep") == calls, timeout=20)
    return threads, answers


def test_max_concurrency_answers_503_beyond_the_limit(service_dir: Path) -> None:
    options = "api_server.max_concurrency=2"
    with Served([slow_service(service_dir)], env={"DOSIRAK_CONFIG_OPTIONS": options}) as server:
        slow, answers = overload(server, 2, 1.5)
        status, headers, body = server.post("/sleep", {"seconds": 0}, {"x-request-id": "busy-1"})
        assert status == 503
        assert headers["retry-after"] == "1"
        assert headers["x-request-id"] == "busy-1"
        server.wait_for(r"request_id=busy-1 method=POST path=/sleep status=503 .* "
                        r"response_bytes=\d+")
        assert "at most 2 API calls at once" in body["error"]
        assert server.get("/readyz")[0] == 200  # probes are never refused
        for thread in slow:
            thread.join()
        assert answers == [200, 200]
        assert server.post("/sleep", {"seconds": 0})[0] == 200


def test_an_api_without_batching_sheds_load_by_default(service_dir: Path) -> None:
    """No setting: an API worker admits as many calls as its sync API thread pool has threads
    (64); the next is refused at once rather than queued."""
    with Served([slow_service(service_dir)]) as server:
        slow, answers = overload(server, DEFAULT_SYNC_THREADS, 5.0)
        asked = time.monotonic()
        status, headers, body = server.post("/sleep", {"seconds": 0})
        assert time.monotonic() - asked < 1.0  # refused early, not after the others
        assert status == 503 and headers["retry-after"] == "1"
        assert f"at most {DEFAULT_SYNC_THREADS} API calls at once" in body["error"]
        for thread in slow:
            thread.join()
        assert answers == [200] * DEFAULT_SYNC_THREADS


def test_a_service_that_batches_is_left_to_its_batcher() -> None:
    """Its batcher refuses what it cannot answer within the latency budget (503), by rows and
    time rather than by a count of calls: ``auto`` adds no limit there, unless batching is
    off."""
    from test_processes import DOUBLER_SERVICE

    namespace: dict[str, object] = {}
    exec(compile(DOUBLER_SERVICE, "doubler.py", "exec"), namespace)
    svc = namespace["svc"]
    for options, limit in (({}, None), ({"runners": {"batching": {"enabled": False}}}, 64),
                           ({"api_server": {"max_concurrency": 8}}, 8)):
        config = ServingConfig(**options)
        configure_runners(svc, config, "local")
        assert admission_limit(svc, config, 64) == limit, options


def test_the_documented_body_limit_is_the_one_served(service_dir: Path) -> None:
    docs = (REPO / "docs" / "http-api.md").read_text(encoding="utf-8")
    documented = re.search(r"`api_server.max_request_size` \(default (\d+) MiB\)", docs)
    assert documented, "docs/http-api.md no longer names the body limit's default"
    limit = int(documented.group(1)) * 1024 * 1024
    assert limit == ServingConfig().api_server.max_request_size
    with Served([slow_service(service_dir)]) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /pid HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: %d\r\n\r\n{}" % (limit + 1))
        assert sock.recv(4096).startswith(b"HTTP/1.1 413 ")


def test_timeout_answers_504_and_the_server_goes_on(service_dir: Path) -> None:
    options = "api_server.timeout=0.3"
    with Served([slow_service(service_dir)], env={"DOSIRAK_CONFIG_OPTIONS": options}) as server:
        status, headers, body = server.post("/sleep", {"seconds": 5}, {"x-request-id": "late-1"})
        assert status == 504
        assert "timeout of 0.3 s" in body["error"]
        assert headers["x-request-id"] == "late-1"
        assert server.post("/sleep", {"seconds": 0.05})[0] == 200
        server.wait_for(r"request_id=late-1 method=POST path=/sleep status=504")


def test_cors_from_the_configuration(service_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "serving.yaml"
    config.write_text("api_server:\n  cors:\n    enabled: true\n"
                      "    allow_origins: ['https://app.example.com']\n")
    with Served([slow_service(service_dir), "--config", str(config)]) as server:
        status, headers, _ = server.request("OPTIONS", "/pid", headers={
            "origin": "https://app.example.com", "access-control-request-method": "POST"})
        assert status == 200
        assert headers["access-control-allow-origin"] == "https://app.example.com"
        status, headers, _ = server.request("POST", "/pid", b"{}", {
            "origin": "https://app.example.com", "content-type": "application/json"})
        assert status == 200
        assert headers["access-control-allow-origin"] == "https://app.example.com"
        assert "x-request-id" in headers["access-control-expose-headers"]
        _, headers, _ = server.request("POST", "/pid", b"{}", {
            "origin": "https://evil.example.com", "content-type": "application/json"})
        assert "access-control-allow-origin" not in headers


def test_development_mode_is_one_process(service_dir: Path) -> None:
    with Served([slow_service(service_dir), "--development"]) as server:
        assert "development: one process" in next(line for line in server.lines
                                                  if "is ready at" in line)
        status, _, body = server.post("/pid", {})
        assert status == 200 and body["pid"] == server.process.pid
        assert children_of(server.process.pid) == []
        assert server.stop() == 0


def run_serve(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOSIRAK, "serve", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def test_bad_target_exits_1_with_the_reason(service_dir: Path) -> None:
    result = run_serve(["missing_file.py:svc", "--port", "0"], cwd=service_dir)
    assert result.returncode == 1
    assert "the file" in result.stderr and "missing_file.py does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    (service_dir / "no_service.py").write_text("x = 1\n")
    result = run_serve(["no_service.py", "--port", "0"], cwd=service_dir)
    assert result.returncode == 1
    assert "defines no dosirak.Service" in result.stderr
    assert result.stderr.count("defines no dosirak.Service") == 1  # said once, by one process
    assert "Traceback" not in result.stderr


def test_a_refused_start_leaves_the_collector_on(service_dir: Path) -> None:
    """serve() runs its start with the garbage collector off; a start it refuses turns it back
    on for a caller that goes on (a missing target, then a bad configuration)."""
    (service_dir / "service.py").write_text("import dosirak\nsvc = dosirak.Service('empty')\n")
    code = ("import gc\n"
            "from dosirak.serve import serve\n"
            "for target, options in (('missing_file.py:svc', {}),\n"
            "                        ('service.py:svc', {'api_server.port': 'x'})):\n"
            "    try:\n"
            "        serve(target, options=options)\n"
            "    except Exception as error:\n"
            "        print(type(error).__name__, gc.isenabled())\n")
    result = subprocess.run([str(Path(DOSIRAK).with_name("python")), "-c", code],
                            cwd=service_dir, capture_output=True, text=True, timeout=60)
    assert result.stdout.split("\n")[:2] == ["ServeTargetError True", "InvalidArgument True"], \
        result.stderr


def test_port_in_use_is_refused_clearly(service_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve([slow_service(service_dir), "--port", str(port)])
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: the address is already in use" in result.stderr
    assert "--port" in result.stderr


def test_bad_config_is_refused_before_serving(service_dir: Path, tmp_path: Path) -> None:
    result = run_serve([slow_service(service_dir), "--port", "0"],
                       env={"DOSIRAK_CONFIG_OPTIONS": "api_server.wrokers=2"})
    assert result.returncode == 1
    assert "api_server.wrokers" in result.stderr and "did you mean 'workers'?" in result.stderr
    config = tmp_path / "bad.yaml"
    config.write_text("runners:\n  iris_clf:\n    placement: remote\n")
    result = run_serve([slow_service(service_dir), "--port", "0", "--config", str(config)])
    assert result.returncode == 1
    assert "placement" in result.stderr and "'local' or 'process'" in result.stderr
    # A section for a runner the service does not have is a typo, caught by the worker.
    config.write_text("runners:\n  iris_clff:\n    workers: 2\n")
    result = run_serve([slow_service(service_dir), "--port", "0", "--config", str(config)])
    assert result.returncode == 1
    assert "the service has no runner 'iris_clff'" in result.stderr


def test_slow_clients_do_not_stop_others(service_dir: Path) -> None:
    with Served([slow_service(service_dir)]) as server:
        # Slowloris-style, bounded: 50 connections that send a request a few bytes at a time.
        slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
        try:
            for sock in slow:
                sock.sendall(b"POST /pid HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
            started = time.monotonic()
            for _ in range(20):
                assert server.post("/pid", {})[0] == 200
                for sock in slow:
                    sock.sendall(b" ")
            assert time.monotonic() - started < 5
        finally:
            for sock in slow:
                sock.close()
