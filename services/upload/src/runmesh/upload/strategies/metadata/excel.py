"""Excel metadata: an .xlsx whose first column is the file stem and header row the meta keys."""

from __future__ import annotations

import asyncio
import io
import zipfile
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import PurePosixPath
from typing import Any

from runmesh.storage import Storage, StorageError, StorageNotFound
from runmesh.upload.errors import MetadataError, MetadataTooLargeError
from runmesh.upload.strategies.metadata.base import MetadataSource

_EXACT_INTEGERS = 2**53
"""Floats below this are whole numbers exactly, as Excel wrote them (`3`, not `3.0`)."""


@dataclass(slots=True, frozen=True)
class ExcelLimits:
    """Bounds that keep a hostile or mistaken workbook from exhausting the worker."""

    max_bytes: int = 10 * 1024 * 1024
    max_unpacked_bytes: int = 64 * 1024 * 1024
    """What the workbook's parts may add up to once inflated (their zip headers say, and
    zipfile never inflates an entry past what its header says): a small file that inflates
    to hundreds of MB took its job's memory and crashed it."""
    max_entries: int = 1_000
    max_rows: int = 10_000
    max_columns: int = 50


class ExcelMetadata(MetadataSource):
    """Reads the first worksheet of a workbook found at one of `candidates` (first that exists)."""

    name = "excel"

    def __init__(self, candidates: list[str], limits: ExcelLimits | None = None) -> None:
        self._candidates = candidates
        self._limits = limits or ExcelLimits()
        self.found_path: str | None = None
        """The candidate the workbook was read from (not data: discovery leaves it out)."""

    async def load(self, storage: Storage) -> dict[str, dict[str, Any]]:
        """Meta by file stem; `MetadataError` naming the workbook, row or column at fault."""
        path, data = await self._read(storage)
        self.found_path = path
        return await asyncio.to_thread(parse_workbook, data, path, self._limits)

    async def _read(self, storage: Storage) -> tuple[str, bytes]:
        for path in self._candidates:
            try:
                return path, await storage.read_bytes(path, max_bytes=self._limits.max_bytes)
            except StorageNotFound:
                continue
            except StorageError as exc:
                raise MetadataError(f"cannot read the Excel metadata {path!r}: {exc}") from exc
        raise MetadataError(f"Excel metadata not found at {' or '.join(self._candidates)!r}")


def parse_workbook(data: bytes, path: str, limits: ExcelLimits) -> dict[str, dict[str, Any]]:
    """Parse workbook bytes (blocking: call it in a thread)."""
    # Imported here: only a run that reads a workbook loads the reader.
    from python_calamine import CalamineError, CalamineWorkbook

    if len(data) > limits.max_bytes:
        raise MetadataTooLargeError(f"{path}: {len(data)} bytes, over the {limits.max_bytes} limit")
    _check_unpacked_size(data, path, limits)
    try:
        workbook = CalamineWorkbook.from_filelike(io.BytesIO(data))
    except (CalamineError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise MetadataError(f"{path}: not a readable .xlsx workbook ({exc})") from exc
    try:
        if not workbook.sheet_names:
            raise MetadataError(f"{path}: the workbook has no worksheet")
        try:
            sheet = workbook.get_sheet_by_index(0)
            # From A1 (not from the first filled cell), and one row past the limit to tell.
            rows = sheet.to_python(skip_empty_area=False, nrows=limits.max_rows + 2)
        except CalamineError as exc:
            raise MetadataError(f"{path}: not a readable .xlsx workbook ({exc})") from exc
        return _meta(rows, path, sheet.name, limits)
    finally:
        workbook.close()


def _meta(
    rows: list[list[Any]], path: str, sheet: str, limits: ExcelLimits
) -> dict[str, dict[str, Any]]:
    """Meta by file stem from a sheet's rows, its first the header."""
    keys = _header_keys(_cells(rows[0]) if rows else None, path, sheet, limits)
    result: dict[str, dict[str, Any]] = {}
    first_row: dict[str, int] = {}
    for number, raw in enumerate(rows[1:], start=2):
        if number - 1 > limits.max_rows:
            raise MetadataError(
                f"{path}: sheet {sheet!r} has more than {limits.max_rows} data rows"
            )
        row = _cells(raw)
        if all(cell is None for cell in row):
            continue
        stem = _stem(row[0])
        if not stem:
            raise MetadataError(f"{path}: row {number} has no file name in column A")
        if stem in first_row:
            raise MetadataError(
                f"{path}: file {stem!r} appears twice (rows {first_row[stem]} and {number})"
            )
        first_row[stem] = number
        result[stem] = {
            key: _json_value(row[index + 1]) if index + 1 < len(row) else None
            for index, key in enumerate(keys)
        }
    return result


def _cells(row: list[Any]) -> tuple[Any, ...]:
    """A row's values as openpyxl read them, so a unit's meta did not change with the reader:
    an empty cell is None (calamine: ""), a whole number an int (calamine: a float), a
    date-formatted cell a datetime (calamine: a date when it has no time of day)."""
    return tuple(_cell(value) for value in row)


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value == "":
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < _EXACT_INTEGERS:
        return int(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value, time())
    return value


def _check_unpacked_size(data: bytes, path: str, limits: ExcelLimits) -> None:
    """Refuse a workbook by its zip headers before anything is inflated."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise MetadataError(f"{path}: not a readable .xlsx workbook ({exc})") from exc
    if len(infos) > limits.max_entries:
        raise MetadataTooLargeError(
            f"{path}: the workbook has {len(infos):,} parts, over the {limits.max_entries:,} limit"
        )
    unpacked = sum(info.file_size for info in infos)
    if unpacked > limits.max_unpacked_bytes:
        raise MetadataTooLargeError(
            f"{path}: the workbook unpacks to {unpacked:,} bytes, over the "
            f"{limits.max_unpacked_bytes:,} limit; keep only the metadata sheet, or split it"
        )


def _header_keys(
    header: tuple[Any, ...] | None, path: str, sheet: str, limits: ExcelLimits
) -> list[str]:
    if header is None or header[0] is None:
        raise MetadataError(f"{path}: sheet {sheet!r} has no header row (A1 must name the file)")
    cells = list(header)
    while cells and cells[-1] is None:
        cells.pop()
    if len(cells) > limits.max_columns:
        raise MetadataError(f"{path}: {len(cells)} columns, over the {limits.max_columns} limit")
    if len(cells) < 2:
        raise MetadataError(f"{path}: sheet {sheet!r} has no meta columns after the file column")
    keys: list[str] = []
    for index, cell in enumerate(cells[1:], start=2):
        key = str(cell).strip() if cell is not None else ""
        if not key:
            raise MetadataError(f"{path}: header cell {_column(index)}1 is empty")
        if key in keys:
            raise MetadataError(f"{path}: header {key!r} appears twice")
        keys.append(key)
    return keys


def _stem(value: Any) -> str:
    text = str(value).strip() if value is not None else ""
    return PurePosixPath(text).stem if "." in text else text


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return value


def _column(index: int) -> str:
    letters = ""
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters
