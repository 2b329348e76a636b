"""Request ids: sane caller ids are kept, anything else is replaced by a fresh unique id."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dosirak.observability.request_id import (
    MAX_LENGTH,
    new_request_id,
    request_id,
    request_id_from_headers,
)


@pytest.mark.parametrize("header", [
    b"checkout-7f3a", "checkout-7f3a", b"3f2504e0-4f89-11d3-9a0c-0305e82c3301",
    b"trace:span.42", b"YWJjZA==", b"a+b/c_d", b"x" * MAX_LENGTH,
])
def test_sane_ids_are_kept(header):
    kept = request_id(header)
    assert kept == (header.decode() if isinstance(header, bytes) else header)


@pytest.mark.parametrize("header", [
    None, b"", "", b"x" * (MAX_LENGTH + 1), b"has space", b"new\nline", b'quote"d',
    b"semi;colon", b"caf\xc3\xa9", "café", b"<script>", b"tab\tbed",
])
def test_other_ids_are_replaced(header):
    replaced = request_id(header)
    assert replaced != header
    assert request_id(replaced.encode()) == replaced  # a generated id is itself sane


def test_generated_ids_are_unique_in_a_process():
    ids = {new_request_id() for _ in range(10000)}
    assert len(ids) == 10000
    assert all(len(generated) <= 24 for generated in ids)


def test_generated_ids_differ_across_processes_and_forks():
    code = ("from dosirak.observability.request_id import new_request_id\n"
            "print(' '.join(new_request_id() for _ in range(100)))")
    runs = [set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True).stdout.split()) for _ in range(2)]
    assert len(runs[0]) == len(runs[1]) == 100 and not runs[0] & runs[1]

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its ids must not repeat the parent's
        os.close(read)
        os.write(write, " ".join(new_request_id() for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    parent_ids = {new_request_id() for _ in range(50)}
    with os.fdopen(read) as pipe:
        child_ids = set(pipe.read().split())
    os.waitpid(pid, 0)
    assert len(child_ids) == 50 and not parent_ids & child_ids


def test_from_asgi_headers():
    headers = [(b"host", b"example"), (b"x-request-id", b"abc-1")]
    assert request_id_from_headers(headers) == "abc-1"
    generated = request_id_from_headers([(b"host", b"example")])
    assert generated and generated != request_id_from_headers([(b"host", b"example")])
    assert request_id_from_headers([(b"x-request-id", b"bad id")]) != "bad id"
