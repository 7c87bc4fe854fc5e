"""The root of runmesh's exception tree and the errors the shared library raises."""

from __future__ import annotations

from typing import ClassVar


class RunmeshError(Exception):
    """Base of every runmesh error; `retriable` says whether trying again can help."""

    retriable: ClassVar[bool] = False


class ConfigurationError(RunmeshError):
    """A setting or file a process needs is missing or malformed."""


class DependencyUnavailableError(RunmeshError):
    """A server runmesh needs (Kafka, PostgreSQL, S3) cannot be reached or refused us."""

    retriable = True


class MessageTooLargeError(RunmeshError):
    """A record exceeds `RUNMESH_MAX_MESSAGE_BYTES`; large data belongs in S3."""


class DecodeError(RunmeshError):
    """A record's bytes are not a valid message of the expected type."""


class PluginError(RunmeshError):
    """A plugin directory, config.yaml or entrypoint is invalid."""


class UnknownPluginError(PluginError):
    """A request names a plugin, version or action that this worker does not have."""


class PluginArchiveError(PluginError):
    """A plugin archive is malformed or unsafe (path escape, symlink, too large, bad config)."""


class PluginInstallError(PluginError):
    """A published plugin version could not be downloaded, verified or installed."""


class ParamsValidationError(RunmeshError):
    """A request's params do not validate against the action's params model."""


class RunCancelledError(RunmeshError):
    """Raised inside an action by `run.check_cancelled()` once cancellation was requested."""


class RunTimeoutError(RunmeshError):
    """A run exceeded its `timeout_s`."""


class JobCrashedError(RunmeshError):
    """A `job` child process died without reporting a result (crash, OOM kill, os._exit)."""

    retriable = False
