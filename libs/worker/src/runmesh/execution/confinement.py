"""How a job that runs a tenant's code is confined before it imports that code.

The job is forked from a server whose environment holds nothing of the platform's (`job.py`);
here it gives up, for good (Landlock), every file but what it needs to run: the interpreter
and the packages on its path, its plugin's directory, a few system files and a scratch
directory of its own. TCP is limited to the catalog's port unless the operator opened the
network (RUNMESH_JOB_NETWORK). So the worker's dev.json, other tenants' plugins, the host's
keys, /proc (where the worker's environment is) and the sandbox's unauthenticated services
stay out of reach. docs/security.md says what this covers and what it does not.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from runmesh.execution.landlock import DEVICE, READ, WRITE, PathRule, restrict_self

_SYSTEM_READ = (
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/bin",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    # CA certificates only: /etc/ssl/private and the like hold the host's own keys.
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/pki/tls/certs",
    "/etc/pki/ca-trust/extracted",
    "/etc/ca-certificates",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/etc/mime.types",
)
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


@dataclass(slots=True, frozen=True)
class Confinement:
    """What a confined job may reach besides the interpreter, its packages and system files.

    Attributes:
        plugin_dir: The plugin version's directory (read).
        scratch_dir: The job's own directory (read and write; also its HOME, TMPDIR and cwd).
        tcp_ports: The TCP ports it may connect to; None leaves the network open.
        hidden: Directories no rule may cover (the worker's home with dev.json, the plugin
            cache with other tenants' plugins): a path entry that contains one is left out.
    """

    plugin_dir: str
    scratch_dir: str
    tcp_ports: tuple[int, ...] | None
    hidden: tuple[str, ...] = ()


def _covers(path: str, hidden: str) -> bool:
    return hidden == path or hidden.startswith(path.rstrip("/") + "/")


def _read_paths(confinement: Confinement) -> list[str]:
    """The interpreter's own directories and every package directory on the path; never the
    current directory (the worker's: `runmesh dev` keeps .runmesh/dev.json there)."""
    cwd = os.path.realpath(os.getcwd())
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    candidates.update(entry for entry in sys.path if entry and os.path.isabs(entry))
    hidden = [os.path.realpath(path) for path in confinement.hidden]
    paths: list[str] = []
    for candidate in sorted(candidates):
        real = os.path.realpath(candidate)
        if real == cwd or any(_covers(real, secret) for secret in hidden):
            continue
        paths.extend({candidate, real})
    return paths


def confine(confinement: Confinement) -> int:
    """Confine this job process (LandlockError when the kernel cannot); returns the ABI."""
    scratch = confinement.scratch_dir
    rules = [PathRule(path, READ) for path in (*_SYSTEM_READ, *_read_paths(confinement))]
    rules.append(PathRule(confinement.plugin_dir, READ))
    rules.append(PathRule(scratch, WRITE))
    rules.extend(PathRule(device, DEVICE) for device in _DEVICES)
    rules.extend(PathRule(str(gpu), DEVICE) for gpu in sorted(Path("/dev").glob("nvidia*")))
    abi = restrict_self(rules, tcp_connect=confinement.tcp_ports)
    # Everything that writes a file by default (tempfile, caches under HOME) writes here.
    os.environ.update(HOME=scratch, TMPDIR=scratch)
    tempfile.tempdir = scratch
    os.chdir(scratch)
    return abi
