"""Names of worker pools and labels (docs/operations.md "Pools and labels"): what the settings,
the wire messages and the CLI check them against. Imports nothing heavy: the CLI reads it."""

from __future__ import annotations

import re
from typing import Final

POOL_PATTERN: Final = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
"""What a worker pool's name looks like."""
LABEL_PATTERN: Final = r"^[a-z0-9][a-z0-9_.:=-]{0,62}$"
"""What a worker label looks like (`gpu`, `cuda12`, `zone=eu-1`)."""
DEFAULT_POOL: Final = "default"
"""The pool of a worker that names none; it consumes `runmesh.requests.<category>`."""


def parse_labels(text: str) -> list[str]:
    """The labels of a comma- or space-separated list, sorted and without repeats; ValueError
    names any not of the form `LABEL_PATTERN`."""
    labels = sorted({label for label in re.split(r"[,\s]+", text) if label})
    bad = [label for label in labels if not re.fullmatch(LABEL_PATTERN, label)]
    if bad:
        raise ValueError(f"labels {bad} are not of the form {LABEL_PATTERN}")
    return labels
