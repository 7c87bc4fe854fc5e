"""Analyze collection: discover the source files and tie each to a file specification."""

from __future__ import annotations

from pathlib import PurePosixPath

from runmesh.storage import ObjectInfo, StorageError
from runmesh.upload.context import SourceFile, UploadContext
from runmesh.upload.errors import UploadConfigError
from runmesh.upload.steps.base import Step
from runmesh.upload.strategies.file_discovery import discovery_for


class AnalyzeCollection(Step):
    """Fills `ctx.discovered`; a file no specification accepts keeps `spec=None`.

    Multi-path: an asset's files belong to its specification. Single-path: a subfolder named
    after a specification holds that specification's files (the Synapse layout); other files
    are matched by extension.
    """

    name = "analyze_collection"

    async def execute(self, ctx: UploadContext) -> None:
        """Discover, then report how many files were found."""
        ctx.run.set_progress(0, 1, category="analyze_collection")
        if ctx.params.assets is not None:
            for spec, asset in ctx.params.assets.items():
                try:
                    found = await self._discover(ctx, [asset.path], asset.is_recursive)
                except UploadConfigError as exc:
                    if ctx.specs[spec].required:
                        raise
                    # As in Synapse: a bad path of an optional specification is skipped.
                    ctx.run.log_message(f"skipping optional {spec!r}: {exc}", level="warning")
                    continue
                ctx.discovered.extend(_source(info, spec) for info in found)
        else:
            root = ctx.params.path or ""
            if ctx.params.is_recursive:
                folders = [root]
            else:
                # As in Synapse, `is_recursive` applies inside each specification's folder:
                # the files of `<path>/` and of `<path>/<spec>/`, nothing deeper.
                folders = [root, *("/".join(p for p in (root, spec) if p) for spec in ctx.specs)]
            for info in await self._discover(ctx, folders, ctx.params.is_recursive):
                ctx.discovered.append(self._single_path_file(ctx, info, root))
        ctx.data_files.stand_by = len(ctx.discovered)
        ctx.run.set_progress(1, 1, category="analyze_collection")
        ctx.run.log_message(f"found {len(ctx.discovered)} files")

    @staticmethod
    async def _discover(
        ctx: UploadContext, folders: list[str], recursive: bool
    ) -> list[ObjectInfo]:
        found: list[ObjectInfo] = []
        for path in folders:
            try:
                found.extend(await discovery_for(recursive).discover(ctx.source, path))
            except StorageError as exc:
                raise UploadConfigError(
                    f"cannot list {path!r} in the source storage: {exc}"
                ) from exc
        files = [info for info in found if info.path not in ctx.excluded_paths]
        if not files:  # a missing folder lists as empty: say so rather than upload nothing
            raise UploadConfigError(f"no files under {folders[0]!r} in the source storage")
        return files

    @staticmethod
    def _single_path_file(ctx: UploadContext, info: ObjectInfo, root: str) -> SourceFile:
        relative = PurePosixPath(info.path).relative_to(root) if root else PurePosixPath(info.path)
        if len(relative.parts) > 1 and relative.parts[0] in ctx.specs:
            return _source(info, relative.parts[0])
        extension = relative.suffix.lower()
        matching = [s.name for s in ctx.specs.values() if extension in s.extensions]
        if len(matching) > 1:  # several specs take it: the primary one, if it is among them
            primary = [name for name in matching if ctx.specs[name].is_primary]
            matching = primary or matching[:1]
        return _source(info, matching[0] if matching else None)


def _source(info: ObjectInfo, spec: str | None) -> SourceFile:
    # Files pair into a unit by stem, wherever they sit below their folder (as in Synapse);
    # two files of one specification with the same stem are reported by organize_files.
    return SourceFile(
        path=info.path, size=info.size, spec=spec, unit_key=PurePosixPath(info.path).stem
    )
