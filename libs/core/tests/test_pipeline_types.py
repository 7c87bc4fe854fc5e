"""Typed step inputs and outputs: the pure checks behind a pipeline submission's 422s."""

from __future__ import annotations

from typing import Any

from runmesh.core.pipeline_types import ActionTypes, check_types, compatible, output_type
from runmesh.core.pipelines import PipelineSpec, output_references

EXPORT = ActionTypes(
    "export.export",
    outputs={"run": "dataset:{params.extra_params.output_format|dm}", "uri": "uri", "path": "text"},
)
TRAIN = ActionTypes(
    "neural_net.train",
    inputs={"dataset.export_run": ["dataset:coco", "dataset:yolo"], "model": ["model:*"]},
    outputs={"model_id": "model:detector"},
)


def spec(steps: dict[str, dict[str, Any]], **fields: Any) -> PipelineSpec:
    return PipelineSpec.model_validate({"name": "p", **fields, "steps": steps})


def export(fmt: Any = None) -> dict[str, Any]:
    params = {} if fmt is None else {"extra_params": {"output_format": fmt}}
    return {"category": "export", "action": "export", "params": params}


def train(**params: Any) -> dict[str, Any]:
    return {"category": "neural_net", "action": "train", "params": params, "needs": ["export"]}


def messages(pipeline: PipelineSpec, params: dict[str, Any] | None = None) -> list[str]:
    actions = {"export": EXPORT, "train": TRAIN}
    return [p.message for p in check_types(pipeline, params or {}, actions)]


def test_compatible_and_wildcards() -> None:
    assert compatible("dataset:coco", ["dataset:yolo", "dataset:coco"])
    assert compatible("dataset:voc", ["dataset:*"])
    assert not compatible("model:x", ["dataset:*"])
    assert not compatible("dataset", ["dataset:*"])


def test_output_type_fills_params_defaults_and_unknowns() -> None:
    template = "dataset:{params.a.b|dm}"
    assert output_type(template, {"a": {"b": "coco"}}) == "dataset:coco"
    assert output_type(template, {}) == "dataset:dm"
    assert output_type("dataset:{params.a}", {}) is None  # no value, no default
    assert output_type(template, {"a": {"b": "${{ steps.x.result.f }}"}}) is None  # not known
    assert output_type(template, {"a": {"b": 3}}) is None
    assert output_type("text", {}) == "text"


def test_a_type_the_input_does_not_take() -> None:
    run = "${{ steps.export.run_id }}"
    pipeline = spec({"export": export("pascal_voc"), "train": train(dataset={"export_run": run})})
    assert messages(pipeline) == [
        "step 'train': input dataset.export_run of neural_net.train takes dataset:coco or "
        "dataset:yolo, but steps.export.run_id is dataset:pascal_voc (from step 'export', "
        "export.export)"
    ]
    [problem] = check_types(pipeline, {}, {"export": EXPORT, "train": TRAIN})
    assert (problem.step, problem.location) == ("train", ("dataset", "export_run"))


def test_the_type_follows_pipeline_params_and_defaults() -> None:
    run = {"export_run": "${{ steps.export.run_id }}"}
    by_param = spec({"export": export("${{ params.fmt }}"), "train": train(dataset=run)})
    assert messages(by_param, {"fmt": "coco"}) == []
    assert "is dataset:dm" in messages(by_param, {"fmt": "dm"})[0]
    assert "is dataset:dm" in messages(spec({"export": export(), "train": train(dataset=run)}))[0]


def test_a_missing_output_is_refused_and_run_id_always_exists() -> None:
    pipeline = spec(
        {"export": export("coco"), "train": train(name="${{ steps.export.result.nope }}")}
    )
    assert messages(pipeline) == [
        "step 'train' reads steps.export.result.nope, which step 'export' (export.export) "
        "does not give (its result keys: path, uri)"
    ]
    # Read inside a longer string, or deeper than the output itself: present, but not typed.
    fine = spec(
        {
            "export": export("dm"),
            "train": train(
                name="from ${{ steps.export.run_id }}", model="${{ steps.export.result.uri.x }}"
            ),
        }
    )
    assert messages(fine) == []


def test_an_action_declaring_only_its_run_gives_no_result_key() -> None:
    only_run = ActionTypes("upload.upload", outputs={"run": "data_units"})
    pipeline = spec({"export": export(), "train": train(name="${{ steps.export.result.n }}")})
    [problem] = check_types(pipeline, {}, {"export": only_run})
    assert problem.message.endswith("does not give (its result keys: none)")


def test_untyped_actions_and_inputs_are_not_checked() -> None:
    pipeline = spec(
        {"export": export("voc"), "train": train(model="${{ steps.export.result.path }}")}
    )
    assert "takes model:*, but steps.export.result.path is text" in messages(pipeline)[0]
    assert check_types(pipeline, {}, {"export": EXPORT}) == []  # train declares nothing here
    assert check_types(pipeline, {}, {"train": TRAIN}) == []  # export declares nothing here
    untyped = ActionTypes("x.y")
    assert check_types(pipeline, {}, {"export": untyped, "train": untyped}) == []


def test_output_references_locate_each_read() -> None:
    pipeline = spec(
        {
            "a": export(),
            "b": {
                "category": "c",
                "action": "d",
                "needs": ["a"],
                "params": {"x": [{"y": "${{ steps.a.result.k.z }}"}], "r": "${{ steps.a.run_id }}"},
            },
        }
    )
    refs = output_references(pipeline, "b")
    assert [(r.location, r.step, r.output, r.whole) for r in refs] == [
        (("x", 0, "y"), "a", "k", False),
        (("r",), "a", "run", True),
    ]
