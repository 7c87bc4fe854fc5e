"""The embedded dev stack (DESIGN §11): Tansu, PostgreSQL and moto as child processes.

Each part also works alone (tests start a second broker, for instance); `Sandbox` starts the
ones whose settings are unset. Everything here is ephemeral and for development and tests:
production runs on Apache Kafka, PostgreSQL and S3.
"""

from __future__ import annotations

from runmesh.sandbox.errors import SandboxError
from runmesh.sandbox.postgres import EmbeddedPostgres
from runmesh.sandbox.s3 import MOTO_CREDENTIALS, MotoS3Server, S3Credentials, ensure_bucket
from runmesh.sandbox.stack import Sandbox
from runmesh.sandbox.tansu import TansuBroker

__all__ = [
    "MOTO_CREDENTIALS",
    "EmbeddedPostgres",
    "MotoS3Server",
    "S3Credentials",
    "Sandbox",
    "SandboxError",
    "TansuBroker",
    "ensure_bucket",
]
