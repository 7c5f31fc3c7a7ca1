"""Import the customer archive from a CSV or Excel (.xlsx) file.

Headers may be Chinese or English (``卡号`` or ``card_no``). Every row is checked in full before
anything is written: a bad row is rejected as a whole and reported with its row number as the
user sees it in the file (the header is row 1), the column and the reason; good rows go in. Rows
are upserted by card number, so importing the same file twice changes nothing. Files are read as
a stream and written in chunks, so a file of 100,000 rows needs little memory.

A cell holding a control character (a line break, NUL) rejects its row. A row the file itself
cannot give (a CSV cell over the csv module's 128 kB, an .xlsx sheet that breaks off part-way)
is reported as that row's error; the rows before it go in.

Which columns the file has matters on update: a column that is absent leaves that field as it
is; a present but empty cell clears it. Two exceptions: an empty consent cell keeps what the
customer said before (new customers consent by default), and each phone column replaces only
the numbers of its own kind (mobile, home, work).
"""

from __future__ import annotations

import codecs
import csv
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl
from openpyxl.utils.exceptions import InvalidFileException
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from crm_bridge.customers.import_rows import (
    LABELS,
    PHONE_COLUMNS,
    Columns,
    ImportRow,
    RowError,
    parse_row,
)
from crm_bridge.db.models import Customer, CustomerPhone, utcnow

CHUNK_ROWS = 500
"""Rows written per transaction."""
HEADER_SEARCH_ROWS = 10
"""The header may sit below a title row or two; it is looked for in this many first rows."""
MAX_LISTED_ERRORS = 200
MAX_XLSX_UNPACKED_BYTES = 256 * 1024 * 1024
"""An .xlsx is a zip: what it unpacks to is capped, so a small file cannot make the import
parse gigabytes (100,000 rows of every column take some 80 MB unpacked)."""
WHOLE_ROW = "整行 (row)"
"""The column named by an error about a row the file itself could not give (no cells)."""

# field -> accepted headers (compared after _header_key)
HEADERS: dict[str, tuple[str, ...]] = {
    "card_no": ("卡号", "会员卡号", "客户卡号", "card_no", "card", "card_number"),
    "name": ("姓名", "客户姓名", "名字", "name"),
    "gender": ("性别", "gender", "sex"),
    "mobile": ("手机", "手机号", "手机号码", "移动电话", "mobile", "mobile_phone", "cell"),
    "home_phone": ("电话", "家庭电话", "住宅电话", "固定电话", "phone", "home_phone", "tel"),
    "work_phone": ("单位电话", "办公电话", "工作电话", "work_phone", "office_phone"),
    "birthday": ("生日", "出生日期", "birthday", "birth_date", "date_of_birth"),
    "lunar": ("农历生日", "农历", "是否农历", "lunar", "lunar_birthday"),
    "employer": ("工作单位", "单位", "公司", "employer", "company"),
    "department": ("部门", "科室", "department", "dept"),
    "vip_level": ("会员等级", "vip等级", "等级", "vip_level", "vip", "level"),
    "tags": ("标签", "tags", "tag"),
    "consent": ("同意回访", "接受电话", "接受回访", "consent", "consent_to_calls"),
    "timezone": ("时区", "timezone", "time_zone"),
}

_EXCEL_TEXT = re.compile(r'^="(.*)"$')


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (nothing was written)."""


@dataclass(frozen=True, slots=True)
class _DamagedRow:
    """In place of a row's cells: the reader could not read this row (a CSV cell over the
    csv module's limit, an .xlsx whose sheet breaks off here). Reported as the row's error."""

    reason_zh: str
    reason_en: str


_FileRow = tuple[int, tuple[Any, ...] | _DamagedRow]
"""A row number as the user sees it in the file, and the row's cells."""
_BROKEN_OFF = _DamagedRow(
    "文件从此行起损坏，其后的行未读取",
    "the file is damaged from this row on; the rows after it were not read",
)


