"""Declared services: the category comes from the built-in plugin's config.yaml alone, and a
service is found by its `module:attribute` reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from runmesh.core.errors import ConfigurationError
from runmesh.worker.service import Service, load_service


def plugin(directory: Path, category: str) -> Path:
    directory.mkdir(parents=True)
    (directory / "config.yaml").write_text(
        f"code: p-{category}\nname: P\nversion: '1.0'\ncategory: {category}\n"
        "actions:\n  go:\n    entrypoint: plugin.go.Go\n"
    )
    return directory


def test_the_category_is_the_plugins(tmp_path: Path) -> None:
    service = Service("mine", (plugin(tmp_path / "a", "export"),))
    assert service.category == "export"


def test_plugins_of_two_categories_are_refused(tmp_path: Path) -> None:
    service = Service("mixed", (plugin(tmp_path / "a", "export"), plugin(tmp_path / "b", "upload")))
    with pytest.raises(ConfigurationError, match="exactly one"):
        _ = service.category


@pytest.mark.parametrize(
    ("ref", "category"),
    [
        ("runmesh.upload:service", "upload"),
        ("runmesh.export:service", "export"),
        ("runmesh.to_task:service", "pre_annotation"),
        ("runmesh.train:service", "neural_net"),
    ],
)
def test_each_service_package_declares_its_service(ref: str, category: str) -> None:
    assert load_service(ref).category == category


@pytest.mark.parametrize("ref", ["runmesh.nope:service", "runmesh.core.settings:Settings"])
def test_a_reference_to_no_service_is_a_clear_error(ref: str) -> None:
    with pytest.raises(ConfigurationError, match="service"):
        load_service(ref)
