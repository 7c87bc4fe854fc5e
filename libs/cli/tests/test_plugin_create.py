"""`runmesh plugin create`: each category's project loads as a worker loads it and passes its
own tests; bad input is one line and exit status 1, with nothing written."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runmesh.cli.__main__ import main
from runmesh.cli.commands.plugin_create import CATEGORIES
from runmesh.plugins import load_plugin

# The action each category's template generates, and its execution method.
ACTIONS = {
    "upload": ("upload", "job"),
    "export": ("export", "job"),
    "pre_annotation": ("pre_annotation", "job"),
    "neural_net": ("train", "job"),
    "data_validation": ("validation", "task"),
    "smart_tool": ("auto_label", "task"),
    "post_annotation": ("post_annotation", "task"),
}


class _Terminal(io.StringIO):
    """Typed answers on an interactive stdin."""

    def isatty(self) -> bool:
        return True


def _code(category: str) -> str:
    return f"my-{category.replace('_', '-')}"


def _create(root: Path, *args: str) -> int:
    return main(["plugin", "create", "--output-dir", str(root), *args])


@pytest.fixture(autouse=True)
def _not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """stdin is not a terminal (even under `pytest -s`): create never asks."""
    monkeypatch.setattr(sys, "stdin", io.StringIO())


@pytest.fixture(autouse=True)
def _forget_plugin_modules() -> Iterator[None]:
    """Drop the synthetic `runmesh_plugins.*` modules a test imported."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("runmesh_plugins."):
            del sys.modules[name]


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One project per category, created with flags only."""
    root = tmp_path_factory.mktemp("plugins")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdin", io.StringIO())
        for category in CATEGORIES:
            assert _create(root, "--category", category, "--code", _code(category)) == 0
    return {category: root / f"runmesh-{_code(category)}-plugin" for category in CATEGORIES}


@pytest.mark.parametrize("category", CATEGORIES)
def test_each_category_makes_a_plugin_a_worker_loads(
    projects: dict[str, Path], category: str
) -> None:
    project = projects[category]
    action, method = ACTIONS[category]

    plugin = load_plugin(project)

    assert plugin.config.code == _code(category)
    assert plugin.config.category == category
    assert plugin.config.version == "0.1.0"
    assert plugin.config.name == _code(category).replace("-", " ").capitalize()
    assert plugin.config.package_manager == "uv"
    assert list(plugin.actions) == [action]
    assert plugin.actions[action].method == method
    files = [p for p in project.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert sorted(p.relative_to(project).as_posix() for p in files) == [
        "README.md",
        "config.yaml",
        "plugin/__init__.py",
        f"plugin/{action}.py",
        "pyproject.toml",
        "requirements.txt",
        f"tests/test_{action}.py",
    ]
    assert 'version: "0.1.0"' in (project / "config.yaml").read_text(encoding="utf-8")


@pytest.mark.slow
def test_each_category_passes_its_generated_tests(projects: dict[str, Path]) -> None:
    # Each project is its own pytest root (they all have a `plugin` package): one process
    # each, all at once.
    runs = {
        category: subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
            cwd=project,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for category, project in projects.items()
    }
    failed = {}
    try:
        for category, process in runs.items():
            output, _ = process.communicate(timeout=100)
            if process.returncode != 0 or " passed" not in output or "warning" in output:
                failed[category] = output
    finally:
        for process in runs.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    assert not failed, "\n\n".join(f"== {c}\n{out}" for c, out in failed.items())


def test_the_generated_code_is_ruff_clean(projects: dict[str, Path]) -> None:
    ruff = Path(sys.executable).parent / "ruff"
    root = next(iter(projects.values())).parent
    for check in (["check"], ["format", "--check"]):
        # Each project's own pyproject.toml configures ruff for its files.
        done = subprocess.run(
            [str(ruff), *check, "--no-cache", "."],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_it_says_what_it_created_and_what_comes_next(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _create(tmp_path, "--category", "export", "--code", "boxes-jsonl") == 0

    out = capsys.readouterr().out
    project = tmp_path / "runmesh-boxes-jsonl-plugin"
    assert out.startswith(f"Created {project}/: boxes-jsonl@0.1.0 (export), action export (job)")
    for line in ("  plugin/export.py", "  tests/test_export.py", f"  cd {project}"):
        assert f"\n{line}\n" in out
    for command in (
        "runmesh plugin validate",
        "pytest",
        "runmesh plugin run export",
        "runmesh plugin publish",
    ):
        assert f"\n  {command} " in out


def test_flags_fill_the_config(tmp_path: Path) -> None:
    assert (
        _create(
            tmp_path,
            "--category",
            "smart_tool",
            "--code",
            "boxer",
            "--name",
            "Boxer's tool",
            "--version",
            "1.10",
            "--description",
            "Draws a box: anywhere.",
        )
        == 0
    )

    config = load_plugin(tmp_path / "runmesh-boxer-plugin").config
    assert (config.name, config.version, config.description) == (
        "Boxer's tool",
        "1.10",
        "Draws a box: anywhere.",
    )


def test_a_terminal_is_asked_for_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # category, code, then the name's default (from the code)
    monkeypatch.setattr(sys, "stdin", _Terminal("data_validation\nshape-check\n\n"))

    assert _create(tmp_path) == 0

    config = load_plugin(tmp_path / "runmesh-shape-check-plugin").config
    assert (config.category, config.code, config.name) == (
        "data_validation",
        "shape-check",
        "Shape check",
    )


def test_force_writes_into_an_existing_project(tmp_path: Path) -> None:
    project = tmp_path / "runmesh-again-plugin"
    assert _create(tmp_path, "--category", "export", "--code", "again") == 0
    (project / "notes.txt").write_text("mine\n", encoding="utf-8")

    assert _create(tmp_path, "--category", "export", "--code", "again", "--force") == 0

    assert (project / "notes.txt").read_text(encoding="utf-8") == "mine\n"
    assert load_plugin(project).config.code == "again"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--category", "segmentation", "--code", "x"],
            "runmesh: unknown category 'segmentation': use one of upload, export, "
            "pre_annotation, neural_net, data_validation, smart_tool, post_annotation",
        ),
        (
            ["--category", "export", "--code", "My Export"],
            "runmesh: invalid code 'My Export': use lower case letters, digits, - and _, "
            "starting with a letter or digit (100 characters at most)",
        ),
        (
            ["--category", "export", "--code", "-x"],
            "runmesh: invalid code '-x': use lower case letters, digits, - and _, "
            "starting with a letter or digit (100 characters at most)",
        ),
        (
            ["--category", "export"],
            "runmesh: --code is required (lower case letters, digits, - and _, e.g. my-export)",
        ),
        (
            ["--code", "x"],
            "runmesh: --category is required: one of upload, export, pre_annotation, "
            "neural_net, data_validation, smart_tool, post_annotation",
        ),
        (
            ["--category", "export", "--code", "x", "--version", "one"],
            "runmesh: invalid plugin: version: String should match pattern",
        ),
        (
            ["--category", "export", "--code", "x", "--name", "two\nlines"],
            "runmesh: --name must be one line",
        ),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], error: str
) -> None:
    assert _create(tmp_path, *args) == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(error)
    assert captured.err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_an_existing_project_is_kept_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "runmesh-taken-plugin"
    project.mkdir()
    (project / "config.yaml").write_text("code: taken\n", encoding="utf-8")

    assert _create(tmp_path, "--category", "upload", "--code", "taken") == 1

    assert capsys.readouterr().err == (
        f"runmesh: {project} exists and is not empty (--force writes into it)\n"
    )
    assert [p.name for p in project.iterdir()] == ["config.yaml"]
    assert (project / "config.yaml").read_text(encoding="utf-8") == "code: taken\n"