@dataclass(slots=True)
class ImportReport:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Data rows read (blank rows aside)."""
        return self.inserted + self.updated + self.unchanged + self.rejected


def import_customers(
    session_factory: sessionmaker[Session],
    path: str | Path,
    region: str = "CN",
    outside_line_prefix: str | None = None,
) -> ImportReport:
    """Import ``path`` (.csv, .xlsx) into the archive and report what happened row by row.

    Raises :class:`ImportFileError` when the file cannot be read or has no usable header.
    """
    path = Path(path)
    rows = _read_rows(path)
    report = ImportReport()
    columns = _find_header(rows, report)
    first_seen: dict[str, int] = {}
    batch: list[ImportRow] = []
    for row_number, cells in rows:
        if isinstance(cells, _DamagedRow):
            report.rejected += 1
            report.errors.append(
                RowError(row_number, "row", WHOLE_ROW, cells.reason_zh, cells.reason_en)
            )
            continue
        values = [_text(cell) for cell in cells]
        if not any(values):
            continue
        parsed = parse_row(row_number, values, columns, region, outside_line_prefix, first_seen)
        if isinstance(parsed, ImportRow):
            batch.append(parsed)
        else:
            report.rejected += 1
            report.errors.extend(parsed)
        if len(batch) >= CHUNK_ROWS:
            _write(session_factory, batch, columns, report)
            batch = []
    _write(session_factory, batch, columns, report)
    return report


def format_report(report: ImportReport, max_errors: int = MAX_LISTED_ERRORS) -> str:
    """The report for people, Chinese first: a summary line, then one line per problem."""
    counts = (report.inserted, report.updated, report.unchanged, report.rejected)
    lines = [
        "导入完成：新增 {}，更新 {}，未变 {}，拒绝 {}".format(*counts)
        + " (inserted {}, updated {}, unchanged {}, rejected {})".format(*counts)
    ]
    if report.ignored_columns:
        ignored = ", ".join(report.ignored_columns)
        lines.append(f"未识别的列已忽略 (ignored columns): {ignored}")
    for error in report.errors[:max_errors]:
        lines.append(f"第 {error.row} 行 {error.column}: {error.reason_zh} ({error.reason_en})")
    hidden = len(report.errors) - max_errors
    if hidden > 0:
        lines.append(f"另有 {hidden} 条错误未列出 ({hidden} more errors not shown)")
    return "\n".join(lines)


# --- reading ---------------------------------------------------------------------------------


def _read_rows(path: Path) -> Iterator[_FileRow]:
    """(row number as the user sees it, cell values) for every row of the file."""
    if not path.is_file():
        raise ImportFileError(f"找不到文件 (no such file): {path}")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        return _csv_rows(path, _detect_encoding(path))
    if suffix in (".xlsx", ".xlsm"):
        return _xlsx_rows(path)
    raise ImportFileError(
        f"不支持的文件类型 {suffix or '(无)'}，请另存为 .xlsx 或 .csv "
        f"(unsupported file type {suffix or '(none)'}: save it as .xlsx or .csv)"
    )


def _detect_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM) when the whole file decodes as such, else GB18030.

    Checked over the whole file before anything is imported, in chunks, so a file that is
    neither is refused before a single row is written.
    """
    for encoding, answer in (("utf-8", "utf-8-sig"), ("gb18030", "gb18030")):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            with path.open("rb") as stream:
                while chunk := stream.read(1 << 20):
                    decoder.decode(chunk)
                decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        return answer
    raise ImportFileError("无法识别文件编码 (the file is neither UTF-8 nor GB18030 text)")


def _csv_rows(path: Path, encoding: str) -> Iterator[_FileRow]:
    """The records of a CSV file; a record the csv module refuses (a cell over its 128 kB
    limit) is reported as damaged and reading goes on with the next line."""
    with path.open(encoding=encoding, newline="") as stream:
        first_line = stream.readline()
        stream.seek(0)
        delimiter = max((",", "\t", ";"), key=first_line.count)
        reader = csv.reader(stream, delimiter=delimiter)
        number = 0
        while True:
            number += 1
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield number, _DamagedRow("无法读取该行（单元格过大？）", f"unreadable row: {exc}")
                continue
            yield number, tuple(record)


def _check_unpacked_size(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError):
        raise ImportFileError("不是有效的 Excel 文件 (not a valid .xlsx file)") from None
    if unpacked > MAX_XLSX_UNPACKED_BYTES:
        limit = MAX_XLSX_UNPACKED_BYTES // (1024 * 1024)
        raise ImportFileError(
            f"Excel 文件解压后超过 {limit} MB，已拒绝 "
            f"(the .xlsx unpacks to over {limit} MB: refused)"
        )


def _xlsx_rows(path: Path) -> Iterator[_FileRow]:
    """The rows of the active sheet. A sheet that breaks off part-way (bad XML, a member
    that fails its checksum) ends with a damaged row: the rows before it are imported."""
    _check_unpacked_size(path)
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, SyntaxError):
        raise ImportFileError("不是有效的 Excel 文件 (not a valid .xlsx file)") from None
    sheet = workbook.active
    if sheet is None:
        workbook.close()
        raise ImportFileError("Excel 文件里没有工作表 (the .xlsx has no worksheet)")
    number = 0
    try:
        sheet.reset_dimensions()  # files from other programs may declare wrong dimensions
        for number, cells in enumerate(sheet.iter_rows(min_row=1, values_only=True), start=1):
            yield number, cells
    except (SyntaxError, zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError, ValueError):
        # SyntaxError: the XML parsers' ParseError (xml.etree and lxml alike)
        yield number + 1, _BROKEN_OFF
    finally:
        workbook.close()


