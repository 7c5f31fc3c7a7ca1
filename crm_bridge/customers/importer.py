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
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import openpyxl
from openpyxl.utils.exceptions import InvalidFileException
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from crm_bridge.customers.numbers import PhoneKind, normalize_phone
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
LABELS = {
    "card_no": "卡号",
    "name": "姓名",
    "gender": "性别",
    "mobile": "手机",
    "home_phone": "电话",
    "work_phone": "单位电话",
    "birthday": "生日",
    "lunar": "农历生日",
    "employer": "工作单位",
    "department": "部门",
    "vip_level": "会员等级",
    "tags": "标签",
    "consent": "同意回访",
    "timezone": "时区",
}
PHONE_COLUMNS = {"mobile": "mobile", "home_phone": "home", "work_phone": "work"}
MAX_LENGTHS = {
    "card_no": 32,
    "name": 64,
    "employer": 128,
    "department": 64,
    "vip_level": 16,
    "timezone": 64,
}
TEXT_FIELDS = ("employer", "department", "vip_level")

_GENDERS = {"男": "M", "m": "M", "male": "M", "女": "F", "f": "F", "female": "F"}
_YES = {"是", "对", "有", "√", "✓", "同意", "接受", "y", "yes", "true", "1"}
_NO = {"否", "不", "无", "×", "✗", "不同意", "拒绝", "n", "no", "false", "0"}
_LIST_SEPARATORS = re.compile(r"[,，;；、]")
_PHONE_SEPARATORS = re.compile(r"[,，;；、/]")
_EXCEL_TEXT = re.compile(r'^="(.*)"$')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TIME_SUFFIX = re.compile(r"[ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$")
_FULL_DATES = (
    re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$"),
    re.compile(r"^(\d{4})(\d{2})(\d{2})$"),
    re.compile(r"^(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日?$"),
)
_MONTH_DAYS = (
    re.compile(r"^(\d{1,2})[-/.](\d{1,2})$"),
    re.compile(r"^(\d{1,2})\s*月\s*(\d{1,2})\s*日?$"),
)


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


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem of one rejected row; ``column`` is the header as written in the file."""

    row: int
    field: str
    column: str
    reason_zh: str
    reason_en: str


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


@dataclass(slots=True)
class _Columns:
    """Where each known field sits in the file, and what the file calls it."""

    index: dict[str, int]
    header: dict[str, str]

    def label(self, name: str) -> str:
        return self.header.get(name, LABELS[name])


@dataclass(slots=True)
class _Row:
    """A row that passed every check, ready to be written."""

    row: int
    card_no: str
    values: dict[str, Any]
    consent: bool | None
    phones: dict[str, str]  # E.164 -> kind, in file order


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
    batch: list[_Row] = []
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
        parsed = _parse_row(row_number, values, columns, region, outside_line_prefix, first_seen)
        if isinstance(parsed, _Row):
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


def _find_header(rows: Iterator[_FileRow], report: ImportReport) -> _Columns:
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


def _columns(headers: list[str], fields: list[str | None], report: ImportReport) -> _Columns:
    columns = _Columns(index={}, header={})
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


# --- checking --------------------------------------------------------------------------------


class _Problems:
    """Collects the problems of one row."""

    def __init__(self, row: int, columns: _Columns) -> None:
        self.row = row
        self.columns = columns
        self.errors: list[RowError] = []

    def add(self, name: str, reason_zh: str, reason_en: str) -> None:
        self.errors.append(RowError(self.row, name, self.columns.label(name), reason_zh, reason_en))


def _parse_row(
    row: int,
    values: list[str],
    columns: _Columns,
    region: str,
    outside_line_prefix: str | None,
    first_seen: dict[str, int],
) -> _Row | list[RowError]:
    def cell(name: str) -> str:
        position = columns.index.get(name)
        return values[position] if position is not None and position < len(values) else ""

    problems = _Problems(row, columns)
    for name in columns.index:
        if _CONTROL.search(cell(name)):
            problems.add(
                name,
                "含有控制字符（换行、NUL 等）",
                "contains a control character (line break, NUL...)",
            )
    card_no = _check_card_no(cell("card_no"), row, first_seen, problems)
    record: dict[str, Any] = {"name": cell("name")}
    if not record["name"]:
        problems.add("name", "缺少姓名", "missing name")
    if "gender" in columns.index:
        record["gender"] = _check_gender(cell("gender"), problems)
    for name in TEXT_FIELDS:
        if name in columns.index:
            record[name] = cell(name) or None
    if "tags" in columns.index:
        record["tags"] = _split_tags(cell("tags"))
    if "timezone" in columns.index:
        record["timezone"] = _check_timezone(cell("timezone"), problems)
    if "birthday" in columns.index:
        lunar = _check_yes_no("lunar", cell("lunar"), False, problems)
        record.update(_check_birthday(cell("birthday"), lunar, problems))
    for name in MAX_LENGTHS:
        value = card_no if name == "card_no" else record.get(name)
        if value and len(value) > MAX_LENGTHS[name]:
            problems.add(
                name,
                f"太长，最多 {MAX_LENGTHS[name]} 个字符",
                f"too long, at most {MAX_LENGTHS[name]} characters",
            )
    consent = _check_yes_no("consent", cell("consent"), None, problems)
    phones = _check_phones(cell, columns, region, outside_line_prefix, problems)
    if problems.errors:
        return problems.errors
    return _Row(row, card_no, record, consent, phones)


def _check_card_no(card_no: str, row: int, first_seen: dict[str, int], problems: _Problems) -> str:
    if not card_no:
        problems.add("card_no", "缺少卡号", "missing card no.")
    elif card_no in first_seen:
        first = first_seen[card_no]
        problems.add(
            "card_no", f"卡号重复，与第 {first} 行相同", f"duplicate card no., as row {first}"
        )
    else:
        first_seen[card_no] = row
    return card_no


def _check_gender(value: str, problems: _Problems) -> str | None:
    if not value:
        return None
    gender = _GENDERS.get(value.lower())
    if gender is None:
        problems.add("gender", "性别无法识别（应为 男/女）", "unknown gender (expected 男/女, M/F)")
    return gender


def _check_yes_no(name: str, value: str, default: bool | None, problems: _Problems) -> bool | None:
    if not value:
        return default
    if value.lower() in _YES:
        return True
    if value.lower() in _NO:
        return False
    problems.add(name, "应为 是/否", "expected yes/no (是/否, 1/0)")
    return default


def _check_timezone(value: str, problems: _Problems) -> str | None:
    if not value:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        problems.add("timezone", "时区无法识别", "unknown time zone (e.g. Asia/Shanghai)")
        return None
    return value


def _check_birthday(value: str, lunar: bool | None, problems: _Problems) -> dict[str, Any]:
    """The birthday columns: a solar date, or a lunar month and day when ``lunar``."""
    solar: dict[str, Any] = {
        "birthday": None,
        "lunar_birthday": False,
        "lunar_birth_month": None,
        "lunar_birth_day": None,
    }
    if not value:
        return solar
    parts = _date_parts(value)
    if lunar:
        if parts is None or not (1 <= parts[1] <= 12 and 1 <= parts[2] <= 30):
            problems.add("birthday", "农历日期无效", "bad lunar date (month 1-12, day 1-30)")
            return solar
        return {
            **solar,
            "lunar_birthday": True,
            "lunar_birth_month": parts[1],
            "lunar_birth_day": parts[2],
        }
    birthday = _solar_date(parts)
    if birthday is None:
        problems.add("birthday", "日期无效", "bad date (e.g. 1990-01-31, 1990年1月31日)")
    return {**solar, "birthday": birthday}


def _date_parts(value: str) -> tuple[int | None, int, int] | None:
    text = _TIME_SUFFIX.sub("", value.strip())
    for pattern in _FULL_DATES:
        match = pattern.match(text)
        if match:
            year, month, day = (int(part) for part in match.groups())
            return year, month, day
    for pattern in _MONTH_DAYS:
        match = pattern.match(text)
        if match:
            month, day = (int(part) for part in match.groups())
            return None, month, day
    return None


def _solar_date(parts: tuple[int | None, int, int] | None) -> date | None:
    if parts is None or parts[0] is None:
        return None
    try:
        birthday = date(parts[0], parts[1], parts[2])
    except ValueError:
        return None
    return birthday if date(1900, 1, 1) <= birthday <= date.today() else None


def _split_tags(value: str) -> list[str]:
    tags = (tag.strip() for tag in _LIST_SEPARATORS.split(value))
    return list(dict.fromkeys(tag for tag in tags if tag))


def _check_phones(
    cell: Any,
    columns: _Columns,
    region: str,
    outside_line_prefix: str | None,
    problems: _Problems,
) -> dict[str, str]:
    phones: dict[str, str] = {}
    for name, kind in PHONE_COLUMNS.items():
        if name not in columns.index:
            continue
        for raw in _PHONE_SEPARATORS.split(cell(name)):
            if not raw.strip():
                continue
            number = normalize_phone(raw, region, outside_line_prefix)
            if number.kind is PhoneKind.E164:
                phones.setdefault(number.value, kind)
            elif number.kind is PhoneKind.INTERNAL:
                problems.add(name, "号码无效", "invalid phone: an extension, not an outside number")
            else:
                reason = number.reason.value if number.reason else "not a phone number"
                problems.add(name, "号码无效", f"invalid phone: {reason}")
    return phones


# --- writing ---------------------------------------------------------------------------------


def _write(
    session_factory: sessionmaker[Session],
    batch: list[_Row],
    columns: _Columns,
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


def _insert(session: Session, rows: list[_Row]) -> None:
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


def _update(customer: Customer, row: _Row, kinds: set[str]) -> bool:
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
