"""The export bench's baseline: supervision 0.31 (`sv.DetectionDataset`) converting the same
boxes to COCO and YOLO, in a fresh spawned process (bench/export_throughput.py says what is
timed and why)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

Entry = tuple[str, int, int, list[list[float]], list[int]]
"""One image: its path, width, height, xyxy boxes and their class ids."""


def supervision_export(
    entries: list[Entry],
    out: str,
    in_memory: bool,
    classes: list[str],
    sizes: list[tuple[int, int]],
) -> dict[str, float]:
    """In a fresh process: build the `sv.DetectionDataset` (untimed), then time as_coco and
    as_yolo. `sizes` are the images' (width, height), for the in-memory blanks."""
    import numpy as np

    with warnings.catch_warnings():  # supervision warns at import that OpenCV is missing
        warnings.simplefilter("ignore")
        import supervision as sv

    annotations = {
        path: sv.Detections(
            xyxy=np.asarray(xyxy, dtype=np.float64).reshape(-1, 4),
            class_id=np.asarray(class_ids, dtype=np.int64),
        )
        for path, _, _, xyxy, class_ids in entries
    }
    images: list[str] | dict[str, Any]
    if in_memory:
        blank = {(w, h): np.zeros((h, w, 3), dtype=np.uint8) for w, h in sizes}
        images = {path: blank[(w, h)] for path, w, h, _, _ in entries}
    else:
        images = [path for path, *_ in entries]
    root = Path(out)
    with warnings.catch_warnings():  # the in-memory mode's deprecation warning
        warnings.simplefilter("ignore")
        dataset = sv.DetectionDataset(classes=classes, images=images, annotations=annotations)
        began = time.perf_counter()
        _, next_annotation = dataset.as_coco(annotations_path=str(root / "annotations.json"))
        coco_s = time.perf_counter() - began
        began = time.perf_counter()
        dataset.as_yolo(
            annotations_directory_path=str(root / "labels"),
            data_yaml_path=str(root / "data.yaml"),
        )
        yolo_s = time.perf_counter() - began
    status = Path("/proc/self/status").read_text()
    hwm_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    return {
        "coco_s": coco_s,
        "yolo_s": yolo_s,
        "annotations": next_annotation - 1,
        "label_files": len(os.listdir(root / "labels")),
        "peak_rss_mb": hwm_kb / 1024,
    }


async def spawned_export(
    entries: list[Entry],
    out: Path,
    *,
    in_memory: bool,
    classes: list[str],
    sizes: list[tuple[int, int]],
) -> dict[str, float]:
    """`supervision_export` in a spawned process of its own."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return await asyncio.get_running_loop().run_in_executor(
            pool, supervision_export, entries, str(out), in_memory, classes, sizes
        )
