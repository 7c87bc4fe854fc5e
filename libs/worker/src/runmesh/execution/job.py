"""The `job` method: run an action in a spawned child process the worker can always kill."""

from __future__ import annotations

import asyncio
import io
import logging
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import multiprocessing.popen_forkserver as popen_forkserver
import multiprocessing.reduction
import multiprocessing.spawn
import multiprocessing.util
import os
import shlex
import signal
import threading
from collections.abc import Awaitable, Callable, Iterable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from runmesh.core.events import EventPayload
from runmesh.core.retries import RETRIES
from runmesh.execution.job_child import JobSpec, job_main
from runmesh.execution.job_frames import (
    MAX_FRAME_BYTES,
    CallMessage,
    EventMessage,
    JobMessage,
    JobProtocolError,
    OutcomeMessage,
    decode_job_message,
    reply_frame,
)
from runmesh.execution.memory_limit import MemoryLimit
from runmesh.execution.outcome import Cancelled, Failed, Outcome
from runmesh.execution.stop import StopSignal
from runmesh.storage.brokered import BrokerCallError

log = logging.getLogger(__name__)

EmitFn = Callable[[str, EventPayload], Awaitable[None]]

_PIPE_QUEUE_SIZE = 256  # messages read ahead of the emitter; the child blocks beyond it
_MAX_CALLS = 16  # storage calls of one job served at once; its next call waits for a slot

__all__ = ["JobSpec", "execute_job", "preload_job_modules", "start_job_server", "warm_job_server"]

# Jobs are forked from a fork server: a clean single-threaded process (no sockets, locks or
# event loop of the worker's) that imported these modules once, so a job starts in
# milliseconds instead of re-importing pydantic, aiobotocore, asyncpg... (about 2 s) each time.
_JOB_CONTEXT = multiprocessing.get_context("forkserver")
_preload: set[str] = {"runmesh.execution.job_child"}
_server_started = False
_server_lock = threading.Lock()


def preload_job_modules(modules: Iterable[str]) -> None:
    """Have the job fork server import `modules` (one that fails to import is skipped).

    Only takes effect before the server starts, at the first job or `start_job_server()`.
    """
    added = set(modules) - _preload
    if added and _server_started:
        log.debug("job server already running; not preloading %s", sorted(added))
    _preload.update(added)


def start_job_server() -> None:
    """Start the job fork server now (blocking: call it in a thread) rather than at the first
    job; its imports then run while the worker joins its group."""
    global _server_started  # one fork server per process, as multiprocessing has
    with _server_lock:  # also keeps an interpreter server's start from swapping the executable
        if not _server_started:
            _JOB_CONTEXT.set_forkserver_preload(sorted(_preload))
            _server_started = True
        multiprocessing.forkserver.ensure_running()


def warm_job_server(action_classes: Iterable[type]) -> None:
    """Preload the modules the job actions' classes come from (their bases: the services'
    pipelines and what they import; never a plugin's own modules, which a new version may
    change) and start the job server, whose imports then overlap the worker's start-up."""
    modules = {
        base.__module__
        for cls in action_classes
        for base in cls.__mro__
        if not base.__module__.startswith(("runmesh_plugins", "builtins", "abc"))
    }
    preload_job_modules(modules)
    start_job_server()


_CLEAN_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
"""The only variables a published version's fork server (and so its jobs) starts with: none
of the platform's settings, keys or tokens, whatever the worker's environment holds."""


def _clean_launcher(python: Path) -> Path:
    """A script next to `python` that runs it with `_CLEAN_ENV_KEEP` only (`env -i`).

    multiprocessing starts a fork server with the caller's whole environment and no way to
    pass another; its executable, though, is ours to choose."""
    keep = [f"{key}={os.environ[key]}" for key in _CLEAN_ENV_KEEP if key in os.environ]
    words = ["exec", "/usr/bin/env", "-i", *keep, str(python), '"$@"']
    script = "#!/bin/sh\n" + " ".join(w if w == '"$@"' else shlex.quote(w) for w in words) + "\n"
    launcher = python.with_name("runmesh-clean-python")
    temporary = launcher.with_suffix(".tmp")
    temporary.write_text(script)
    temporary.chmod(0o700)
    temporary.replace(launcher)
    return launcher


class _InterpreterForkServer:
    """A job fork server run by a published version's interpreter (its virtualenv).

    It imports what the worker's own server does (runmesh, pydantic, the service's bases)
    once, so a published version's job forks in milliseconds too instead of starting a fresh
    interpreter each time. It starts with a clean environment (`_clean_launcher`) and exits
    with the worker, as the worker's own server does.
    """

    def __init__(self, python: Path) -> None:
        self.python = python
        self.server = multiprocessing.forkserver.ForkServer()
        self.server.set_forkserver_preload(sorted(_preload))
        self._launcher: Path | None = None

    def ensure_running(self) -> None:
        """Start the server now if it is not running (blocking: call it in a thread)."""
        if self._launcher is None:
            self._launcher = _clean_launcher(self.python)
        launcher = self._launcher
        # The interpreter a server starts with is process-global in multiprocessing: swap
        # it only while this server starts, under the lock the worker's own server uses.
        with _server_lock:
            previous = multiprocessing.spawn.get_executable()
            multiprocessing.spawn.set_executable(str(launcher))
            try:
                self.server.ensure_running()
            finally:
                multiprocessing.spawn.set_executable(previous)

    def process(self, spec: JobSpec, conn: Connection) -> multiprocessing.process.BaseProcess:
        """A job process to fork from this server (started at the process's start)."""
        process = _InterpreterJobProcess(
            target=job_main,
            args=(spec, conn, os.getpid()),
            name=f"runmesh-job-{spec.run_id}",
            daemon=True,
        )
        process.python = str(self.python)
        return process


