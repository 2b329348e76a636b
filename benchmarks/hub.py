"""Hub benchmark, in one run: push and pull of a large model beside ``curl --upload-file`` of the
same bytes to a bare upload sink, peak RSS of the client and the hub during them, and listing
versions with a label filter (p99) on SQLite and, with ``--postgres URL``, on PostgreSQL.

    .venv/bin/python benchmarks/hub.py                                  # 1 GiB, 10,000 versions
    .venv/bin/python benchmarks/hub.py --size-mb 16 --versions 200      # quick look
    .venv/bin/python benchmarks/hub.py --postgres postgresql://postgres@127.0.0.1:5432/bench

Goals (issue 15): push and pull within 2x of curl to a sink; each process under 150 MiB peak
RSS; p99 of a filtered listing under 50 ms. It also says how many bytes the hub wrote during the
push (``/proc/PID/io`` wchar): once the archive's size when its chunks are assembled as they
arrive. The sink is a raw-ASGI app on uvicorn that writes the body to a file and fsyncs it (what
the hub does with each version's files). ``--rounds`` rounds (3) of curl, push (to a fresh hub)
and pull (into an empty home), each removing what it wrote; the ratios are the medians of each
round's (on a VM, page-cache writes cost several times more in memory the host took back than in
memory touched a moment ago, which swings single runs). Push and
pull run in child processes (``dosirak models push|pull``), so their peak RSS is their own (from
``wait4``, with their CPU seconds); the hub's is sampled from /proc every 10 ms, and its CPU
seconds during each are read from /proc. Listing rows are inserted directly
(one push's worth of rows each), then 200 filtered listings are timed over HTTP.
Everything lives in a temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

DOSIRAK = str(Path(sys.executable).parent / "dosirak")
_SINK = '''
import os, sys
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    with open(sys.argv[1], "wb") as out:
        while True:
            message = await receive()
            out.write(message.get("body", b""))
            if not message.get("more_body"):
                break
        out.flush(); os.fsync(out.fileno())
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
import uvicorn
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
'''


def _rss_sampler(pid: int, peak: list[int], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    peak[0] = max(peak[0], int(line.split()[1]) * 1024)
        except OSError:
            return
        time.sleep(0.01)


def _timed_child(args: list[str], env: dict[str, str]) -> tuple[float, int, float]:
    """Run a command; its wall time, peak RSS (bytes) and CPU seconds (user + system)."""
    start = time.perf_counter()
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed: {process.stderr.read().decode()[-2000:]}")
    return elapsed, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def _start_hub(data: Path, env: dict[str, str], db: str | None = None) -> tuple[subprocess.Popen,
                                                                               str]:
    args = [DOSIRAK, "hub", "serve", "--port", "0", "--data", str(data)]
    if db:
        args += ["--db", db]
    hub = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
    assert hub.stderr is not None
    for line in hub.stderr:
        if "is ready at" in line:
            threading.Thread(target=lambda: [None for _ in hub.stderr], daemon=True).start()
            return hub, line.split("is ready at ")[1].split()[0]
    raise SystemExit("the hub did not start")


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def _save_model(root: Path, size_mb: int) -> dict[str, str]:
    env = {**os.environ, "DOSIRAK_HOME": str(root / "alice")}
    subprocess.run([sys.executable, "-c", f"""
import os, dosirak
class Blob:
    def __init__(self, data): self.data = data
    def __call__(self, x): return x
dosirak.picklable_model.save_model("big", Blob(os.urandom({size_mb} << 20)))
"""], env=env, check=True)
    return env


def _curl(root: Path, blob: Path) -> float:
    """``curl --upload-file`` of ``blob`` to the sink; the sink's file is removed after."""
    port = 20000 + os.getpid() % 20000
    sink = subprocess.Popen([sys.executable, "-c", _SINK, str(root / "sink.bin"), str(port)])
    try:
        for _ in range(200):
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        start = time.perf_counter()
        # --upload-file streams the file (--data-binary @file reads it all into memory first,
        # and refuses 1 GiB); the same bytes in one POST.
        subprocess.run(["curl", "-s", "-o", "/dev/null", "-X", "POST", "-H", "Expect:",
                        "--upload-file", str(blob), f"http://127.0.0.1:{port}/"], check=True)
        return time.perf_counter() - start
    finally:
        _stop(sink)
        (root / "sink.bin").unlink(missing_ok=True)


def _push_pull(root: Path, env: dict[str, str]) -> dict[str, float]:
    """One push to a fresh hub and one pull from it into an empty home; both removed after."""
    hub_data, bob = root / "hub", root / "bob"
    hub, url = _start_hub(hub_data, env)
    token = (hub_data / "admin-token").read_text().strip()
    env = {**env, "DOSIRAK_HUB_URL": url, "DOSIRAK_HUB_TOKEN": token}
    peak, stop = [0], threading.Event()
    sampler = threading.Thread(target=_rss_sampler, args=(hub.pid, peak, stop), daemon=True)
    sampler.start()
    try:
        written, hub_cpu = _written(hub.pid), _cpu_seconds(hub.pid)
        push, push_rss, push_cpu = _timed_child([DOSIRAK, "models", "push", "big"], env)
        written = _written(hub.pid) - written
        hub_push_cpu, hub_cpu = _cpu_seconds(hub.pid) - hub_cpu, _cpu_seconds(hub.pid)
        pull_env = {**env, "DOSIRAK_HOME": str(bob)}
        pull, pull_rss, pull_cpu = _timed_child([DOSIRAK, "models", "pull", "big"], pull_env)
        hub_pull_cpu = _cpu_seconds(hub.pid) - hub_cpu
    finally:
        stop.set()
        sampler.join()
        _stop(hub)
        shutil.rmtree(hub_data, ignore_errors=True)
        shutil.rmtree(bob, ignore_errors=True)
    return {"push_s": push, "pull_s": pull, "push_rss": push_rss, "pull_rss": pull_rss,
            "hub_rss": peak[0], "hub_written": written, "push_cpu": push_cpu,
            "pull_cpu": pull_cpu, "hub_push_cpu": hub_push_cpu, "hub_pull_cpu": hub_pull_cpu}


