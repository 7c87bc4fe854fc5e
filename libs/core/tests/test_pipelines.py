"""Pipeline definitions: static validation, graph queries and reference resolution."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from runmesh.core.errors import RunmeshError
from runmesh.core.pipelines import (
    MAX_STEPS,
    PipelineReferenceError,
    PipelineSpec,
    PipelineStep,
    missing_params,
    step_params,
)


def _spec(steps: dict[str, dict[str, Any]], **fields: Any) -> PipelineSpec:
    """A spec named `p` whose steps default to category `export`, action `export`."""
    return PipelineSpec.model_validate(
        {
            "name": "p",
            **fields,
            "steps": {
                name: {"category": "export", "action": "export", **step}
                for name, step in steps.items()
            },
        }
    )


def _invalid(steps: dict[str, dict[str, Any]], **fields: Any) -> str:
    """The validation message of a spec that must be refused."""
    with pytest.raises(ValidationError) as caught:
        _spec(steps, **fields)
    return str(caught.value)


# A fan-out / fan-in: upload, then export COCO and YOLO in parallel, then train on both.
DIAMOND = {
    "upload": {},
    "coco": {"needs": ["upload"]},
    "yolo": {"needs": ["upload"]},
    "train": {"needs": ["yolo", "coco"]},
    "report": {"needs": ["train"]},
}


# valid specs and graph queries ---------------------------------------------------------


def test_a_chain() -> None:
    spec = _spec({"c": {"needs": ["b"]}, "a": {}, "b": {"needs": ["a"]}})
    assert spec.order() == ["a", "b", "c"]
    assert spec.roots() == ["a"]
    assert spec.ancestors("c") == {"a", "b"}
    assert spec.ancestors("a") == set()
    assert spec.dependants("a") == {"b", "c"}
    assert spec.dependants("c") == set()


def test_fan_out_and_fan_in() -> None:
    spec = _spec(DIAMOND)
    assert spec.order() == ["upload", "coco", "yolo", "train", "report"]
    assert spec.roots() == ["upload"]
    assert spec.ancestors("train") == {"upload", "coco", "yolo"}
    assert spec.ancestors("report") == {"upload", "coco", "yolo", "train"}
    assert spec.dependants("coco") == {"train", "report"}
    assert spec.dependants("upload") == {"coco", "yolo", "train", "report"}


def test_order_is_stable_definition_order_among_ready_steps() -> None:
    spec = _spec({"z": {"needs": ["y"]}, "x": {}, "y": {}, "w": {"needs": ["x"]}})
    # x and y are ready first (x defined first), then z (defined before w).
    assert spec.order() == ["x", "y", "z", "w"]
    assert spec.roots() == ["x", "y"]
    assert _spec({"b": {}, "a": {}}).order() == ["b", "a"]


def test_graph_queries_refuse_an_unknown_step() -> None:
    spec = _spec({"a": {}})
    with pytest.raises(KeyError):
        spec.ancestors("nope")
    with pytest.raises(KeyError):
        spec.dependants("nope")


def test_defaults_and_frozen() -> None:
    spec = _spec({"a": {}})
    step = spec.steps["a"]
    assert (step.plugin, step.params, step.needs, step.timeout_s) == (None, {}, [], None)
    assert (spec.description, spec.params) == ("", {})
    with pytest.raises(ValidationError):
        step.action = "other"  # type: ignore[misc]


def test_parses_from_yaml() -> None:
    text = """
name: coco and yolo, then train
params:
  project: p-1
  epochs: 5
steps:
  export_coco:
    category: export
    action: export
    params:
      name: "${{ params.project }}-coco"
      target: task
      filter: {project: "${{ params.project }}"}
      extra_params: {output_format: coco}
  export_yolo:
    category: export
    action: export
    params:
      name: ${{params.project}}-yolo
      filter: {project: "${{ params.project }}"}
      extra_params: {output_format: yolo}
  train:
    category: neural_net
    action: train
    plugin: runmesh-train@1.0.0
    needs: [export_coco, export_yolo]
    timeout_s: 3600
    params:
      name: cats
      dataset: {uri: "${{ steps.export_coco.result.uri }}", format: coco}
      hyperparameters: {epochs: "${{ params.epochs }}"}
