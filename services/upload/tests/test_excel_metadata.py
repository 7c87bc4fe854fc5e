"""Excel metadata parsing (pure): meta by file stem, limits, and errors naming the cell."""

from __future__ import annotations

import datetime as dt
import io
import time
import zipfile
from datetime import date
from typing import Any

import pytest
from openpyxl import Workbook

from runmesh.upload.errors import MetadataError, MetadataTooLargeError
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


def test_values_are_read_as_openpyxl_read_them() -> None:
    # The reader changed (openpyxl → calamine); a unit's meta must not have.
    data = workbook(
        ["file", "int", "float", "zero", "day", "moment", "clock", "flag", "none", "text"],
        ["a", 3, 2.5, 0, date(2024, 5, 1), dt.datetime(2024, 5, 1, 13, 30),  # noqa: DTZ001
         dt.time(8, 15), True, None, " y "],
        # Excel keeps no time zone: its moments are naive.
        ["b", 1.0, -0.0, 0.0, dt.datetime(2024, 5, 1), None, None, False, "", "=1+2"],  # noqa: DTZ001
    )  # fmt: skip
    assert parse_workbook(data, "m.xlsx", ExcelLimits()) == {
        "a": {
            "int": 3, "float": 2.5, "zero": 0, "day": "2024-05-01T00:00:00",
            "moment": "2024-05-01T13:30:00", "clock": "08:15:00", "flag": True, "none": None,
            "text": " y ",
        },
        "b": {
            "int": 1, "float": 0, "zero": 0, "day": "2024-05-01T00:00:00", "moment": None,
            "clock": None, "flag": False, "none": None, "text": None,  # a formula, no value
        },
    }  # fmt: skip
    meta = parse_workbook(data, "m.xlsx", ExcelLimits())
    assert type(meta["a"]["int"]) is int and type(meta["b"]["int"]) is int


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


def inflating(data: bytes, part: str, extra_bytes: int) -> bytes:
    """`data` with `part` followed by `extra_bytes` of whitespace (legal after an XML root):
    a small file whose sheet inflates to many times its size."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            if info.filename != part:
                target.writestr(info, source.read(info))
                continue
            with target.open(part, "w") as sink:
                sink.write(source.read(info))
                chunk = b" " * (1 << 20)
                for _ in range(extra_bytes >> 20):
                    sink.write(chunk)
    return buffer.getvalue()


def test_a_workbook_that_inflates_past_the_limit_is_refused_from_its_zip_headers() -> None:
    data = inflating(workbook(["file", "k"], ["a", 1]), "xl/worksheets/sheet1.xml", 300 << 20)
    assert len(data) < ExcelLimits().max_bytes  # small as stored: only its parts are large

    began = time.perf_counter()
    with pytest.raises(MetadataTooLargeError, match=r"m\.xlsx: the workbook unpacks to 314,"):
        parse_workbook(data, "m.xlsx", ExcelLimits())
    assert time.perf_counter() - began < 1.0  # refused before anything was inflated

    with pytest.raises(MetadataTooLargeError, match="parts, over the 2 limit"):
        parse_workbook(workbook(["file", "k"], ["a", 1]), "m.xlsx", ExcelLimits(max_entries=2))
