"""`OnnxDetector` (issue 18 items 3 and 4): each declared output layout of a team's ONNX
detector is read back to the boxes the model meant, in the image's pixels (letterboxing
undone), thresholded and NMS'd; batches of images go through one call; a file that is not a
detector of its layout is refused with a message. The models are built in the test
(`tests/onnx_models.py`)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from runmesh.train.model import Detection
from runmesh.train.model.onnx_detector import OnnxDetector, OnnxModelError

from .onnx_models import three_outputs, yolo

CLASSES = ["cat", "dog"]
# A 128 x 64 image in a 64 x 64 input: scale 0.5, 16 px of grey above and below.
WIDE = np.zeros((64, 128, 3), dtype=np.uint8)


def yolov8_rows() -> np.ndarray:
    """[1, 4 + 2, 4] rows: a dog, the same dog a little lower (NMS drops it), a cat under the
    threshold, and a cat."""
    boxes = [  # cx, cy, w, h (input pixels), cat score, dog score
        (32, 32, 16, 8, 0.05, 0.9),
        (32, 33, 16, 8, 0.10, 0.8),
        (10, 20, 8, 8, 0.30, 0.0),
        (50, 40, 8, 4, 0.70, 0.1),
    ]
    return np.array(boxes, dtype=np.float32).T[None]


def test_yolov8_boxes_come_back_in_the_images_pixels() -> None:
    detector = OnnxDetector(yolo(yolov8_rows()), "yolov8", CLASSES)
    found = detector.detect(WIDE, threshold=0.5)
    assert found == [
        Detection("dog", (48.0, 24.0, 32.0, 16.0), pytest.approx(0.9)),
        Detection("cat", (92.0, 44.0, 16.0, 8.0), pytest.approx(0.7)),
    ]
    assert detector.detect(WIDE, threshold=0.5, max_detections=1)[0].class_name == "dog"
    assert len(detector.detect(WIDE, threshold=0.25)) == 3  # the low cat too


def test_yolov5_scores_are_objectness_times_class() -> None:
    rows = np.array(
        [[32, 32, 16, 8, 0.5, 0.2, 0.9], [10, 20, 8, 8, 0.9, 0.8, 0.1]], dtype=np.float32
    )[None]
    found = OnnxDetector(yolo(rows), "yolov5", CLASSES).detect(WIDE, threshold=0.4)
    assert [(d.class_name, round(d.score, 3)) for d in found] == [("cat", 0.72), ("dog", 0.45)]


def test_a_batch_goes_through_in_calls_of_batch_size() -> None:
    detector = OnnxDetector(yolo(yolov8_rows()), "yolov8", CLASSES, batch_size=2)
    calls: list[int] = []
    run = detector._session.run

    def counted(names: object, feed: dict[str, np.ndarray]) -> object:
        calls.append(len(next(iter(feed.values()))))
        return run(names, feed)

    detector._session.run = counted
    found = detector.detect_batch([WIDE] * 5, threshold=0.5)
    assert calls == [2, 2, 1]
    assert all(image == found[0] for image in found) and len(found) == 5


def test_torchvision_labels_are_one_based_and_boxes_are_the_images() -> None:
    model = three_outputs(
        {
            "boxes": np.array([[10, 5, 30, 25], [0, 0, 4, 4]], dtype=np.float32),
            "labels": np.array([2, 1], dtype=np.int64),
            "scores": np.array([0.8, 0.2], dtype=np.float32),
        },
        image_rank=3,
    )
    found = OnnxDetector(model, "torchvision", CLASSES).detect(WIDE, threshold=0.5)
    assert found == [Detection("dog", (10.0, 5.0, 20.0, 20.0), pytest.approx(0.8))]


def test_a_generic_layout_on_the_image_itself() -> None:
    model = three_outputs(
        {
            "boxes": np.array([[[100, 10, 140, 30]]], dtype=np.float32),  # past the edge
            "scores": np.array([[0.9]], dtype=np.float32),
            "classes": np.array([[0]], dtype=np.int64),
        },
        image_rank=4,
    )
    found = OnnxDetector(model, "boxes_scores_classes", CLASSES).detect(WIDE, threshold=0.5)
    assert found == [Detection("cat", (100.0, 10.0, 28.0, 20.0), pytest.approx(0.9))]  # clipped


def test_what_is_not_a_detector_of_its_layout_is_refused() -> None:
    with pytest.raises(OnnxModelError, match="onnxruntime cannot load it"):
        OnnxDetector(b"not onnx", "yolov8", CLASSES)
    with pytest.raises(OnnxModelError, match="unknown layout 'yolov9'"):
        OnnxDetector(yolo(yolov8_rows()), "yolov9", CLASSES)  # type: ignore[arg-type]
    with pytest.raises(OnnxModelError, match="layout torchvision takes an image input of rank 3"):
        OnnxDetector(yolo(yolov8_rows()), "torchvision", CLASSES)
    with pytest.raises(OnnxModelError, match=r"a yolov8 output is \[4 \+ 3 classes, N\]"):
        OnnxDetector(yolo(yolov8_rows()), "yolov8", [*CLASSES, "bird"]).detect(WIDE, threshold=0.5)


def test_a_float16_input_is_refused_with_how_to_export_it() -> None:
    half = yolo(yolov8_rows(), input_type=onnx.TensorProto.FLOAT16)
    with pytest.raises(OnnxModelError, match=r"its input is a tensor\(float16\); .* float32"):
        OnnxDetector(half, "yolov8", CLASSES)
