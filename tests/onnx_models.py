"""Tiny ONNX detectors built in the test with onnx's helper API (no downloads): each answers
every image with the same raw outputs, laid out as a real export of its kind would."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _constant(name: str, value: npt.NDArray[np.generic]) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))


def yolo(
    raw: npt.NDArray[np.float32],
    *,
    size: int = 64,
    batch: int | str = "batch",
    input_type: int = TensorProto.FLOAT,
) -> bytes:
    """A YOLO export with input `[batch, 3, size, size]` (of `input_type`) whose output is
    `raw` (shape `[1, rows, cols]`) for every image of the batch: `[batch, rows, cols]`."""
    rows, cols = raw.shape[1], raw.shape[2]
    nodes = [
        helper.make_node("Cast", ["images"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["pixels"], ["mean"], axes=[1, 2, 3], keepdims=1),
        _constant("flat", np.array([-1, 1, 1], dtype=np.int64)),
        helper.make_node("Reshape", ["mean", "flat"], ["per_image"]),
        _constant("zero", np.array(0.0, dtype=np.float32)),
        helper.make_node("Mul", ["per_image", "zero"], ["nothing"]),
        _constant("raw", raw.astype(np.float32)),
        helper.make_node("Add", ["nothing", "raw"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "yolo",
        [helper.make_tensor_value_info("images", input_type, [batch, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, rows, cols])],
    )
    return _model(graph)


def three_outputs(outputs: dict[str, npt.NDArray[np.generic]], *, image_rank: int) -> bytes:
    """A model whose outputs are `outputs` (boxes, scores and labels, in the order and names
    given) whatever the image: input `[3, H, W]` (`image_rank` 3, torchvision's) or
    `[1, 3, H, W]`."""
    shape: list[int | str] = [3, "height", "width"] if image_rank == 3 else [1, 3, "h", "w"]
    nodes = [
        helper.make_node("Shape", ["image"], ["image_shape"]),  # the input is read
        *(_constant(name, value) for name, value in outputs.items()),
    ]
    kinds = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64}
    declared = [
        helper.make_tensor_value_info(name, kinds[value.dtype], list(value.shape))
        for name, value in outputs.items()
    ]
    graph = helper.make_graph(
        nodes,
        "three",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [*declared, helper.make_tensor_value_info("image_shape", TensorProto.INT64, [image_rank])],
    )
    model = onnx.load_from_string(_model(graph))
    # The shape output only keeps the input in use; a detector has exactly three outputs.
    model.graph.output.pop()
    return model.SerializeToString()


def _model(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
