"""Binary .npy versus JSON for a 4 MiB array, over real HTTP.

    python benchmarks/npy_vs_json.py [--repeat 20] [--rows 512 --cols 1024]

A NumpyNdarray echo service runs under uvicorn in a child process (so client and server do not
share a GIL); the client posts the same float64 array again and again in each format and reads
the echo back, timing whole round trips: client encoding, the request, the server's parse and
render, the response, client decoding. The JSON client uses orjson, JSON's best case in Python.
Throughput is the array's size divided by the round-trip time (each round trip moves the array
both ways). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import time

import httpx
import numpy as np
import orjson

NPY = "application/x-npy"


def serve(fd: int) -> None:
    """Child process: serve an echo API on the inherited listening socket."""
    import uvicorn

    import dosirak
    from dosirak.io import NumpyNdarray
    from dosirak.server.app import create_app

    svc = dosirak.Service("echo")

    @svc.api(input=NumpyNdarray(), output=NumpyNdarray())
    def echo(x: np.ndarray) -> np.ndarray:
        return x

    uvicorn.run(create_app(svc), fd=fd, log_level="warning", access_log=False)


def npy_round_trip(client: httpx.Client, array: np.ndarray) -> tuple[np.ndarray, int]:
    body = npy_body(array)
    response = client.post("/echo", content=body, headers={"content-type": NPY, "accept": NPY})
    response.raise_for_status()
    return np.load(io.BytesIO(response.content), allow_pickle=False), len(body)


def json_round_trip(client: httpx.Client, array: np.ndarray) -> tuple[np.ndarray, int]:
    # The fastest JSON a Python client has (orjson), to give JSON its best case.
    body = orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY)
    response = client.post("/echo", content=body,
                           headers={"content-type": "application/json"})
    response.raise_for_status()
    return np.asarray(orjson.loads(response.content)), len(body)


def server_cost(array: np.ndarray) -> dict[str, float]:
    """Milliseconds the server spends parsing and rendering the array, per format."""
    from dosirak.io import NumpyNdarray

    descriptor = NumpyNdarray()
    bodies = {"npy": (npy_body(array), NPY), "json": (orjson.dumps(
        array, option=orjson.OPT_SERIALIZE_NUMPY), "application/json")}
    costs = {}
    for name, (body, media_type) in bodies.items():
        times = []
        for _ in range(5):
            started = time.perf_counter()
            descriptor.render(descriptor.parse(body, media_type, {}), media_type)
            times.append(time.perf_counter() - started)
        costs[name] = statistics.median(times) * 1000
    return costs


def npy_body(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def measure(url: str, array: np.ndarray, repeat: int) -> list[tuple[str, int, float, float]]:
    rows = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for name, round_trip in (("npy", npy_round_trip), ("json", json_round_trip)):
            back, size = round_trip(client, array)  # warm-up, and a correctness check
            np.testing.assert_array_equal(back, array)
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                round_trip(client, array)
                times.append(time.perf_counter() - started)
            median = statistics.median(times)
            rows.append((name, size, median, array.nbytes / median / 1e6))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--cols", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve_fd is not None:
        serve(options.serve_fd)
        return
    array = np.random.default_rng(0).standard_normal((options.rows, options.cols))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    child = subprocess.Popen([sys.executable, __file__, "--serve-fd", str(listener.fileno())],
                             pass_fds=[listener.fileno()])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or child.poll() is not None:
                raise SystemExit("the benchmark server did not start")
            time.sleep(0.05)
        results = measure(url, array, options.repeat)
    finally:
        child.terminate()
        child.wait(timeout=30)
        listener.close()
    print(f"array: {array.shape} float64, {array.nbytes / 2**20:.1f} MiB; {options.repeat} "
          f"round trips per format; {os.cpu_count()} CPUs")
    print()
    costs = server_cost(array)
    print("| format | request body | median round trip | throughput | server parse + render |")
    print("|---|---|---|---|---|")
    for name, size, median, rate in results:
        print(f"| {name} | {size / 2**20:.1f} MiB | {median * 1000:.1f} ms | {rate:.0f} MB/s "
              f"| {costs[name]:.1f} ms |")
    npy, plain = results[0], results[1]
    print()
    print(f".npy is {plain[2] / npy[2]:.0f}x faster than JSON for this array.")


if __name__ == "__main__":
    main()