class _InterpreterPopen(popen_forkserver.Popen):
    """multiprocessing's fork server launch, from an interpreter's server, less what would
    make the job the worker's twin: its sys.path (the virtualenv's packages come first in the
    job) and its __main__ module."""

    def _launch(self, process_obj: Any) -> None:
        server = _interpreter_server(Path(process_obj.python))
        prep_data = multiprocessing.spawn.get_preparation_data(process_obj._name)
        for key in ("sys_path", "init_main_from_name", "init_main_from_path"):
            prep_data.pop(key, None)
        buffer = io.BytesIO()
        multiprocessing.context.set_spawning_popen(self)
        try:
            multiprocessing.reduction.dump(prep_data, buffer)
            multiprocessing.reduction.dump(process_obj, buffer)
        finally:
            multiprocessing.context.set_spawning_popen(None)
        server.ensure_running()
        fds: list[int] = self._fds  # type: ignore[attr-defined]  # set by Popen.__init__
        self.sentinel, w = server.server.connect_to_new_process(fds)
        parent_w = os.dup(w)
        close_fds = multiprocessing.util.close_fds  # type: ignore[attr-defined]  # untyped
        self.finalizer = multiprocessing.util.Finalize(self, close_fds, (parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as stream:
            stream.write(buffer.getbuffer())
        self.pid = multiprocessing.forkserver.read_signed(self.sentinel)


class _InterpreterJobProcess(multiprocessing.context.ForkServerProcess):
    """A job forked from the fork server of the interpreter named by `python`."""

    python = ""

    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _InterpreterPopen(process_obj)


_interpreter_servers: dict[Path, _InterpreterForkServer] = {}


def _interpreter_server(python: Path) -> _InterpreterForkServer:
    with _server_lock:
        server = _interpreter_servers.get(python)
        if server is None:
            server = _interpreter_servers[python] = _InterpreterForkServer(python)
        return server


class CallHandler(Protocol):
    """Serves a confined job's calls (the worker's storage broker for the run)."""

    async def handle(
        self, op: str, args: dict[str, Any], body: bytes
    ) -> tuple[dict[str, Any], bytes]:
        """Perform one call; a failure raises BrokerCallError, whose type and message the job
        gets."""
        ...


async def execute_job(
    spec: JobSpec,
    emit: EmitFn,
    stop: StopSignal,
    *,
    grace_s: float,
    python: Path | None = None,
    calls: CallHandler | None = None,
) -> Outcome:
    """Run the action in a child process; its `run` calls arrive through `emit`, in order.

    The child is forked from the job server (never from the worker: no inherited sockets, locks
    or event loop), or, with `python`, from that interpreter's server. It holds itself to
    `spec.memory`, and is sent SIGTERM on a stop request and SIGKILL `grace_s` later. A crash,
    an exit without an outcome, a kill (for memory: `OutOfMemory`) or a malformed message ends
    the attempt `failed`; the worker itself is untouched. `calls` serves the job's storage
    calls.
    """
    conn, child_conn = _JOB_CONTEXT.Pipe(duplex=True)
    process: multiprocessing.process.BaseProcess
    if python is None:
        process = _JOB_CONTEXT.Process(
            target=job_main,
            args=(spec, child_conn, os.getpid()),
            name=f"runmesh-job-{spec.run_id}",
            daemon=True,
        )
        # In a thread: the first start waits for the job server's imports.
        await asyncio.to_thread(_start_process, process)
    else:
        process = _interpreter_server(python).process(spec, child_conn)
        await asyncio.to_thread(process.start)
    child_conn.close()  # the child holds the only other end: EOF means it is gone
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[JobMessage | str | None] = asyncio.Queue(maxsize=_PIPE_QUEUE_SIZE)
    reader = threading.Thread(
        target=_read_pipe, args=(conn, inbox, loop), name=f"job-pipe-{spec.run_id}", daemon=True
    )
    reader.start()
    stopper = asyncio.ensure_future(_stop_process(process, stop, grace_s))
    replies = _Replies(conn, calls)
    outcome: Outcome | None = None
    try:
        while (message := await inbox.get()) is not None:
            if isinstance(message, str):  # the child broke the protocol: it is not trusted on
                log.warning("job %s: %s; killing it", process.name, message)
                process.kill()
                outcome = Failed("JobProtocolError", f"the job sent {message}")
            elif outcome is not None:
                continue  # nothing counts after the outcome
            elif isinstance(message, EventMessage):
                await emit(message.event_type, message.payload)
            elif isinstance(message, OutcomeMessage):
                outcome = message.outcome
                if calls is None:  # a confined job's retries are the broker's, counted here
                    RETRIES.merge(message.retries)
            else:
                await replies.answer(message)
        await asyncio.to_thread(process.join)
    finally:
        stopper.cancel()
        await replies.close()
        await asyncio.gather(stopper, return_exceptions=True)
        if process.is_alive():  # only when this coroutine itself was cancelled
            process.kill()
            await asyncio.to_thread(process.join)
        conn.close()
    if stop.requested and (outcome is None or isinstance(outcome, Cancelled)):
        return stop.outcome()
    if outcome is None:
        return _crash_outcome(process.exitcode, spec.memory)
    return outcome


class _Replies:
    """Answers a job's calls concurrently (at most `_MAX_CALLS` at once), each reply written
    off the loop: a job that stops reading blocks only its own writes."""

    def __init__(self, conn: Connection, calls: CallHandler | None) -> None:
        self._conn = conn
        self._calls = calls
        self._slots = asyncio.Semaphore(_MAX_CALLS)
        self._tasks: set[asyncio.Task[None]] = set()
        self._send_lock = threading.Lock()

    async def answer(self, call: CallMessage) -> None:
        await self._slots.acquire()
        task = asyncio.ensure_future(self._answer(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, call: CallMessage) -> None:
        try:
            if self._calls is None:
                frame = reply_frame(
                    call.call_id, None, error_type="BrokerUnavailable", message="no broker"
                )
            else:
                try:
                    result, body = await self._calls.handle(call.op, call.args, call.body)
                    frame = reply_frame(call.call_id, result, body)
                except JobProtocolError as exc:  # a reply over the frame bound: say so
                    frame = reply_frame(
                        call.call_id, None, error_type="BrokerInternalError", message=str(exc)
                    )
                except BrokerCallError as exc:
                    frame = reply_frame(
                        call.call_id,
                        None,
                        error_type=exc.error_type,
                        message=exc.message,
                        details=exc.details,
                    )
            await asyncio.to_thread(self._send, frame)
        except (OSError, EOFError):
            pass  # the job is gone; its outcome says why
        finally:
            self._slots.release()

    def _send(self, frame: bytes) -> None:
        with self._send_lock:
            self._conn.send_bytes(frame)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _start_process(process: multiprocessing.process.BaseProcess) -> None:
    start_job_server()
    process.start()


def _read_pipe(
    conn: Connection,
    inbox: asyncio.Queue[JobMessage | str | None],
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Forward the child's messages to the loop, blocking (back-pressure) when it lags.

    Each frame is decoded and validated here: a malformed one ends the reading (a string
    saying what was wrong goes to the loop, which kills the job)."""
    try:
        while True:
            message: JobMessage | str
            try:
                message = decode_job_message(conn.recv_bytes(MAX_FRAME_BYTES))
            except (EOFError, ConnectionResetError):
                break
            except OSError as exc:  # recv_bytes refuses a frame over the bound with OSError
                message = f"an unreadable message ({exc})"
            except JobProtocolError as exc:
                message = f"a malformed message ({exc})"
            asyncio.run_coroutine_threadsafe(inbox.put(message), loop).result()
            if isinstance(message, str):
                break
    finally:
        try:
            asyncio.run_coroutine_threadsafe(inbox.put(None), loop).result()
        except RuntimeError:
            return  # the loop is gone: the worker is shutting down and no one awaits this job


async def _stop_process(
    process: multiprocessing.process.BaseProcess, stop: StopSignal, grace_s: float
) -> None:
    await stop.wait()
    if process.is_alive() and process.pid is not None:
        # SIGUSR1 says "stop, you will be redone" (shutdown); SIGTERM says "stop" (cancel,
        # timeout). One signal each, so the child never sees a stop without its reason.
        os.kill(process.pid, signal.SIGUSR1 if stop.kind == "shutdown" else signal.SIGTERM)
    await asyncio.sleep(grace_s)
    if process.is_alive():
        log.warning("job %s ignored SIGTERM for %.1fs; sending SIGKILL", process.name, grace_s)
        process.kill()


def _crash_outcome(exitcode: int | None, memory: MemoryLimit | None) -> Failed:
    if memory is not None and memory.exceeded():  # the kernel killed it in its cgroup
        return Failed("OutOfMemory", memory.message())
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        how = f"was killed by {name}"
    else:
        how = f"exited with code {exitcode} without reporting a result"
    if memory is not None and memory.how == "rlimit":
        # An allocator that cannot allocate may abort rather than raise MemoryError.
        return Failed(
            "JobCrashed",
            f"the job process {how} (a crash, os._exit, or a library failing to allocate "
            f"within its memory limit of {memory.mb} MB)",
        )
    return Failed("JobCrashed", f"the job process {how} (a crash, or os._exit)")
