"""The `Run` object actions report through, and secret redaction of params."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, SecretBytes, SecretStr

from runmesh.core.errors import RunCancelledError
from runmesh.core.events import (
    ArtifactPayload,
    EventPayload,
    LogPayload,
    MetricPayload,
    ProgressPayload,
)
from runmesh.plugins import Run
from runmesh.plugins import run as run_module
from runmesh.plugins.progress import ProgressCoalescer
from runmesh.plugins.redaction import redacted_params

RUN_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
LOG_MESSAGES = {
    "DONE": {"message": "echoed {} of {} items", "level": "success"},
    "NAMED": {"message": "hello {name}"},
    "BARE": {"level": "warning"},
    "PLAIN": {"message": "plain {}"},
}


class ListSink:
    """A `RunSink` that keeps every event in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, EventPayload]] = []

    def emit(self, event_type: str, payload: EventPayload) -> None:
        self.events.append((event_type, payload))

    def take(self) -> list[tuple[str, EventPayload]]:
        taken, self.events = self.events, []
        return taken


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_run(
    sink: ListSink,
    *,
    progress_interval_s: float = 3600.0,
    cancel_flag: threading.Event | None = None,
    **categories: Any,
) -> Run:
    return Run(
        run_id=RUN_ID,
        attempt=2,
        sink=sink,
        cancel_flag=cancel_flag,
        log_messages=LOG_MESSAGES,
        progress_interval_s=progress_interval_s,
        **categories,
    )


@pytest.fixture
def sink() -> ListSink:
    return ListSink()


def test_identity(sink: ListSink) -> None:
    run = make_run(sink)

    assert (run.run_id, run.attempt) == (RUN_ID, 2)
    assert sink.events == []


# -- logs -------------------------------------------------------------------------------------


def test_log_message(sink: ListSink) -> None:
    run = make_run(sink)

    run.log_message("hello", file="a.jpg", count=3)
    run.log_message(42, level="error")  # type: ignore[arg-type]

    assert sink.events == [
        ("run.log", LogPayload(level="info", message="hello", data={"file": "a.jpg", "count": 3})),
        ("run.log", LogPayload(level="error", message="42", data={})),
    ]


def test_log_is_a_structured_record(sink: ListSink) -> None:
    run = make_run(sink)

    run.log("epoch_done", {"epoch": 3, "loss": 0.25}, level="debug")
    run.log("started")

    assert sink.events == [
        (
            "run.log",
            LogPayload(level="debug", message="epoch_done", data={"epoch": 3, "loss": 0.25}),
        ),
        ("run.log", LogPayload(level="info", message="started", data={})),
    ]


def test_log_copies_its_data(sink: ListSink) -> None:
    run = make_run(sink)
    data = {"n": 1}

    run.log("x", data)
    data["n"] = 2

    assert sink.events[0][1] == LogPayload(message="x", data={"n": 1})


def test_log_message_with_code_formats_the_declared_message(sink: ListSink) -> None:
    run = make_run(sink)

    run.log_message_with_code("DONE", 3, 10)
    run.log_message_with_code("DONE", 3, 10, level="error")  # the override wins
    run.log_message_with_code("BARE")  # no message: the code; declared level

    assert sink.events == [
        ("run.log", LogPayload(level="success", message="echoed 3 of 10 items", code="DONE")),
        ("run.log", LogPayload(level="error", message="echoed 3 of 10 items", code="DONE")),
        ("run.log", LogPayload(level="warning", message="BARE", code="BARE")),
    ]


def test_a_code_without_a_level_logs_at_info(sink: ListSink) -> None:
    run = make_run(sink)

    run.log_message_with_code("PLAIN", 7)

    assert sink.events == [("run.log", LogPayload(level="info", message="plain 7", code="PLAIN"))]


def test_a_named_placeholder_takes_a_keyword_argument(sink: ListSink) -> None:
    run = make_run(sink)

    run.log_message_with_code("NAMED", name="ada")

    assert sink.events == [("run.log", LogPayload(level="info", message="hello ada", code="NAMED"))]


def test_a_missing_placeholder_argument_is_reported(sink: ListSink) -> None:
    run = make_run(sink)

    with pytest.raises(ValueError, match=r"log code 'NAMED' expects other arguments: 'name'"):
        run.log_message_with_code("NAMED", "x")
    assert sink.events == []


def test_an_unknown_log_code_names_the_declared_ones(sink: ListSink) -> None:
    run = make_run(sink)

    with pytest.raises(ValueError) as caught:
        run.log_message_with_code("NOPE")

    assert str(caught.value) == "unknown log code 'NOPE'; declared codes: BARE, DONE, NAMED, PLAIN"
    assert sink.events == []


