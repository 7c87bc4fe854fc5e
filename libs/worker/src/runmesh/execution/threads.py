"""Run a blocking callable on its own thread and await it."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_in_thread(fn: Callable[[], T], *, name: str) -> tuple[asyncio.Future[T], threading.Thread]:
    """Start `fn` on a new daemon thread; the future resolves with its result or exception.

    The thread is returned too, so that code ignoring a stop can be interrupted in it.

    Not the loop's default executor: a sync action may run for hours or ignore cancellation,
    and it must never take a slot that other runs or `asyncio.to_thread` callers need.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    # An interrupted action's exception may arrive after its awaiter gave up on it: reading it
    # here keeps asyncio from reporting it as never retrieved.
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
    ctx = contextvars.copy_context()

    def settle_result(value: T) -> None:
        if not future.done():
            future.set_result(value)

    def settle_error(exc: BaseException) -> None:
        if not future.done():
            future.set_exception(exc)

    def deliver(settle: Callable[[T], None] | Callable[[BaseException], None], arg: object) -> None:
        try:
            loop.call_soon_threadsafe(settle, arg)  # type: ignore[arg-type]
        except RuntimeError:
            # The loop closed while an abandoned action (one that ignored cancellation) kept
            # running: nobody awaits its result any more.
            return

    def target() -> None:
        try:
            value = ctx.run(fn)
        except BaseException as exc:  # noqa: BLE001 -- delivered to the awaiting coroutine, not lost
            deliver(settle_error, exc)
        else:
            deliver(settle_result, value)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return future, thread
