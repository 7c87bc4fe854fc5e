"""Excel metadata parsing (pure): meta by file stem, limits, and errors naming the cell."""

from __future__ import annotations

import io
from datetime import date
from typing import Any

import pytest
from openpyxl import Workbook

from runmesh.upload.errors import MetadataError
from runmesh.upload.strategies.metadata.excel import ExcelLimits, parse_workbook


def workbook(*rows: list[Any], sheets: int = 1) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    for index in range(1, sheets):
        book.create_sheet(f"other{index}").append(["ignored"])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_rows_become_meta_by_stem_with_extensions_dropped() -> None:
    data = workbook(
        ["file", "weather", "taken"],
        ["a.jpg", "sunny", date(2024, 5, 1)],
        ["b", "rain", None],
        [None, None, None],  # blank rows are skipped
        sheets=2,
    )
    meta = parse_workbook(data, "m.xlsx", ExcelLimits())
    assert meta == {
        "a": {"weather": "sunny", "taken": "2024-05-01T00:00:00"},
        "b": {"weather": "rain", "taken": None},
    }


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[None, "k"], ["a", 1]], "no header row"),
        ([["file"], ["a"]], "no meta columns"),
        ([["file", "k", None, "j"], ["a", 1, 2, 3]], "header cell C1 is empty"),
        ([["file", "k", "k"], ["a", 1, 2]], "header 'k' appears twice"),
        ([["file", "k"], ["a", 1], ["a.png", 2]], "'a' appears twice (rows 2 and 3)"),
        ([["file", "k"], [None, 1]], "row 2 has no file name in column A"),
    ],
)
def test_malformed_sheets_name_the_cell(rows: list[list[Any]], message: str) -> None:
    with pytest.raises(MetadataError) as caught:
        parse_workbook(workbook(*rows), "m.xlsx", ExcelLimits())
    assert message in str(caught.value)
    assert str(caught.value).startswith("m.xlsx: ")


def test_limits_on_bytes_rows_and_columns() -> None:
    data = workbook(["file", "k"], *[[f"f{i}", i] for i in range(20)])
    with pytest.raises(MetadataError, match="more than 10 data rows"):
        parse_workbook(data, "m.xlsx", ExcelLimits(max_rows=10))
    with pytest.raises(MetadataError, match="over the 100 limit"):
        parse_workbook(data, "m.xlsx", ExcelLimits(max_bytes=100))
    wide = workbook(["file", *[f"c{i}" for i in range(10)]], ["a", *range(10)])
    with pytest.raises(MetadataError, match="11 columns, over the 5 limit"):
        parse_workbook(wide, "m.xlsx", ExcelLimits(max_columns=5))


def test_not_a_workbook() -> None:
    with pytest.raises(MetadataError, match=r"not a readable \.xlsx workbook"):
        parse_workbook(b"PK\x03\x04 broken", "m.xlsx", ExcelLimits())
    with pytest.raises(MetadataError, match=r"not a readable \.xlsx workbook"):
        parse_workbook(b"plain text", "m.xlsx", ExcelLimits())