def test_an_unknown_log_code_without_declared_codes(sink: ListSink) -> None:
    run = Run(run_id=RUN_ID, attempt=1, sink=sink)

    with pytest.raises(ValueError, match=r"^unknown log code 'X'; declared codes: none$"):
        run.log_message_with_code("X")


def test_too_few_arguments_for_a_code_is_an_error(sink: ListSink) -> None:
    run = make_run(sink)

    with pytest.raises(ValueError, match=r"^log code 'DONE' expects other arguments: "):
        run.log_message_with_code("DONE", 1)
    assert sink.events == []


# -- progress ---------------------------------------------------------------------------------


def test_progress_defaults_to_the_first_declared_category(sink: ListSink) -> None:
    run = make_run(sink, progress_categories={"download": "Downloading", "convert": "Converting"})

    run.set_progress(1, 4)

    assert sink.events == [
        ("run.progress", ProgressPayload(category="download", current=1.0, total=4.0))
    ]


def test_progress_without_declared_categories_uses_default_and_accepts_any(sink: ListSink) -> None:
    run = make_run(sink)

    run.set_progress(1, None)
    run.set_progress(5, 9, category="anything")

    assert sink.events == [
        ("run.progress", ProgressPayload(category="default", current=1.0, total=None)),
        ("run.progress", ProgressPayload(category="anything", current=5.0, total=9.0)),
    ]


def test_an_undeclared_progress_category_is_an_error(sink: ListSink) -> None:
    run = make_run(sink, progress_categories={"b": "B", "a": {"description": "A"}})

    with pytest.raises(ValueError) as caught:
        run.set_progress(1, 2, category="c")

    assert str(caught.value) == "progress category 'c' is not declared; declared: a, b"
    assert sink.events == []


def test_progress_values_are_floats(sink: ListSink) -> None:
    run = make_run(sink)

    run.set_progress(3, 7)

    _, payload = sink.events[0]
    assert isinstance(payload, ProgressPayload)
    assert type(payload.current) is float
    assert type(payload.total) is float


def test_progress_is_coalesced_until_forced(sink: ListSink) -> None:
    run = make_run(sink, progress_interval_s=3600.0)

    for current in range(1, 101):
        run.set_progress(current, 100)
    assert sink.take() == [
        ("run.progress", ProgressPayload(category="default", current=1.0, total=100.0))
    ]

    run.flush_progress()  # nothing is due within the hour
    run.log_message("between")  # and a log does not release it early
    assert sink.take() == [("run.log", LogPayload(message="between"))]

    run.flush_progress(force=True)
    assert sink.take() == [
        ("run.progress", ProgressPayload(category="default", current=100.0, total=100.0))
    ]
    run.flush_progress(force=True)
    assert sink.events == []


def test_progress_of_each_category_is_coalesced_separately(sink: ListSink) -> None:
    run = make_run(sink, progress_categories={"a": "A", "b": "B"})

    run.set_progress(1, 10, category="a")
    run.set_progress(1, 10, category="b")
    run.set_progress(2, 10, category="a")
    run.set_progress(3, 10, category="b")
    run.flush_progress(force=True)

    assert sorted((p.category, p.current) for _, p in sink.events) == [  # type: ignore[union-attr]
        ("a", 1.0),
        ("a", 2.0),
        ("b", 1.0),
        ("b", 3.0),
    ]


