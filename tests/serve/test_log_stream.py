"""Batched log writes: nothing per line, everything by the timer, the rest at close."""

from __future__ import annotations

import asyncio
import os

from dosirak.serve.log_stream import HIGH_WATER, BatchedLogStream


def read_available(fd: int) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 1 << 20)
    except BlockingIOError:
        return b""


def test_lines_are_written_by_the_timer_in_one_go() -> None:
    read_end, write_end = os.pipe()
    stream = BatchedLogStream(fd=write_end, interval=0.05)

    async def main() -> None:
        stream.start(asyncio.get_running_loop())
        for number in range(3):
            stream.write(f"line {number}\n")
            stream.flush()  # what logging.StreamHandler does after every record: nothing
        assert read_available(read_end) == b""
        await asyncio.sleep(0.15)
        assert read_available(read_end) == b"line 0\nline 1\nline 2\n"

    asyncio.run(main())
    stream.write("last words\n")
    stream.close()
    assert read_available(read_end) == b"last words\n"
    stream.write("after close\n")  # written at once: nobody drains any more
    assert read_available(read_end) == b"after close\n"
    os.close(read_end)
    os.close(write_end)


def test_a_full_buffer_is_written_without_waiting_for_the_timer(tmp_path) -> None:
    with open(tmp_path / "log", "w+b") as file:  # a file, not a pipe: 64 KiB would fill it
        stream = BatchedLogStream(fd=file.fileno(), interval=60)
        line = "x" * 99 + "\n"
        for _ in range(HIGH_WATER // len(line) + 1):
            stream.write(line)
        assert os.fstat(file.fileno()).st_size >= HIGH_WATER


def test_access_lines_handed_over_unformatted_read_as_logged_ones(tmp_path) -> None:
    """serve's stream formats access lines when it writes them: same text, same JSON, same
    order among other lines, as the logging path writes for the same request."""
    import io
    import json
    import logging
    import re

    from dosirak.observability.access_log import ACCESS_LOGGER, AccessLog
    from dosirak.observability.log_setup import configure_logger

    logger = logging.getLogger(ACCESS_LOGGER)
    request = ("rid-1", "POST", "/a path", 200, 1.25, 52, None)
    try:
        for form in ("text", "json"):
            plain = io.StringIO()
            configure_logger(ACCESS_LOGGER, enabled=True, format=form, stream=plain)
            AccessLog().record(*request)
            logged = plain.getvalue()

            with open(tmp_path / f"log.{form}", "w+b") as file:
                stream = BatchedLogStream(fd=file.fileno(), interval=60)
                configure_logger(ACCESS_LOGGER, enabled=True, format=form, stream=stream)
                assert getattr(logger.handlers[0], "access_later", None) is not None
                stream.write("before\n")
                AccessLog().record(*request)
                stream.write("after\n")
                assert os.fstat(file.fileno()).st_size == 0  # nothing formatted or written yet
                stream.drain()
                file.seek(0)
                written = file.read().decode().splitlines()
            assert written[0] == "before" and written[2] == "after"
            if form == "text":
                stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
                assert re.fullmatch(stamp + r".*", written[1])
                assert written[1].split(" ", 1)[1] == logged.rstrip("\n").split(" ", 1)[1]
                assert 'path="/a path"' in written[1] and "response_bytes=-" in written[1]
            else:
                ours, theirs = json.loads(written[1]), json.loads(logged)
                assert ours.pop("time") and theirs.pop("time")
                assert ours == theirs and ours["logger"] == ACCESS_LOGGER
    finally:
        configure_logger(ACCESS_LOGGER, enabled=False)
        logger.handlers.clear()
