"""`runmesh plugin create`: a new plugin project, rendered from the copier template shipped in
`runmesh/cli/plugin_template`."""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from runmesh.cli.exits import fail
from runmesh.core.categories import BUILTIN_CATEGORIES

TEMPLATE = Path(__file__).resolve().parents[1] / "plugin_template"
"""The copier template (package data; rendered as a plain folder, never through git)."""

CATEGORIES = BUILTIN_CATEGORIES  # one template serves every category the platform defines
CODE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")  # as config.yaml's `code`
CODE_MAX_LENGTH = 100

app = typer.Typer()


def default_name(code: str) -> str:
    """A readable name made from a code: `my-export` -> `My export`."""
    return re.sub(r"[-_]+", " ", code).strip().capitalize()


@app.command(
    "create",
    help="Create a plugin project (config.yaml, the action, its tests, README) from the template "
    "of its category, in OUTPUT_DIR/runmesh-CODE-plugin. Asks for what is missing when run in a "
    "terminal.",
)
def create_command(
    category: Annotated[
        str | None,
        typer.Option(help=f"the plugin's category: {', '.join(CATEGORIES)}"),
    ] = None,
    code: Annotated[
        str | None,
        typer.Option(help="the plugin's code: lower case letters, digits, - and _"),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="the plugin's name, as people read it (default: from code)")
    ] = None,
    version: Annotated[str, typer.Option(help="the plugin's first version")] = "0.1.0",
    description: Annotated[
        str | None, typer.Option(help="one line saying what the plugin does")
    ] = None,
    output_dir: Annotated[
        Path, typer.Option("--output-dir", "-o", help="where to create the project folder")
    ] = Path("."),
    force: Annotated[
        bool, typer.Option("--force", help="write into an existing, non-empty project folder")
    ] = False,
) -> None:
    answers = _answers(category, code, name, version, description)
    target = output_dir / f"runmesh-{answers['code']}-plugin"
    if target.exists() and not target.is_dir():
        fail(f"{target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not force:
        fail(f"{target} exists and is not empty (--force writes into it)")
    created = _render(target, answers)
    _report(target, created)


def _answers(
    category: str | None,
    code: str | None,
    name: str | None,
    version: str,
    description: str | None,
) -> dict[str, str]:
    """The template's answers: the options, asked for in a terminal when missing, checked
    before anything is written."""
    interactive = sys.stdin is not None and sys.stdin.isatty()
    listed = ", ".join(CATEGORIES)
    if category is None:
        if not interactive:
            fail(f"--category is required: one of {listed}")
        category = typer.prompt(f"Category ({listed})")
    category = category.strip()
    if category not in CATEGORIES:
        fail(f"unknown category {category!r}: use one of {listed}")
    if code is None:
        if not interactive:
            fail("--code is required (lower case letters, digits, - and _, e.g. my-export)")
        code = typer.prompt("Code (lower case letters, digits, - and _)")
    code = code.strip()
    if not CODE_PATTERN.fullmatch(code) or len(code) > CODE_MAX_LENGTH:
        fail(
            f"invalid code {code!r}: use lower case letters, digits, - and _, starting with a "
            f"letter or digit ({CODE_MAX_LENGTH} characters at most)"
        )
    if name is None:
        name = typer.prompt("Name", default=default_name(code)) if interactive else None
    answers = {
        "category": category,
        "code": code,
        "name": (name or default_name(code)).strip(),
        "version": version.strip(),
        "description": (description or f"A runmesh {category} plugin.").strip(),
    }
    for option in ("name", "description"):
        if "\n" in answers[option] or "\r" in answers[option]:
            fail(f"--{option} must be one line")
    _check_config(answers)
    return answers


def _check_config(answers: dict[str, str]) -> None:
    """Refuse what config.yaml would refuse (the version above all), before writing anything."""
    from pydantic import ValidationError

    from runmesh.core.validation import describe_errors
    from runmesh.plugins import PluginConfig

    try:
        PluginConfig.model_validate(
            {
                **{key: answers[key] for key in ("code", "name", "version", "category")},
                "actions": {"check": {"entrypoint": "plugin.check.Check"}},
            }
        )
    except ValidationError as exc:
        fail(f"invalid plugin: {describe_errors(exc.errors(include_url=False))}")


def _render(target: Path, data: dict[str, str]) -> list[str]:
    """Render the template into a scratch folder, then copy it into `target`: a failure leaves
    `target` as it was. Returns the files written, relative to `target`."""
    from copier import Settings, run_copy
    from copier.errors import CopierError
    from jinja2 import TemplateError

    with tempfile.TemporaryDirectory(prefix="runmesh-plugin-") as scratch:
        rendered = Path(scratch) / target.name
        try:
            # Empty settings: a user's copier defaults must not change the project.
            run_copy(
                str(TEMPLATE),
                rendered,
                data=data,
                settings=Settings(),
                defaults=True,
                quiet=True,
                unsafe=False,
            )
        except (CopierError, TemplateError) as exc:
            fail(f"rendering the plugin template {TEMPLATE} failed: {exc}")
        files = sorted(
            path.relative_to(rendered).as_posix() for path in rendered.rglob("*") if path.is_file()
        )
        try:
            shutil.copytree(rendered, target, dirs_exist_ok=True)
        except OSError as exc:
            fail(f"cannot write {target}: {exc}")
    return files


def _report(target: Path, files: list[str]) -> None:
    """What was created, and what to do next."""
    from runmesh.plugins import load_config

    config = load_config(target)
    actions = ", ".join(f"{name} ({action.method})" for name, action in config.actions.items())
    typer.echo(
        f"Created {target}/: {config.code}@{config.version} ({config.category}), action {actions}"
    )
    for file in files:
        typer.echo(f"  {file}")
    action = next(iter(config.actions))
    typer.echo(
        "\nNext:\n"
        f"  cd {target}\n"
        "  runmesh plugin validate    # check config.yaml, import the action\n"
        "  pytest                     # run the plugin's tests\n"
        f"  runmesh plugin run {action} @params.json --debug   # run it locally (see README.md)\n"
        "  runmesh plugin publish     # publish this version to the gateway"
    )