def test_due_progress_goes_out_before_a_later_log_metric_or_artifact(
    sink: ListSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(
        run_module, "ProgressCoalescer", lambda interval: ProgressCoalescer(interval, clock=clock)
    )
    run = make_run(sink, progress_interval_s=1.0)

    def held_progress(current: float) -> None:
        run.set_progress(current, 10)
        clock.now += 1.0  # the held value is due from now on

    run.set_progress(0, 10)
    sink.take()
    held_progress(1)
    run.log_message("after")
    held_progress(2)
    run.set_metrics({"loss": 1}, category="train")
    held_progress(3)
    run.log_artifact("a.txt", "s3://b/a.txt")

    assert [(t, getattr(p, "current", None)) for t, p in sink.events] == [
        ("run.progress", 1.0),
        ("run.log", None),
        ("run.progress", 2.0),
        ("run.metric", None),
        ("run.progress", 3.0),
        ("run.artifact", None),
    ]


def test_flush_progress_sends_only_what_is_due(
    sink: ListSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(
        run_module, "ProgressCoalescer", lambda interval: ProgressCoalescer(interval, clock=clock)
    )
    run = make_run(sink, progress_interval_s=1.0)
    run.set_progress(0, 10)
    run.set_progress(1, 10)
    sink.take()

    run.flush_progress()
    assert sink.events == []
    clock.now += 1.0
    run.flush_progress()
    assert sink.take() == [
        ("run.progress", ProgressPayload(category="default", current=1.0, total=10.0))
    ]


# -- metrics and artifacts --------------------------------------------------------------------


def test_set_metrics_casts_values_to_float(sink: ListSink) -> None:
    run = make_run(sink, metrics_categories={"train": "Training", "eval": "Eval"})

    run.set_metrics({"loss": 1, "acc": Decimal("0.5"), "ok": True}, category="train", step=3)  # type: ignore[dict-item]
    run.set_metrics({"f1": 0.75}, category="eval")

    assert sink.events == [
        (
            "run.metric",
            MetricPayload(category="train", values={"loss": 1.0, "acc": 0.5, "ok": 1.0}, step=3),
        ),
        ("run.metric", MetricPayload(category="eval", values={"f1": 0.75}, step=None)),
    ]
    _, first = sink.events[0]
    assert isinstance(first, MetricPayload)
    assert all(type(v) is float for v in first.values.values())


def test_an_undeclared_metrics_category_is_an_error(sink: ListSink) -> None:
    run = make_run(sink, metrics_categories={"train": "Training", "eval": "Eval"})

    with pytest.raises(ValueError) as caught:
        run.set_metrics({"loss": 1.0}, category="test")

    assert str(caught.value) == "metrics category 'test' is not declared; declared: eval, train"
    assert sink.events == []


def test_any_metrics_category_without_declared_ones(sink: ListSink) -> None:
    run = make_run(sink)

    run.set_metrics({"x": 2}, category="whatever")

    assert sink.events == [("run.metric", MetricPayload(category="whatever", values={"x": 2.0}))]


def test_a_non_numeric_metric_is_refused(sink: ListSink) -> None:
    run = make_run(sink)

    with pytest.raises(ValueError, match="could not convert string to float"):
        run.set_metrics({"x": "high"}, category="c")  # type: ignore[dict-item]
    assert sink.events == []


def test_log_artifact(sink: ListSink) -> None:
    run = make_run(sink)

    run.log_artifact(
        "model.pt", "s3://runmesh/m.pt", size=1024, checksum="sha256:ab", media_type="x/pt"
    )
    run.log_artifact("notes.txt", "s3://runmesh/notes.txt")

    assert sink.events == [
        (
            "run.artifact",
            ArtifactPayload(
                name="model.pt",
                uri="s3://runmesh/m.pt",
                size=1024,
                checksum="sha256:ab",
                media_type="x/pt",
            ),
        ),
        ("run.artifact", ArtifactPayload(name="notes.txt", uri="s3://runmesh/notes.txt")),
    ]


# -- cancellation -----------------------------------------------------------------------------


def test_cancellation_follows_the_flag(sink: ListSink) -> None:
    flag = threading.Event()
    run = make_run(sink, cancel_flag=flag)

    assert run.is_cancelled is False
    run.check_cancelled()  # does not raise yet

    flag.set()

    assert run.is_cancelled is True
    with pytest.raises(RunCancelledError, match=r"^run was cancelled$"):
        run.check_cancelled()
    assert sink.events == []


def test_a_run_without_a_flag_is_never_cancelled(sink: ListSink) -> None:
    run = make_run(sink)

    run.check_cancelled()
    assert run.is_cancelled is False


# -- redaction --------------------------------------------------------------------------------

MASK = "**********"


class Credentials(BaseModel):
    user: str
    password: SecretStr


class Params(BaseModel):
    name: str
    token: SecretStr
    optional_token: SecretStr | None = None
    key: SecretBytes | None = None
    credentials: Credentials
    tokens: list[SecretStr] = []
    by_host: dict[str, SecretStr] = {}
    count: int = 1


def test_redacted_params_mask_every_secret() -> None:
    params = Params(
        name="job",
        token=SecretStr("top-secret"),
        key=SecretBytes(b"bytes-secret"),
        credentials=Credentials(user="ann", password=SecretStr("nested-secret")),
        tokens=[SecretStr("list-secret-1"), SecretStr("list-secret-2")],
        by_host={"a": SecretStr("dict-secret")},
    )

    redacted = redacted_params(params)

    assert redacted == {
        "name": "job",
        "token": MASK,
        "optional_token": None,
        "key": MASK,
        "credentials": {"user": "ann", "password": MASK},
        "tokens": [MASK, MASK],
        "by_host": {"a": MASK},
        "count": 1,
    }
    assert "secret" not in repr(redacted)
    # The params the action gets still hold the real values.
    assert params.credentials.password.get_secret_value() == "nested-secret"
