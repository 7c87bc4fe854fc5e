"""The job pipe's frames: what a job sends is decoded as data and validated, never unpickled."""

from __future__ import annotations

import pickle
import struct

import pytest

from runmesh.core.events import LogPayload, ProgressPayload, SucceededPayload
from runmesh.execution.job_frames import (
    MAX_FRAME_BYTES,
    CallMessage,
    EventMessage,
    JobProtocolError,
    OutcomeMessage,
    call_frame,
    decode_job_message,
    decode_reply,
    encode_frame,
    event_frame,
    outcome_frame,
    reply_frame,
)
from runmesh.execution.outcome import Cancelled, Failed, Succeeded


def test_events_outcomes_and_calls_round_trip() -> None:
    progress = ProgressPayload(category="copy", current=3, total=10)
    message = decode_job_message(event_frame("run.progress", progress))
    assert message == EventMessage("run.progress", progress)
    for outcome in (
        Succeeded({"items": 3, "nested": {"a": [1, 2]}}),
        Cancelled("stop"),
        Failed("Boom", "it broke", traceback="Traceback ...", retryable=True),
    ):
        assert decode_job_message(outcome_frame(outcome)) == OutcomeMessage(outcome)
    call = decode_job_message(call_frame(7, "write_chunk", {"stream": 1}, b"\x00bytes\xff"))
    assert call == CallMessage(7, "write_chunk", {"stream": 1}, b"\x00bytes\xff")


def test_replies_carry_results_bodies_and_errors() -> None:
    reply = decode_reply(reply_frame(3, {"eof": False}, b"chunk"))
    assert (reply.call_id, reply.result, reply.body, reply.error_type) == (
        3,
        {"eof": False},
        b"chunk",
        None,
    )
    error = decode_reply(
        reply_frame(
            4,
            None,
            error_type="StoragePolicyError",
            message="no",
            details={"field": "root", "setting": "RUNMESH_STORAGE_FILE_ROOTS"},
        )
    )
    assert error.error_type == "StoragePolicyError"
    assert error.details == {"field": "root", "setting": "RUNMESH_STORAGE_FILE_ROOTS"}


def test_a_long_failure_is_cut_not_refused() -> None:
    outcome = Failed("Boom", "x" * 200_000, traceback="t" * 1_000_000)
    decoded = decode_job_message(outcome_frame(outcome))
    assert isinstance(decoded, OutcomeMessage)
    assert isinstance(decoded.outcome, Failed)
    assert 0 < len(decoded.outcome.message) < 200_000
    assert decoded.outcome.traceback is not None
    assert 0 < len(decoded.outcome.traceback) < 1_000_000


def header_only(header: object) -> bytes:
    data = pickle.dumps(header) if not isinstance(header, bytes) else header
    return struct.pack(">I", len(data)) + data


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (pickle.dumps(("event", "run.log", LogPayload(message="x"))), "header length"),
        (b"\x00\x00", "shorter"),
        (header_only(b"not json"), "not JSON"),
        (header_only(b"[1, 2]"), "not a JSON object"),
        (encode_frame({"kind": "exec", "code": "print(1)"}), "unknown message kind"),
        (
            encode_frame({"kind": "event", "type": "run.succeeded", "payload": {"result": {}}}),
            "may not report",
        ),
        (
            encode_frame({"kind": "event", "type": "run.progress", "payload": {"current": "x"}}),
            "invalid run.progress",
        ),
        (encode_frame({"kind": "outcome", "status": "won"}), "unknown outcome"),
        (encode_frame({"kind": "outcome", "status": "succeeded", "result": [1]}), "JSON object"),
        (encode_frame({"kind": "call", "id": -1, "op": "stat", "args": {}}), "'id'"),
        (encode_frame({"kind": "call", "id": True, "op": "stat", "args": {}}), "'id'"),
        (encode_frame({"kind": "call", "id": 1, "op": "x" * 100, "args": {}}), "'op'"),
        (encode_frame({"kind": "call", "id": 1, "op": "stat", "args": "a"}), "'args'"),
        (
            encode_frame(
                {"kind": "outcome", "status": "succeeded", "result": {}, "retries": {"a": 1}}
            ),
            "'retries'",
        ),
        (
            encode_frame(
                {
                    "kind": "outcome",
                    "status": "succeeded",
                    "result": {},
                    "retries": [["s3.put", "Err", 1]] * 65,
                }
            ),
            "'retries'",
        ),
        *(
            (
                encode_frame(
                    {"kind": "outcome", "status": "succeeded", "result": {}, "retries": [entry]}
                ),
                "invalid 'retries' entry",
            )
            for entry in (
                ["s3 put\n{evil}", "Err", 1],
                ["s3.put", "x" * 65, 1],
                ["s3.put", "Err", 0],
                ["s3.put", "Err", True],
                ["s3.put", "Err"],
            )
        ),
    ],
)
def test_anything_else_a_job_sends_is_a_protocol_error(frame: bytes, reason: str) -> None:
    with pytest.raises(JobProtocolError, match=reason):
        decode_job_message(frame)


def test_a_frame_over_the_bound_is_never_sent() -> None:
    with pytest.raises(JobProtocolError, match="exceeds"):
        encode_frame({"kind": "call"}, b"x" * MAX_FRAME_BYTES)


def test_the_payloads_a_job_may_report_do_not_include_terminal_ones() -> None:
    # The worker publishes the terminal event from the outcome, once.
    frame = encode_frame(
        {"kind": "event", "type": "run.succeeded", "payload": SucceededPayload().model_dump()}
    )
    with pytest.raises(JobProtocolError):
        decode_job_message(frame)


def test_an_outcome_carries_the_jobs_retries() -> None:
    retries = {("s3.upload_part", "StorageUnavailable"): 3, ("http_storage.get", "Err"): 1}
    message = decode_job_message(outcome_frame(Succeeded({}), retries))
    assert isinstance(message, OutcomeMessage)
    assert message.retries == retries
    plain = decode_job_message(outcome_frame(Succeeded({})))
    assert isinstance(plain, OutcomeMessage) and plain.retries == {}
