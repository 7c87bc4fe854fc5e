"""Landlock: a process confines itself to the files and TCP ports it names, for good.

Landlock is the Linux security module that lets an unprivileged process give up access (no
root, no namespaces, no helper binary); a restriction is inherited by every child and cannot be
lifted, not even by root. A job running a tenant's code applies one before it imports that
code (`runmesh.execution.confinement`).

Written on ctypes rather than a PyPI binding: the bindings there are pre-releases that stop at
the filesystem rules, and a job also needs the network rules (ABI 4) and the signal and
abstract-socket scopes (ABI 6). The kernel's interface is three system calls and two structs.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Iterable
from dataclasses import dataclass

_SYS_CREATE_RULESET = 444  # the same number on every architecture (added after the unification)
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1 << 0
_PR_SET_NO_NEW_PRIVS = 38
_RULE_PATH_BENEATH = 1
_RULE_NET_PORT = 2

# Filesystem access rights, by the ABI that introduced them.
_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_REMOVE_DIR = 1 << 4
_FS_REMOVE_FILE = 1 << 5
_FS_MAKE_CHAR = 1 << 6
_FS_MAKE_DIR = 1 << 7
_FS_MAKE_REG = 1 << 8
_FS_MAKE_SOCK = 1 << 9
_FS_MAKE_FIFO = 1 << 10
_FS_MAKE_BLOCK = 1 << 11
_FS_MAKE_SYM = 1 << 12
_FS_REFER = 1 << 13  # ABI 2
_FS_TRUNCATE = 1 << 14  # ABI 3
_FS_IOCTL_DEV = 1 << 15  # ABI 5
_NET_BIND_TCP = 1 << 0  # ABI 4
_NET_CONNECT_TCP = 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
_SCOPE_SIGNAL = 1 << 1

_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
READ = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
"""Read and execute files, list directories."""
WRITE = (
    READ
    | _FS_WRITE_FILE
    | _FS_REMOVE_DIR
    | _FS_REMOVE_FILE
    | _FS_MAKE_DIR
    | _FS_MAKE_REG
    | _FS_MAKE_SOCK
    | _FS_MAKE_FIFO
    | _FS_MAKE_SYM
    | _FS_REFER
    | _FS_TRUNCATE
)
"""Everything but device nodes."""
DEVICE = _FS_READ_FILE | _FS_WRITE_FILE | _FS_IOCTL_DEV
"""Read, write and ioctl a device file (/dev/null, a GPU)."""


class LandlockError(Exception):
    """The kernel cannot confine this process (too old, Landlock disabled) or refused a rule."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


class _NetPortAttr(ctypes.Structure):
    _fields_ = (("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64))


_libc = ctypes.CDLL(None, use_errno=True)


def _syscall(number: int, *args: object) -> int:
    result = int(_libc.syscall(number, *args))
    if result < 0:
        errno = ctypes.get_errno()
        raise LandlockError(os.strerror(errno))
    return result


def abi_version() -> int:
    """The Landlock ABI this kernel offers; 0 when it offers none."""
    if platform.system() != "Linux":
        return 0
    try:
        return _syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    except LandlockError:
        return 0


def _fs_rights(abi: int) -> int:
    rights = WRITE | DEVICE | _FS_MAKE_CHAR | _FS_MAKE_BLOCK
    if abi < 2:
        rights &= ~_FS_REFER
    if abi < 3:
        rights &= ~_FS_TRUNCATE
    if abi < 5:
        rights &= ~_FS_IOCTL_DEV
    return rights


@dataclass(slots=True, frozen=True)
class PathRule:
    """Access `rights` (READ, WRITE, DEVICE) to `path` and everything beneath it."""

    path: str
    rights: int


def restrict_self(rules: Iterable[PathRule], *, tcp_connect: Iterable[int] | None) -> int:
    """Confine this process (and its future children) to `rules`, for good.

    Only the paths in `rules` stay reachable, with their rights; one that does not exist is
    skipped. `tcp_connect` None leaves TCP alone; otherwise only connections to those ports
    are allowed and binding a TCP port is refused (needs ABI 4, else LandlockError). From ABI
    6 the process also cannot signal, or connect to an abstract socket of, processes outside
    its confinement. Returns the ABI used.
    """
    abi = abi_version()
    if abi < 1:
        raise LandlockError("this kernel does not offer Landlock (Linux 5.13+, enabled)")
    handled_fs = _fs_rights(abi)
    attr = _RulesetAttr(handled_access_fs=handled_fs)
    size = ctypes.sizeof(ctypes.c_uint64)  # ABI 1-3 know only handled_access_fs
    if tcp_connect is not None:
        if abi < 4:
            raise LandlockError(f"limiting TCP needs Landlock ABI 4 (Linux 6.7+); this is {abi}")
        attr.handled_access_net = _NET_BIND_TCP | _NET_CONNECT_TCP
        size = 2 * ctypes.sizeof(ctypes.c_uint64)
    if abi >= 6:
        attr.scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL
        size = ctypes.sizeof(_RulesetAttr)
    ruleset = _syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    try:
        for rule in rules:
            _add_path_rule(ruleset, rule, handled_fs)
        for port in tcp_connect or ():
            net = _NetPortAttr(allowed_access=_NET_CONNECT_TCP, port=port)
            _syscall(_SYS_ADD_RULE, ruleset, _RULE_NET_PORT, ctypes.byref(net), 0)
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise LandlockError(f"no_new_privs: {os.strerror(ctypes.get_errno())}")
        _syscall(_SYS_RESTRICT_SELF, ruleset, 0)
    finally:
        os.close(ruleset)
    return abi


def _add_path_rule(ruleset: int, rule: PathRule, handled_fs: int) -> None:
    try:
        fd = os.open(rule.path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a path that does not exist needs no rule
    try:
        rights = rule.rights & handled_fs
        if not os.path.isdir(rule.path):
            rights &= _FILE_RIGHTS  # directory rights on a file are refused (EINVAL)
        beneath = _PathBeneathAttr(allowed_access=rights, parent_fd=fd)
        try:
            _syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(beneath), 0)
        except LandlockError as exc:
            raise LandlockError(f"{rule.path}: {exc}") from None
    finally:
        os.close(fd)
