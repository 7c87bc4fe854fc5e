"""Upload params: exactly one mode, blank names refused, sizes converted."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from runmesh.upload.params import UploadParams

IDS = {"storage": str(uuid.uuid4()), "data_collection": str(uuid.uuid4())}


def test_single_and_multi_path_modes() -> None:
    single = UploadParams.model_validate({**IDS, "name": " up ", "path": "ds"})
    assert single.name == "up" and single.assets is None
    multi = UploadParams.model_validate(
        {**IDS, "name": "up", "assets": {"image": {"path": "imgs"}}}
    )
    assert multi.assets is not None and multi.assets["image"].is_recursive is True
    assert (
        UploadParams.model_validate(
            {**IDS, "name": "x", "path": "p", "max_file_size_mb": 1.5}
        ).max_file_bytes
        == 1572864
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({}, "either `path`"),
        ({"path": "a", "assets": {"image": {"path": "b"}}}, "either `path`"),
        ({"assets": {}}, "at least one file specification"),
        ({"path": "a", "name": "   "}, "must not be blank"),
        ({"path": "a", "unknown": 1}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_params(extra: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        UploadParams.model_validate({**IDS, "name": "up", **extra})
    assert message in str(caught.value)
