"""The sandbox's PostgreSQL: the `pgserver` wheel's binaries run on a loopback TCP port."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import signal
import stat
import sys
from pathlib import Path

import asyncpg

from runmesh.common.sandbox.errors import SandboxError
from runmesh.common.sandbox.processes import LOOPBACK, free_port, run_command
from runmesh.common.sandbox.server_part import ServerPart

_logger = logging.getLogger("runmesh.sandbox")

_PART = "postgres"
#: The account postgres runs as when we are root (it refuses root); pgserver uses this name too.
DEFAULT_SYSTEM_USER = "pgserver"

_TRAVERSE = stat.S_IXGRP | stat.S_IXOTH
_READ = stat.S_IRGRP | stat.S_IROTH


def _pgserver_bin_dir() -> Path:
    # find_spec, not import: importing pgserver builds a lock file under the runtime dir and
    # warns when XDG_RUNTIME_DIR is unset; only its bundled binaries are needed here.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise SandboxError(_PART, "pgserver is not installed (install runmesh-common[sandbox])")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise SandboxError(_PART, f"pgserver has no postgres binary in {bin_dir}")
    return bin_dir


def _running_as_root() -> bool:
    return sys.platform != "win32" and os.geteuid() == 0


def _allow_other_user(pgdata: Path, install_dir: Path, user: str) -> None:
    """Let `user` reach pgdata and run the install: x on every parent, r on the install."""
    import pwd

    for path in (pgdata, install_dir):
        for parent in path.parents:
            mode = parent.stat().st_mode
            if mode & stat.S_IXOTH == 0:
                _logger.info("granting o+x on %s so that %s can reach %s", parent, user, path)
                parent.chmod(mode | _TRAVERSE)
    for root, dirs, files in os.walk(install_dir):
        for name in dirs:
            path = Path(root, name)
            mode = path.stat().st_mode
            if mode & (_READ | _TRAVERSE) != _READ | _TRAVERSE:
                path.chmod(mode | _READ | _TRAVERSE)
        for name in files:
            path = Path(root, name)
            mode = path.lstat().st_mode
            if stat.S_ISREG(mode) and mode & _READ != _READ:
                path.chmod(mode | _READ)
    entry = pwd.getpwnam(user)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)


def _user_exists(user: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


class EmbeddedPostgres(ServerPart):
    """PostgreSQL 16 from the `pgserver` wheel, on 127.0.0.1 on a free port, trust auth.

    Data lives in `<data_dir>/pgdata` (initdb'd on first start, reused after), output goes to
    `<data_dir>/postgres.log`. Run as root, postgres runs as `system_user` (created with
    useradd if missing) since it refuses root. Durability is off (fsync, full pages): this is
    a throw-away database.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        system_user: str = DEFAULT_SYSTEM_USER,
        start_timeout_s: float = 60.0,
        stop_timeout_s: float = 30.0,
    ) -> None:
        super().__init__(_PART, data_dir, "postgres.log", port, start_timeout_s, stop_timeout_s)
        self.pgdata = data_dir / "pgdata"
        self._user = system_user if _running_as_root() else None
        self._bin_dir: Path | None = None

    @property
    def dsn(self) -> str:
        """A libpq/asyncpg DSN: "postgresql://postgres@127.0.0.1:PORT/postgres"."""
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"

    async def _prepare(self) -> Path:
        bin_dir = await asyncio.to_thread(_pgserver_bin_dir)
        await asyncio.to_thread(self.pgdata.mkdir, mode=0o700, parents=True, exist_ok=True)
        if self._user is not None:
            if not await asyncio.to_thread(_user_exists, self._user):
                _logger.info("creating system user %s: postgres refuses to run as root", self._user)
                await run_command(
                    _PART,
                    ["useradd", "--system", "--user-group", "--no-create-home", self._user],
                    log_path=self.log_path,
                    timeout_s=30.0,
                )
            await asyncio.to_thread(_allow_other_user, self.pgdata, bin_dir.parent, self._user)
        if not await asyncio.to_thread((self.pgdata / "PG_VERSION").exists):
            _logger.info("initdb %s", self.pgdata)
            await run_command(
                _PART,
                [
                    str(bin_dir / "initdb"),
                    "--pgdata",
                    str(self.pgdata),
                    "--username=postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
                log_path=self.log_path,
                timeout_s=self._start_timeout_s,
                user=self._user,
            )
        return bin_dir

    async def start(self) -> None:
        """initdb if needed, start the server, and wait until it accepts a connection."""
        self._bin_dir = bin_dir = await self._prepare()
        if self._port is None:
            self._port = free_port()
        argv = [
            str(bin_dir / "postgres"),
            "-D",
            str(self.pgdata),
            "-c",
            f"listen_addresses={LOOPBACK}",
            "-c",
            f"port={self._port}",
            # TCP only: a socket path under a deep temporary directory can exceed 107 bytes.
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]
        _logger.info("starting postgres on %s:%d (%s)", LOOPBACK, self._port, self.pgdata)
        # postgres is our direct child (not pg_ctl's) so that the parent-death signal reaches
        # it; SIGINT is postgres's "fast" shutdown (SIGTERM would wait for clients to leave).
        # If it never gets ready: SIGQUIT, the immediate shutdown.
        await self._launch(
            argv,
            self._ready,
            user=self._user,
            death_signal=signal.SIGINT,
            abort_signal=signal.SIGQUIT,
        )

    async def _ready(self) -> bool:
        try:
            connection = await asyncpg.connect(self.dsn, timeout=2.0)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        await connection.close(timeout=2.0)
        return True

    async def stop(self) -> None:
        """`pg_ctl stop -m fast`, then make sure the server process is gone. Safe to call twice."""
        if not self._child.running:
            await self._child.stop()
            return
        _logger.info("stopping postgres on %s:%d", LOOPBACK, self.port)
        bin_dir = self._bin_dir
        if bin_dir is None:
            bin_dir = await asyncio.to_thread(_pgserver_bin_dir)
        with contextlib.suppress(SandboxError):
            # pg_ctl refuses root like postgres does, hence the same user.
            await run_command(
                _PART,
                [
                    str(bin_dir / "pg_ctl"),
                    "stop",
                    "--pgdata",
                    str(self.pgdata),
                    "--mode=fast",
                    "--wait",
                    f"--timeout={int(self._stop_timeout_s)}",
                ],
                log_path=self.log_path,
                timeout_s=self._stop_timeout_s + 5.0,
                user=self._user,
            )
        # Reaps the postmaster; if pg_ctl failed, SIGQUIT (immediate shutdown), then SIGKILL.
        await self._child.stop(sig=signal.SIGQUIT, timeout_s=self._stop_timeout_s)
