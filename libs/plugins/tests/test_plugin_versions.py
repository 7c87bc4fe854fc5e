"""Plugin version order (PEP 440 through `packaging`) and which versions may be published."""

from __future__ import annotations

import pytest

from runmesh.plugins.versions import publishable_version_problem, version_key


def ordered(*versions: str) -> list[str]:
    return sorted(versions, key=version_key)


def test_a_release_candidate_ranks_below_its_release_however_the_release_is_spelt() -> None:
    assert ordered("1.0", "1.0.0-rc.1") == ["1.0.0-rc.1", "1.0"]
    assert ordered("1.0.0", "1.0.0-rc.1") == ["1.0.0-rc.1", "1.0.0"]
    assert max(["1.0", "1.0.0-rc.1"], key=version_key) == "1.0"


def test_pre_releases_numbers_and_builds_order_as_pep_440_says() -> None:
    assert ordered("2.0.0-rc.10", "2.0.0-rc.9", "2.0.0-beta", "2.0.0-alpha.1", "1.10", "1.9") == [
        "1.9",
        "1.10",
        "2.0.0-alpha.1",
        "2.0.0-beta",
        "2.0.0-rc.9",
        "2.0.0-rc.10",
    ]
    assert ordered("1.0.0+build.7", "1.0.0") == ["1.0.0", "1.0.0+build.7"]


def test_unreadable_versions_come_first_in_text_order_whatever_the_input_order() -> None:
    expected = ["1.0.0-foo", "1.0.0-zed", "0.0.1", "1.0", "1.0.0"]
    assert ordered("1.0.0", "1.0.0-zed", "1.0", "0.0.1", "1.0.0-foo") == expected
    assert ordered(*reversed(expected)) == expected


@pytest.mark.parametrize("version", ["1.0.0", "1.0", "2.0.0-rc.1", "1.0.0-beta", "1.0.0+b.7"])
def test_readable_versions_may_be_published(version: str) -> None:
    assert publishable_version_problem(version) is None


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        ("1.0.0-foo", "no PEP 440 reading"),
        ("1.0.0-alpha.beta", "no PEP 440 reading"),
        ("1.0.0-1", "reads as 1.0.0.post1"),
    ],
)
def test_versions_without_a_clear_place_are_refused_at_publish(version: str, reason: str) -> None:
    problem = publishable_version_problem(version)
    assert problem is not None and reason in problem and repr(version) in problem
