"""The order of plugin versions, one rule for workers, the gateway and publishing.

Versions are ordered as PEP 440 (`packaging.version.Version`) orders them, which reads the
semantic-version spellings `config.yaml` allows: `1.0.0-rc.1` is `1.0.0rc1`, before `1.0` and
`1.0.0`; `rc.9` before `rc.10`; `-alpha` and `-beta` are `a0` and `b0`.

A version `packaging` cannot read (`1.0.0-foo`) is refused when it is published
(`publishable_version_problem`); one a worker loads from its plugin path still gets a
deterministic place: before every readable version, and among such versions by text.
"""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

_UNREADABLE = Version("0")


def parse_version(version: str) -> Version | None:
    """The PEP 440 reading of `version`, or None when there is none."""
    try:
        return Version(version)
    except InvalidVersion:
        return None


def version_key(version: str) -> tuple[bool, Version, str]:
    """Sort key: unreadable versions first (by text), then PEP 440 order; the text breaks ties
    between spellings of one version (`1.0` and `1.0.0`) so the order never depends on input
    order."""
    parsed = parse_version(version)
    return (parsed is not None, parsed or _UNREADABLE, version)


def publishable_version_problem(version: str) -> str | None:
    """Why `version` cannot be published, or None when it can.

    A published version must have a PEP 440 reading, and that reading must agree with
    runmesh's pre-release rule (a `-` before any `+build`): `1.0.0-1` reads as the
    post-release `1.0.0.post1`, which would rank above `1.0.0` while runmesh lets it be
    replaced like a pre-release.
    """
    parsed = parse_version(version)
    if parsed is None:
        return (
            f"version {version!r} has no PEP 440 reading, so its order among versions is "
            "unclear; use MAJOR.MINOR.PATCH with an optional -rc.N, -beta.N, -alpha.N or "
            "-dev.N pre-release"
        )
    if parsed.is_prerelease != ("-" in version.partition("+")[0]):
        return (
            f"version {version!r} reads as {parsed} under PEP 440, which disagrees with its "
            "spelling as a release or pre-release; use -rc.N, -beta.N, -alpha.N or -dev.N for "
            "a pre-release"
        )
    return None
