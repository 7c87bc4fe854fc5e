"""Helpers for runmesh's tests, shipped with the library so every member's tests share them."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")


@overload
async def eventually(
    cond: Callable[[], Awaitable[T]],
    *,
    timeout: float = ...,  # noqa: ASYNC109
    interval: float = ...,
    message: str = ...,
) -> T: ...


@overload
async def eventually(
    cond: Callable[[], T],
    *,
    timeout: float = ...,  # noqa: ASYNC109
    interval: float = ...,
    message: str = ...,
) -> T: ...


async def eventually(
    cond: Callable[[], object],
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - a polling deadline, not an operation's timeout
    interval: float = 0.05,
    message: str = "condition still false at the deadline",
) -> object:
    """Poll `cond` (sync or async) until it returns a truthy value, and return that value.

    An AssertionError raised by `cond` counts as "not yet", so `cond` may assert. At the
    deadline this raises AssertionError with `message` (and the last assertion's text):
    tests wait with this, never with a bare sleep.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_failure: AssertionError | None = None
    while True:
        try:
            value = cond()
            if inspect.isawaitable(value):
                value = await value
        except AssertionError as failure:
            last_failure = failure
        else:
            if value:
                return value
            last_failure = None
        if loop.time() >= deadline:
            detail = f": {last_failure}" if last_failure is not None else ""
            raise AssertionError(f"{message} (after {timeout:g}s){detail}") from last_failure
        await asyncio.sleep(interval)


def await_chain(task: asyncio.Task[object]) -> str:
    """Where a pending task waits: every frame down its chain of awaited coroutines.

    `Task.print_stack` shows only the task's own coroutine frame, which says nothing about
    the library call a hung task is stuck in; this follows `cr_await` to the bottom.
    """
    lines: list[str] = []
    awaited: object = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None:
            code = frame.f_code
            lines.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}")
        elif not lines or not lines[-1].startswith("  awaiting"):
            lines.append(f"  awaiting {awaited!r}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return "\n".join(lines)


def zip_bomb(
    name: str = "bomb.bin", size: int = 1 << 30, files: dict[str, bytes] | None = None
) -> bytes:
    """A zip whose entry `name` inflates to `size` zero bytes (1 GiB by default) but weighs
    about a thousandth of that, after `files`: what archive checks must refuse unopened.

    Built in well under a second: deflating a chunk of zeros after a full flush always gives
    the same bytes, so one compressed chunk is repeated instead of deflating `size` bytes.
    """
    import io
    import zipfile
    import zlib

    chunk_size = 1 << 22
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(chunk_size)) + compressor.flush(zlib.Z_FULL_FLUSH)

    class _RepeatedZeros:
        def compress(self, data: bytes) -> bytes:
            return block

        def flush(self) -> bytes:
            return b"\x03\x00"  # an empty final block ends the stream

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file_name, content in (files or {}).items():
            archive.writestr(file_name, content)
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=size >= 1 << 32) as entry:
            entry._compressor = _RepeatedZeros()  # type: ignore[attr-defined]
            zeros = bytes(chunk_size)
            for _ in range(size // chunk_size):
                entry.write(zeros)
    return buffer.getvalue()
