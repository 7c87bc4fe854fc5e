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


class PipelineReferenceError(RunmeshError):
    """A pipeline step's `${{ ... }}` reference names a param or result value that is missing.

    Raised while building the step's params (`runmesh.core.pipelines.step_params`), so the
    step fails before it runs; `step` and `reference` say which step and which reference.
    """

    def __init__(self, message: str, *, step: str, reference: str) -> None:
        super().__init__(message)
        self.step = step
        self.reference = reference

    def __reduce__(self) -> tuple[object, ...]:
        # The keyword-only fields are not in `args`: rebuild from all three when unpickled.
        return (_pipeline_reference_error, (str(self), self.step, self.reference))


def _pipeline_reference_error(message: str, step: str, reference: str) -> PipelineReferenceError:
    """Unpickle a `PipelineReferenceError` (a module-level function, as pickle needs)."""
    return PipelineReferenceError(message, step=step, reference=reference)
