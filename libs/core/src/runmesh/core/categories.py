"""The plugin categories the platform defines, and the label metrics use for any other."""

from __future__ import annotations

from typing import Final

BUILTIN_CATEGORIES: Final[tuple[str, ...]] = (
    "upload",
    "export",
    "pre_annotation",
    "neural_net",
    "data_validation",
    "smart_tool",
    "post_annotation",
)
"""Categories the platform defines (a tenant's published plugin may name any other)."""

OTHER_CATEGORY: Final = "other"
"""The metric label of every category that is not built in."""


def metric_category(category: str) -> str:
    """`category` when it is built in, else `other`.

    A category outside the built-in set is chosen by whoever wrote a plugin (a tenant's
    published plugin, or a run request naming one): as a Prometheus label it would show one
    tenant's private names to everyone who can read /metrics, and grow the series without
    bound.
    """
    return category if category in BUILTIN_CATEGORIES else OTHER_CATEGORY
