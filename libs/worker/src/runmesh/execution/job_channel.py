"""The job's end of its pipe: the action's reports go to the worker as frames, and calls to
the worker's storage broker wait for their replies."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import threading
from multiprocessing.connection import Connection
from typing import Any

from runmesh.core.events import EventPayload
from runmesh.core.retries import RETRIES
from runmesh.execution.job_frames import (
    MAX_FRAME_BYTES,
    JobProtocolError,
    ReplyMessage,
    call_frame,
    decode_reply,
    event_frame,
    outcome_frame,
)
from runmesh.execution.outcome import Outcome
from runmesh.storage.brokered import BrokerCallError

_SEND_IN_THREAD_BYTES = 64 * 1024  # larger frames are written off the job's event loop
_BLOCKING_CALL_TIMEOUT_S = 300.0  # as long as the broker gives one storage step


class JobChannel:
    """A `RunSink` writing to the worker's pipe (the write blocks while the worker lags), and
    the `BrokerChannel` through which a confined job reaches its storages."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._send_lock = threading.Lock()
        self._ids = itertools.count()
        self._pending: dict[int, concurrent.futures.Future[ReplyMessage]] = {}
        self._pending_lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._closed: str | None = None

    def emit(self, event_type: str, payload: EventPayload) -> None:
        """Send one event to the worker."""
        self._send(event_frame(event_type, payload))

    def finish(self, outcome: Outcome) -> None:
        """Send the attempt's outcome; nothing follows it."""
        self._send(outcome_frame(outcome, RETRIES.snapshot()))

    async def call(
        self, op: str, args: dict[str, Any], body: bytes = b""
    ) -> tuple[dict[str, Any], bytes]:
        """Call the worker's storage broker and wait for its reply (BrokerCallError if the
        call failed or the pipe closed)."""
        call_id, future = self._register()
        frame = call_frame(call_id, op, args, body)
        try:
            if len(frame) > _SEND_IN_THREAD_BYTES:
                await asyncio.to_thread(self._send, frame)
            else:
                self._send(frame)
            reply = await asyncio.wrap_future(future)
        finally:
            self._forget(call_id)
        return _result(reply)

    def call_blocking(self, op: str, args: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        """`call`, waiting in the calling thread: for the one round trip that opens a storage,
        which the synchronous `open_storage` and `platform_storage` make."""
        call_id, future = self._register()
        try:
            self._send(call_frame(call_id, op, args))
            reply = future.result(timeout=_BLOCKING_CALL_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            raise BrokerCallError("BrokerUnavailable", "the worker did not answer") from None
        finally:
            self._forget(call_id)
        return _result(reply)

    def _register(self) -> tuple[int, concurrent.futures.Future[ReplyMessage]]:
        call_id = next(self._ids)
        future: concurrent.futures.Future[ReplyMessage] = concurrent.futures.Future()
        with self._pending_lock:
            if self._closed is not None:
                raise BrokerCallError("BrokerUnavailable", self._closed)
            self._pending[call_id] = future
            self._ensure_reader()
        return call_id, future

    def _forget(self, call_id: int) -> None:
        with self._pending_lock:
            self._pending.pop(call_id, None)

    def _send(self, frame: bytes) -> None:
        with self._send_lock:
            self._conn.send_bytes(frame)

    def _ensure_reader(self) -> None:
        if self._reader is None:
            self._reader = threading.Thread(
                target=self._read_replies, name="job-broker-replies", daemon=True
            )
            self._reader.start()

    def _read_replies(self) -> None:
        reason = "the worker closed the job's pipe"
        try:
            while True:
                try:
                    reply = decode_reply(self._conn.recv_bytes(MAX_FRAME_BYTES))
                except (EOFError, OSError):
                    break
                except JobProtocolError as exc:
                    reason = f"the worker sent an invalid reply: {exc}"
                    break
                with self._pending_lock:
                    future = self._pending.get(reply.call_id)
                if future is not None:
                    # The caller may have been cancelled (its future with it) meanwhile.
                    with contextlib.suppress(concurrent.futures.InvalidStateError):
                        future.set_result(reply)
        finally:
            with self._pending_lock:
                self._closed = reason
                pending = list(self._pending.values())
            for future in pending:
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    future.set_exception(BrokerCallError("BrokerUnavailable", reason))


def _result(reply: ReplyMessage) -> tuple[dict[str, Any], bytes]:
    if reply.error_type is not None:
        raise BrokerCallError(reply.error_type, reply.message, reply.details)
    return reply.result or {}, reply.body
