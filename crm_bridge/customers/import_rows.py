"""One row of a customer file, checked: the columns the importer knows (zh-CN or English
headers), and the rules of each field (card no. once per file, gender, yes/no, time zone,
birthday solar or lunar, tags, phone numbers). A refused field is a :class:`RowError` naming
the row, the column and why; the row is then skipped, the others imported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crm_bridge.customers.numbers import PhoneKind, normalize_phone

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


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem of one rejected row; ``column`` is the header as written in the file."""

    row: int
    field: str
    column: str
    reason_zh: str
    reason_en: str


@dataclass(slots=True)
class Columns:
    """Where each known field sits in the file, and what the file calls it."""

    index: dict[str, int]
    header: dict[str, str]

    def label(self, name: str) -> str:
        return self.header.get(name, LABELS[name])


@dataclass(slots=True)
class ImportRow:
    """A row that passed every check, ready to be written."""

    row: int
    card_no: str
    values: dict[str, Any]
    consent: bool | None
    phones: dict[str, str]  # E.164 -> kind, in file order


class _Problems:
    """Collects the problems of one row."""

    def __init__(self, row: int, columns: Columns) -> None:
        self.row = row
        self.columns = columns
        self.errors: list[RowError] = []

    def add(self, name: str, reason_zh: str, reason_en: str) -> None:
        self.errors.append(RowError(self.row, name, self.columns.label(name), reason_zh, reason_en))


def parse_row(
    row: int,
    values: list[str],
    columns: Columns,
    region: str,
    outside_line_prefix: str | None,
    first_seen: dict[str, int],
) -> ImportRow | list[RowError]:
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
    return ImportRow(row, card_no, record, consent, phones)


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
    columns: Columns,
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
