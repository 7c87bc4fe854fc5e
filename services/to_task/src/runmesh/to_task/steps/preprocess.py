"""Preprocess (`inference`): pick the units the model runs on and list their images.

The list goes to the platform bucket as JSON lines (`{"key": data unit id, "uri": image}`),
so the inference run gets one small param however many images there are. Units skipped
(annotated, without `overwrite`) or without an image are settled here.
"""

from __future__ import annotations

import orjson

from runmesh.storage import platform_storage
from runmesh.to_task.context import ToTaskContext
from runmesh.to_task.steps.base import Step


class Preprocess(Step):
    """Lists the images to predict on; nothing to do for the `file` method."""

    name = "preprocess"

    async def execute(self, ctx: ToTaskContext) -> None:
        """Write the images list and remember the units it covers."""
        if ctx.params.method != "inference":
            return
        lines: list[bytes] = []
        for item in ctx.items:
            if item.has_data and not ctx.params.overwrite:
                ctx.counts.stand_by -= 1
                ctx.skipped += 1
                continue
            image = item.files.get(ctx.primary_spec)
            if image is None:
                ctx.counts.stand_by -= 1
                ctx.fail(
                    item.data_unit_id, f"no file of the primary specification {ctx.primary_spec!r}"
                )
                continue
            ctx.to_predict.append(item)
            lines.append(orjson.dumps({"key": item.data_unit_id, "uri": image["uri"]}))
        if not lines:
            return
        path = f"runs/{ctx.tenant}/{ctx.run_id}/inference-images.jsonl"
        async with platform_storage(ctx.settings.s3) as storage:
            await storage.write_bytes(path, b"\n".join(lines) + b"\n")
            ctx.images_uri = storage.url(path)
