"""Plugins published against runmesh 0.1 import `runmesh.common.*`: those paths still work."""

from __future__ import annotations

import importlib
import sys

import pytest

import runmesh.converters
import runmesh.dm
import runmesh.plugins


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("runmesh.common.plugins", runmesh.plugins),
        ("runmesh.common.dm", runmesh.dm),
        ("runmesh.common.converters", runmesh.converters),
    ],
)
def test_an_old_import_path_gives_the_same_objects_and_says_where_they_moved(
    old: str, new: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, old, raising=False)

    with pytest.warns(DeprecationWarning, match=rf"{old} moved to {new.__name__}"):  # type: ignore[attr-defined]
        moved = importlib.import_module(old)

    assert moved.__all__ == new.__all__  # type: ignore[attr-defined]
    for name in moved.__all__:
        assert getattr(moved, name) is getattr(new, name)