def _header_key(text: str) -> str:
    return re.sub(r"[\s\-]+", "_", text.replace("\ufeff", "").strip().lower())


_FIELD_BY_HEADER = {
    _header_key(alias): name for name, aliases in HEADERS.items() for alias in aliases
}


def _find_header(rows: Iterator[_FileRow], report: ImportReport) -> Columns:
    for number, cells in rows:
        if isinstance(cells, _DamagedRow):
            raise ImportFileError(f"第 {number} 行: {cells.reason_zh} ({cells.reason_en})")
        headers = [_text(cell) for cell in cells]
        fields = [_FIELD_BY_HEADER.get(_header_key(header)) for header in headers]
        if "card_no" in fields and "name" in fields:
            return _columns(headers, fields, report)
        if number >= HEADER_SEARCH_ROWS:
            break
    raise ImportFileError(
        f"前 {HEADER_SEARCH_ROWS} 行里没有表头：需要 卡号 和 姓名 两列 "
        f"(no header row with card_no and name columns in the first {HEADER_SEARCH_ROWS} rows)"
    )


def _columns(headers: list[str], fields: list[str | None], report: ImportReport) -> Columns:
    columns = Columns(index={}, header={})
    for position, (header, name) in enumerate(zip(headers, fields, strict=True)):
        if name is None:
            if header:
                report.ignored_columns.append(header)
            continue
        if name in columns.index:
            raise ImportFileError(
                f"两列都表示{LABELS[name]}: {columns.header[name]} / {header} "
                f"(two columns for {name})"
            )
        columns.index[name] = position
        columns.header[name] = header
    return columns


def _text(value: Any) -> str:
    """A cell as text: integral floats lose their '.0', dates become ISO dates."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    excel_text = _EXCEL_TEXT.match(text)
    return excel_text.group(1).strip() if excel_text else text


# --- writing ---------------------------------------------------------------------------------


def _write(
    session_factory: sessionmaker[Session],
    batch: list[ImportRow],
    columns: Columns,
    report: ImportReport,
) -> None:
    """Upsert one chunk in one transaction; counts are added once it is committed."""
    if not batch:
        return
    kinds = {kind for name, kind in PHONE_COLUMNS.items() if name in columns.index}
    updated = unchanged = 0
    with session_factory.begin() as session:
        existing = {
            customer.card_no: customer
            for customer in session.scalars(
                select(Customer)
                .where(Customer.card_no.in_([row.card_no for row in batch]))
                .options(selectinload(Customer.phones))
            )
        }
        new_rows = [row for row in batch if row.card_no not in existing]
        for row in batch:
            customer = existing.get(row.card_no)
            if customer is None:
                continue
            if _update(customer, row, kinds):
                customer.updated_at = utcnow()
                updated += 1
            else:
                unchanged += 1
        session.flush()
        _insert(session, new_rows)
    report.inserted += len(new_rows)
    report.updated += updated
    report.unchanged += unchanged


def _insert(session: Session, rows: list[ImportRow]) -> None:
    """Bulk INSERT of new customers and their numbers (far faster than one object each)."""
    if not rows:
        return
    ids = session.scalars(
        insert(Customer).returning(Customer.id, sort_by_parameter_order=True),
        [
            {
                **row.values,
                "card_no": row.card_no,
                "consent_to_calls": True if row.consent is None else row.consent,
            }
            for row in rows
        ],
    ).all()
    phones = [
        {"customer_id": customer_id, "number_e164": e164, "kind": kind}
        for customer_id, row in zip(ids, rows, strict=True)
        for e164, kind in row.phones.items()
    ]
    if phones:
        session.execute(insert(CustomerPhone), phones)


def _update(customer: Customer, row: ImportRow, kinds: set[str]) -> bool:
    """Apply the row to ``customer``; True when anything changed."""
    changed = False
    for name, value in row.values.items():
        if getattr(customer, name) != value:
            setattr(customer, name, value)
            changed = True
    if row.consent is not None and customer.consent_to_calls != row.consent:
        customer.consent_to_calls = row.consent
        changed = True
    return _sync_phones(customer, row.phones, kinds) or changed


def _sync_phones(customer: Customer, wanted: dict[str, str], kinds: set[str]) -> bool:
    """Make the customer's numbers of the file's kinds those of the row; keep the others."""
    changed = False
    wanted = dict(wanted)
    for phone in list(customer.phones):
        kind = wanted.pop(phone.number_e164, None)
        if kind is not None:
            if phone.kind != kind and phone.kind in kinds:
                phone.kind = kind
                changed = True
        elif phone.kind in kinds:
            customer.phones.remove(phone)
            changed = True
    for e164, kind in wanted.items():
        customer.phones.append(CustomerPhone(number_e164=e164, kind=kind))
        changed = True
    return changed
