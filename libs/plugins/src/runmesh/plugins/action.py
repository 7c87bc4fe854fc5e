"""The `Action` base class every plugin action subclasses (the Synapse action contract)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping
from typing import Any, ClassVar, Generic

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypeVar

from runmesh.plugins.run import Run


class NoParams(BaseModel):
    """Params model of an action that takes none (unknown keys are refused)."""

    model_config = ConfigDict(extra="forbid")


ActionResult = Mapping[str, Any] | BaseModel | None

P = TypeVar("P", bound=BaseModel, default=BaseModel)


class Action(ABC, Generic[P]):
    """One plugin action: validated params in, a JSON-able result out, reporting through `run`.

    Subclasses set `name`, `params_model` and the categories they report, and implement
    `start()`, either as a plain method (run in a worker thread, so blocking code is fine) or as
    `async def` (run on the worker's event loop: it must not block). `Action[MyParams]` types
    `self.params` as `MyParams` (the instance of `params_model` the worker validated).
    """

    name: ClassVar[str] = ""
    params_model: ClassVar[type[BaseModel]] = NoParams
    # {category: description} or {category: {"description": ..., "proportion": ...}}
    progress_categories: ClassVar[Mapping[str, Any]] = {}
    metrics_categories: ClassVar[Mapping[str, Any]] = {}
    # {CODE: {"message": "... {} ...", "level": "info"}} for `run.log_message_with_code`
    log_messages: ClassVar[Mapping[str, Mapping[str, str]]] = {}

    def __init__(self, params: P, run: Run) -> None:
        self.params: P = params
        self.run = run

    @abstractmethod
    def start(self) -> ActionResult | Awaitable[ActionResult]:
        """Do the work and return the result (a mapping or a pydantic model)."""

    @classmethod
    def describe_categories(cls, categories: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Normalize `{name: description}` shorthands to `{name: {description, proportion}}`,
        each with its `order` of declaration: the manifest is stored as JSONB, which keeps no
        key order, and readers show categories in the order the action declared them."""
        result: dict[str, dict[str, Any]] = {}
        for order, (name, spec) in enumerate(categories.items()):
            if isinstance(spec, Mapping):
                result[name] = {"description": str(spec.get("description", name)), **spec}
            else:
                result[name] = {"description": str(spec)}
            result[name].setdefault("order", order)
        return result
