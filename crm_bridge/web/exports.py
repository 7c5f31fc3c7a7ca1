"""Tables to Excel (openpyxl) and CSV files.

CSV is UTF-8 with a byte-order mark, which is what makes Excel on a Chinese Windows read the
characters right. A text cell that a spreadsheet would take for a formula (starting with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is prefixed with a quote, in both
formats, so that a queue or campaign name cannot run code on the reader's machine. Control
characters that an .xlsx file cannot hold (NUL, ESC and the like, which a caller name from the
telephone network may carry) are written as U+FFFD there, instead of failing the export.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

Cell = str | int | float | None
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
"""The media type of an .xlsx download."""


def _safe(cell: Cell) -> Cell:
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def to_csv(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([_safe(h) for h in headers])
    writer.writerows([["" if c is None else _safe(c) for c in row] for row in rows])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _xlsx_safe(cell: Cell) -> Cell:
    cell = _safe(cell)
    return ILLEGAL_CHARACTERS_RE.sub("\ufffd", cell) if isinstance(cell, str) else cell


def to_xlsx(title: str, headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = title[:31]
    sheet.append([_xlsx_safe(h) for h in headers])
    for row in rows:
        sheet.append([_xlsx_safe(c) for c in row])
    sheet.freeze_panes = "A2"
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
