"""Time to first chunk versus the whole answer, for a generator that yields every 10 ms.

    python benchmarks/streaming.py [--requests 20] [--items 20]

A real ``dosirak serve`` (one API worker) serves three streaming APIs whose generators sleep
10 ms before each of ``--items`` items: an async generator (text chunks), the same as
server-sent events (``Accept: text/event-stream``) and a sync generator (run item by item in the
thread pool). The client reads each answer as it arrives (httpx, one request at a time) and
notes when the first chunk and the end arrive, counted from sending the request. The ideal is
10 ms to the first item and ``items * 10`` ms in all: what is above is the cost of streaming.
Prints a Markdown table of medians and 90th percentiles.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

SERVICE = '''
import asyncio
import time

import dosirak as bentoml
from dosirak.io import Text

svc = bentoml.Service("stream_bench")


@svc.api(input=Text(), output=Text())
async def tokens(count: str):
    for i in range(int(count)):
        await asyncio.sleep(0.01)
        yield f"token{i} "


@svc.api(input=Text(), output=Text())
def tokens_sync(count: str):
    for i in range(int(count)):
        time.sleep(0.01)
        yield f"token{i} "
'''


def measure(client: httpx.Client, route: str, items: int, accept: str | None
            ) -> tuple[float, float]:
    headers = {"content-type": "text/plain", **({"accept": accept} if accept else {})}
    start = time.perf_counter()
    first = None
    with client.stream("POST", route, content=str(items).encode(), headers=headers) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            if first is None and chunk:
                first = time.perf_counter() - start
    assert first is not None
    return first, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--items", type=int, default=20)
    args = parser.parse_args()
    dosirak = str(Path(sys.executable).parent / "dosirak")
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "service.py").write_text(textwrap.dedent(SERVICE))
        server = subprocess.Popen([dosirak, "serve", "service.py:svc", "--port", "0"],
                                  cwd=directory, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True,
                                  env={**os.environ, "DOSIRAK_HOME": directory})
        try:
            url = None
            assert server.stdout is not None
            for line in server.stdout:
                match = re.search(r"is ready at (http://\S+?)[ ;(]", line)
                if match:
                    url = match.group(1)
                    break
            if url is None:
                raise SystemExit("the server did not start")
            cases = [("async generator, text/plain", "/tokens", None),
                     ("async generator, text/event-stream", "/tokens", "text/event-stream"),
                     ("sync generator, text/plain", "/tokens_sync", None)]
            print(f"{args.items} items, one every 10 ms (ideal: first 10 ms, all "
                  f"{args.items * 10} ms); {args.requests} requests each\n")
            print("| API | first chunk, median (p90) | whole answer, median (p90) |")
            print("|---|---|---|")
            with httpx.Client(base_url=url, timeout=60) as client:
                for label, route, accept in cases:
                    measure(client, route, 2, accept)  # warm up
                    runs = [measure(client, route, args.items, accept)
                            for _ in range(args.requests)]
                    firsts = sorted(r[0] * 1000 for r in runs)
                    wholes = sorted(r[1] * 1000 for r in runs)
                    p90 = max(0, int(len(runs) * 0.9) - 1)
                    print(f"| {label} | {statistics.median(firsts):.1f} ms "
                          f"({firsts[p90]:.1f}) | {statistics.median(wholes):.1f} ms "
                          f"({wholes[p90]:.1f}) |")
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