"""
    spec = PipelineSpec.model_validate(yaml.safe_load(text))
    assert list(spec.steps) == ["export_coco", "export_yolo", "train"]
    assert spec.order() == ["export_coco", "export_yolo", "train"]
    assert spec.steps["train"].plugin == "runmesh-train@1.0.0"
    assert spec.referenced_params() == {"project", "epochs"}
    assert missing_params(spec, {}) == []
    train = step_params(
        spec,
        "train",
        spec.params,
        {"export_coco": {"uri": "s3://b/t/p-1-coco", "items": {"total": 3}}},
    )
    assert train == {
        "name": "cats",
        "dataset": {"uri": "s3://b/t/p-1-coco", "format": "coco"},
        "hyperparameters": {"epochs": 5},
    }
    coco = step_params(spec, "export_coco", {**spec.params, "project": "q"}, {})
    assert coco["name"] == "q-coco"
    assert coco["filter"] == {"project": "q"}


# static errors -----------------------------------------------------------------------


def test_unknown_need() -> None:
    message = _invalid({"a": {}, "b": {"needs": ["c"]}})
    assert "step 'b' needs 'c', which is not a step of this pipeline (its steps: a, b)" in message


def test_self_need() -> None:
    assert "step 'a' needs itself" in _invalid({"a": {"needs": ["a"]}})


def test_duplicate_need() -> None:
    assert "step 'b' needs 'a' twice" in _invalid({"a": {}, "b": {"needs": ["a", "a"]}})


def test_cycle_is_named() -> None:
    message = _invalid({"a": {"needs": ["b"]}, "b": {"needs": ["a"]}})
    assert "steps a → b → a form a cycle" in message
    longer = _invalid(
        {"r": {}, "x": {"needs": ["r", "z"]}, "y": {"needs": ["x"]}, "z": {"needs": ["y"]}}
    )
    assert "steps x → z → y → x form a cycle" in longer


def test_reference_to_a_step_not_needed() -> None:
    steps = {
        "train": {},
        "other": {},
        "report": {"needs": ["other"], "params": {"m": "${{ steps.train.result.model_id }}"}},
    }
    message = _invalid(steps)
    assert "step 'report' references steps.train, which it does not need (add it to needs)" in (
        message
    )


def test_reference_to_a_transitive_ancestor_is_allowed() -> None:
    spec = _spec(
        {
            "a": {},
            "b": {"needs": ["a"]},
            "c": {"needs": ["b"], "params": {"x": ["${{ steps.a.result.k }}"]}},
        }
    )
    assert step_params(spec, "c", {}, {"a": {"k": 1}}) == {"x": [1]}


def test_reference_to_itself_or_an_unknown_step() -> None:
    own = _invalid({"a": {"params": {"x": "${{ steps.a.result.k }}"}}})
    assert "step 'a' references its own result" in own
    unknown = _invalid({"a": {"params": {"x": "${{ steps.zz.result.k }}"}}})
    assert "step 'a' references steps.zz, which is not a step of this pipeline" in unknown


@pytest.mark.parametrize(
    "text",
    [
        "${{ param.x }}",
        "${{ steps.a.k }}",
        "${{ steps.a.result }}",
        "${{ steps.a.run_id.x }}",
        "${{ steps.a.run }}",
        "${{ pipeline.id }}",
        "${{ pipeline.workspace.x }}",
        "${{ env.HOME }}",
        "${{}}",
        "${{ params.x.y }}",
        "${{ params.a b }}",
        "run ${{ params.x",
    ],
)
def test_bad_reference_syntax(text: str) -> None:
    message = _invalid({"a": {}, "b": {"needs": ["a"], "params": {"deep": [{"v": text}]}}})
    assert "step 'b': params.deep[0].v:" in message
    assert "is not a reference: write ${{ params.NAME }}, ${{ steps.STEP.result.KEY }}, " in (
        message
    )


def test_reference_in_a_key_is_refused() -> None:
    message = _invalid({"a": {"params": {"${{ params.k }}": 1}}})
    assert "step 'a': params: key '${{ params.k }}': a reference may only be in a value" in message


@pytest.mark.parametrize("name", ["Train", "1st", "_a", "a b", "a.b", "", "a" * 64])
def test_bad_step_name(name: str) -> None:
    message = _invalid({name: {}})
    assert f"step name {name!r} is not valid" in message


def test_longest_step_name() -> None:
    assert _spec({"a" * 63: {}}).roots() == ["a" * 63]


def test_step_count() -> None:
    assert _spec({f"s{i}": {} for i in range(MAX_STEPS)}).order()[-1] == f"s{MAX_STEPS - 1}"
    assert "at most 100" in _invalid({f"s{i}": {} for i in range(MAX_STEPS + 1)})
    assert "at least 1" in _invalid({})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("category", ""),
        ("action", "x" * 201),
        ("plugin", "p" * 301),
        ("timeout_s", 0),
        ("unknown", 1),
    ],
)
def test_step_field_limits(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        PipelineStep.model_validate({"category": "export", "action": "export", field: value})


def test_spec_field_limits() -> None:
    assert "description" in _invalid({"a": {}}, description="d" * 2001)
    assert "extra" in _invalid({"a": {}}, owner="me").lower()


# params ------------------------------------------------------------------------------


def test_referenced_and_missing_params() -> None:
    spec = _spec(
        {
            "a": {"params": {"x": "${{ params.zeta }}", "y": ["in ${{params.alpha}}"]}},
            "b": {"needs": ["a"], "params": {"z": {"w": "${{ params.beta }}"}}},
        },
        params={"beta": 1, "unused": 2},
    )
    assert spec.referenced_params() == {"zeta", "alpha", "beta"}
    assert missing_params(spec, {}) == ["alpha", "zeta"]
    assert missing_params(spec, {"zeta": None}) == ["alpha"]
    assert missing_params(spec, {"zeta": 1, "alpha": 2}) == []


# resolution ----------------------------------------------------------------------------


RESULT = {
    "name": "cats",
    "count": 3,
    "model": {"id": "m-1", "metrics": {"map": 0.5}},
    "files": [{"uri": "s3://b/0"}, {"uri": "s3://b/1"}],
    "ok": True,
    "none": None,
}


def _resolve(params: dict[str, Any], pipeline_params: dict[str, Any] | None = None) -> Any:
    spec = _spec({"a": {}, "b": {"needs": ["a"], "params": params}})
    return step_params(spec, "b", pipeline_params or {}, {"a": RESULT})


def test_whole_string_reference_keeps_the_type() -> None:
    resolved = _resolve(
        {
            "count": "${{ steps.a.result.count }}",
            "model": "${{steps.a.result.model}}",
            "files": "${{ steps.a.result.files }}",
            "ok": "${{ steps.a.result.ok }}",
            "none": "${{ steps.a.result.none }}",
            "epochs": "${{ params.epochs }}",
        },
        {"epochs": 7},
    )
    assert resolved == {
        "count": 3,
        "model": {"id": "m-1", "metrics": {"map": 0.5}},
        "files": RESULT["files"],
        "ok": True,
        "none": None,
        "epochs": 7,
    }
    # A copy: changing the resolved params never changes a step's result.
    resolved["model"]["id"] = "changed"
    assert RESULT["model"]["id"] == "m-1"  # type: ignore[index]


def test_embedded_references_become_text() -> None:
    resolved = _resolve(
        {
            "s": "model ${{ steps.a.result.model.id }} of ${{ steps.a.result.name }}",
            "n": "n=${{ steps.a.result.count }}",
            "obj": "m: ${{ steps.a.result.model.metrics }}",
            "flags": "${{ steps.a.result.ok }}/${{ steps.a.result.none }}",
            "p": " ${{ params.x }}",
            "text": "no reference, a $ and {{ braces }}",
            "number": 4,
        },
        {"x": "é"},
    )
    assert resolved == {
        "s": "model m-1 of cats",
        "n": "n=3",
        "obj": 'm: {"map":0.5}',
        "flags": "true/null",
        "p": " é",
        "text": "no reference, a $ and {{ braces }}",
        "number": 4,
    }


def test_nested_dicts_lists_and_list_index() -> None:
    resolved = _resolve(
        {
            "a": [{"b": ["${{ steps.a.result.files.1.uri }}", 1]}, "${{ steps.a.result.files.0 }}"],
            "c": {"d": {"e": "${{ steps.a.result.model.metrics.map }}"}},
        }
    )
    assert resolved == {"a": [{"b": ["s3://b/1", 1]}, {"uri": "s3://b/0"}], "c": {"d": {"e": 0.5}}}


def test_values_put_in_are_not_read_again() -> None:
    assert _resolve({"v": "${{ params.x }}"}, {"x": "${{ params.y }}"}) == {"v": "${{ params.y }}"}


def _reference_error(params: dict[str, Any], **kwargs: Any) -> PipelineReferenceError:
    with pytest.raises(PipelineReferenceError) as caught:
        _resolve(params, **kwargs)
    return caught.value


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        (
            "steps.a.result.model_id",
            "step 'b': steps.a.result.model_id is not in step a's result "
            "(its keys: name, count, model, files, ok, none)",
        ),
        (
            "steps.a.result.model.name",
            "step 'b': steps.a.result.model.name is not in step a's result "
            "(result.model's keys: id, metrics)",
        ),
        (
            "steps.a.result.files.2",
            "step 'b': steps.a.result.files.2 is out of range: result.files has 2 items",
        ),
        (
            "steps.a.result.files.first",
            "step 'b': steps.a.result.files.first cannot be read: "
            "result.files is a list, indexed by number",
        ),
        (
            "steps.a.result.count.x",
            "step 'b': steps.a.result.count.x cannot be read: "
            "result.count is a number, not an object or a list",
        ),
        (
            "steps.a.result.name.0",
            "step 'b': steps.a.result.name.0 cannot be read: "
            "result.name is a string, not an object or a list",
        ),
        (
            "params.epochs",
            "step 'b': params.epochs has no value: the pipeline has no default for it "
            "and none was given (its params: seed)",
        ),
    ],
)
def test_reference_errors(reference: str, message: str) -> None:
    error = _reference_error(
        {"x": {"y": f"at ${{{{ {reference} }}}}"}}, pipeline_params={"seed": 1}
    )
    assert str(error) == message
    assert (error.step, error.reference) == ("b", reference)
    assert isinstance(error, RunmeshError)
    assert not error.retriable


def test_reference_to_a_step_without_result() -> None:
    spec = _spec({"a": {}, "b": {"needs": ["a"], "params": {"v": "${{ steps.a.result.k }}"}}})
    with pytest.raises(PipelineReferenceError, match=r"step a has no result"):
        step_params(spec, "b", {}, {})


def test_run_id_reference() -> None:
    spec = _spec(
        {
            "a": {},
            "b": {
                "needs": ["a"],
                "params": {"run": "${{ steps.a.run_id }}", "s": "r=${{steps.a.run_id}}"},
            },
        }
    )
    values = step_params(spec, "b", {}, {"a": {}}, {"a": "0f0e"})
    assert values == {"run": "0f0e", "s": "r=0f0e"}
    with pytest.raises(
        PipelineReferenceError, match=r"steps.a.run_id cannot be read: step a has no run"
    ):
        step_params(spec, "b", {}, {"a": {}})
    # Like a result, a run id is only read from a step that is needed.
    message = _invalid({"a": {}, "b": {"params": {"r": "${{ steps.a.run_id }}"}}})
    assert "step 'b' references steps.a, which it does not need" in message


def test_pipeline_references() -> None:
    spec = _spec(
        {"a": {"params": {"w": "${{ pipeline.workspace }}x", "r": "${{pipeline.run_id}}"}}}
    )
    values = step_params(spec, "a", {}, {}, {}, {"workspace": "s3://b/w/", "run_id": "9"})
    assert values == {"w": "s3://b/w/x", "r": "9"}
    with pytest.raises(PipelineReferenceError, match=r"pipeline.workspace is not known yet"):
        step_params(spec, "a", {}, {})
    assert spec.referenced_params() == set()


def test_reference_error_pickles() -> None:
    error = _reference_error({"v": "${{ params.missing }}"})
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.step, copy.reference) == (str(error), "b", "params.missing")


def test_step_params_of_an_unknown_step() -> None:
    with pytest.raises(KeyError):
        step_params(_spec({"a": {}}), "nope", {}, {})
