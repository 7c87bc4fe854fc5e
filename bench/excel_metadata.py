"""Reading Excel metadata: a 10,000 x 50 sheet through the upload's `parse_workbook`
(python-calamine) against openpyxl reading the same bytes as the upload did before (read-only,
cached values, every row's values).

The workbook is written once with openpyxl: file names, ints, floats, text and dates. Each
reader parses it `--rounds` times (default 3), alternating; value = the best parse in seconds,
baseline = openpyxl's best, ratio = value / baseline (lower is faster). Both readers' results
are compared cell by cell first, so the speed is not bought with different meta.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time as clock
from datetime import date, datetime, time, timedelta
from typing import Any

from openpyxl import Workbook, load_workbook

from runmesh.upload.strategies.metadata.excel import ExcelLimits, parse_workbook

ROWS, COLUMNS = 10_000, 50
LIMITS = ExcelLimits(max_rows=ROWS, max_columns=COLUMNS + 1)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build() -> bytes:
    book = Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(["file", *[f"k{column}" for column in range(COLUMNS)]])
    day = date(2024, 1, 1)
    for row in range(ROWS):
        values: list[Any] = []
        for column in range(COLUMNS):
            kind = column % 5
            if kind == 0:
                values.append(row * column)
            elif kind == 1:
                values.append(row / 7 + column)
            elif kind == 2:
                values.append(f"text {row} {column}")
            elif kind == 3:
                values.append(day + timedelta(days=row % 365))
            else:
                values.append(row % 2 == 0)
        sheet.append([f"img_{row:05d}.jpg", *values])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def as_json(value: Any) -> Any:
    """What the upload stored of a cell's value (dates and times as ISO text)."""
    return value.isoformat() if isinstance(value, datetime | date | time) else value


def with_openpyxl(data: bytes) -> dict[str, dict[str, Any]]:
    """The upload's reading before python-calamine, without its checks."""
    workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        keys = [str(key) for key in next(rows)[1:]]
        return {
            str(row[0]).rsplit(".", 1)[0]: {
                key: as_json(row[index + 1]) for index, key in enumerate(keys)
            }
            for row in rows
        }
    finally:
        workbook.close()


def main(rounds: int) -> None:
    data = build()
    log(f"workbook: {ROWS:,} rows x {COLUMNS} columns, {len(data):,} bytes")
    if parse_workbook(data, "bench.xlsx", LIMITS) != with_openpyxl(data):
        raise SystemExit("the two readers gave different meta")
    times: dict[str, list[float]] = {"calamine": [], "openpyxl": []}
    for _ in range(rounds):
        began = clock.perf_counter()
        parse_workbook(data, "bench.xlsx", LIMITS)
        times["calamine"].append(clock.perf_counter() - began)
        began = clock.perf_counter()
        with_openpyxl(data)
        times["openpyxl"].append(clock.perf_counter() - began)
    value, baseline = min(times["calamine"]), min(times["openpyxl"])
    log(f"calamine {value:.3f} s, openpyxl {baseline:.3f} s (best of {rounds})")
    print(
        json.dumps(
            {
                "bench": "excel_metadata",
                "value": round(value, 4),
                "unit": "s",
                "baseline": round(baseline, 4),
                "ratio": round(value / baseline, 4),
                "speedup": round(baseline / value, 1),
                "rows": ROWS,
                "columns": COLUMNS,
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="parses per reader")
    main(parser.parse_args().rounds)