def transfer(root: Path, size_mb: int, rounds: int) -> list[dict[str, float]]:
    """``rounds`` rounds of curl, push, pull, each writing fresh copies of the model's bytes
    and removing them after."""
    env = _save_model(root, size_mb)
    model_dir = next((root / "alice" / "models" / "big").iterdir())
    blob = max(model_dir.iterdir(), key=lambda p: p.stat().st_size)
    results = []
    size = blob.stat().st_size
    for _ in range(rounds):
        curl = _curl(root, blob)
        results.append({**_push_pull(root, env), "curl_s": curl, "size": size})
    return results


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, all its threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _written(pid: int) -> int:
    """Bytes the process has passed to write() so far (/proc/PID/io wchar, all threads)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def listing(root: Path, versions: int, db: str | None, label: str) -> dict[str, float]:
    env = {**os.environ, "DOSIRAK_HOME": str(root / f"list-{label}")}
    data = root / f"hub-{label}"
    hub, url = _start_hub(data, env, db)
    try:
        token_file = data / "admin-token"
        if not token_file.exists():
            raise SystemExit(f"{db} holds a hub already (no admin token was made): give the "
                             "benchmark an empty database")
        token = token_file.read_text().strip()
        from dosirak.hub.db import Database, Version, VersionLabel, utcnow

        database = Database(db or f"sqlite:///{data / 'hub.db'}")
        now = utcnow()
        with database.write() as session:
            for i in range(versions):
                row = Version(kind="model", name=f"m{i % 50}", version=f"v{i:08d}",
                              digest="0" * 64, size=1, info="{}",
                              labels={"stage": "prod" if i % 10 == 0 else "dev"}, meta={},
                              creation_time=now, pushed_by="bench",
                              pushed_at=now - datetime.timedelta(seconds=i))
                session.add(row)
                session.flush()
                session.add(VersionLabel(version_id=row.id, key="stage",
                                         value=row.labels["stage"]))
        database.close()
        timings = []
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
            for i in range(220):
                start = time.perf_counter()
                answer = http.get("/api/v1/models/-/versions",
                                  params={"selector": "stage=prod,!deprecated", "limit": 100})
                if i >= 20:  # warm-up
                    timings.append(time.perf_counter() - start)
                assert answer.status_code == 200 and answer.json()["items"]
    finally:
        _stop(hub)
    timings.sort()
    return {"p50_ms": 1000 * statistics.median(timings),
            "p99_ms": 1000 * timings[int(len(timings) * 0.99) - 1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of curl, push and pull (medians reported)")
    parser.add_argument("--postgres", help="a PostgreSQL URL whose database may be filled")
    parser.add_argument("--tmpdir", default=None)
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dosirak-hub-bench-", dir=options.tmpdir))
    try:
        rounds = transfer(root, options.size_mb, options.rounds)
        mib = 1 << 20
        for i, moved in enumerate(rounds, 1):
            print(f"round {i}: curl --upload-file to a sink {moved['curl_s']:.2f} s, push "
                  f"{moved['push_s']:.2f} s ({moved['push_s'] / moved['curl_s']:.2f}x), pull "
                  f"{moved['pull_s']:.2f} s ({moved['pull_s'] / moved['curl_s']:.2f}x); CPU s: "
                  f"push client {moved['push_cpu']:.2f} + hub {moved['hub_push_cpu']:.2f}, pull "
                  f"client {moved['pull_cpu']:.2f} + hub {moved['hub_pull_cpu']:.2f}")
        med = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        push_x = statistics.median(r["push_s"] / r["curl_s"] for r in rounds)
        pull_x = statistics.median(r["pull_s"] / r["curl_s"] for r in rounds)
        print(f"{options.size_mb} MiB, median of {len(rounds)} rounds: push {med['push_s']:.2f} s "
              f"({push_x:.2f}x curl), pull {med['pull_s']:.2f} s ({pull_x:.2f}x curl), curl "
              f"--upload-file to a sink {med['curl_s']:.2f} s (ratios: medians of each round's)")
        print(f"hub wrote {med['hub_written'] / mib:.0f} MiB during the push of "
              f"{med['size'] / mib:.0f} MiB ({med['hub_written'] / med['size']:.2f}x)")
        print(f"peak RSS (highest of the rounds): push client "
              f"{max(r['push_rss'] for r in rounds) / mib:.0f} MiB, pull client "
              f"{max(r['pull_rss'] for r in rounds) / mib:.0f} MiB, hub "
              f"{max(r['hub_rss'] for r in rounds) / mib:.0f} MiB")
        print(f"CPU seconds (medians): push client {med['push_cpu']:.2f} + hub "
              f"{med['hub_push_cpu']:.2f}, pull client {med['pull_cpu']:.2f} + hub "
              f"{med['hub_pull_cpu']:.2f} (less noisy than wall times on a shared machine)")
        for label, db in [("sqlite", None)] + ([("postgres", options.postgres)]
                                               if options.postgres else []):
            listed = listing(root, options.versions, db, label)
            print(f"list {options.versions} versions, selector stage=prod,!deprecated, "
                  f"{label}: p50 {listed['p50_ms']:.1f} ms, p99 {listed['p99_ms']:.1f} ms")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
