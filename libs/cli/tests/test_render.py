"""How a followed run's events print: debug log lines are counted, not shown, unless asked."""

from __future__ import annotations

import io
import uuid

from rich.console import Console

from runmesh.cli.render import RunRenderer
from runmesh.core.events import LogPayload, RunLog

RUN = uuid.uuid4()


def log(seq: int, level: str, message: str) -> RunLog:
    return RunLog(
        run_id=RUN,
        attempt=1,
        seq=seq,
        service="t",
        worker="w",
        payload=LogPayload(level=level, message=message),  # type: ignore[arg-type]
    )


def rendered(*, debug: bool) -> str:
    out = io.StringIO()
    with RunRenderer(Console(file=out, width=200), debug=debug) as renderer:
        renderer.show(log(1, "info", "training"))
        renderer.show(log(2, "debug", "checkpoint after epoch 1"))
        renderer.show(log(3, "debug", "checkpoint after epoch 2"))
    return out.getvalue()


def test_debug_lines_are_counted_not_shown_by_default() -> None:
    text = rendered(debug=False)
    assert "[info] training" in text
    assert "checkpoint" not in text
    assert "(2 debug log lines hidden: -v shows them)" in text


def test_verbose_shows_debug_lines() -> None:
    text = rendered(debug=True)
    assert "[debug] checkpoint after epoch 1" in text and "[debug] checkpoint after epoch 2" in text
    assert "hidden" not in text
