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
