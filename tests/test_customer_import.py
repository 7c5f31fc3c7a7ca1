"""Customer import from real CSV and .xlsx files: good rows in, bad rows reported, idempotent."""

from __future__ import annotations

import csv
from datetime import date, datetime
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa

from crm_bridge.customers import importer as customer_import
from crm_bridge.customers.importer import (
    ImportFileError,
    ImportReport,
    format_report,
    import_customers,
)
from crm_bridge.customers.numbers import normalize_phone
from crm_bridge.db.models import Customer, find_customers_by_phone

COLUMNS = {
    "card": "卡号",
    "name": "姓名",
    "gender": "性别",
    "mobile": "手机",
    "home": "家庭电话",
    "work": "办公电话",
    "birthday": "生日",
    "lunar": "农历生日",
    "employer": "工作单位",
    "department": "部门",
    "vip": "会员等级",
    "tags": "标签",
    "consent": "同意回访",
    "timezone": "时区",
}
CHINESE_HEADER = list(COLUMNS.values())


POSITION = {key: position for position, key in enumerate(COLUMNS)}


def row(**cells: str) -> list[str]:
    """A data row under CHINESE_HEADER; cells not named are empty."""
    assert set(cells) <= set(COLUMNS)
    return [cells.get(key, "") for key in COLUMNS]


GOOD_ROWS = [
    row(  # row 2
        card="C10001",
        name="张三",
        gender="男",
        mobile="13800138000",
        home="010-12345678",
        birthday="1985-03-08",
        lunar="否",
        employer="市第一人民医院",
        department="财务科",
        vip="金卡",
        tags="高血压，老客户;回访",
        consent="是",
    ),
    row(  # row 3: a lunar birthday (the 30th of the 2nd month exists in the lunar calendar)
        card="C10002",
        name="李四",
        gender="男",
        mobile="139 0000 0001",
        work="(0755)12345678",
        birthday="1960/2/30",
        lunar="是",
        vip="普通",
        timezone="Asia/Shanghai",
    ),
    row(  # row 4: no phone at all, a Chinese date, does not want calls
        card="C10003",
        name="王芳",
        gender="女",
        birthday="1990年1月31日",
        employer="华为",
        department="研发部",
        vip="钻石",
        consent="否",
    ),
    row(  # row 5: a compact date, two mobiles in one cell, a customer in the US
        card="C10004",
        name="Wang Lei",
        gender="M",
        mobile="+1 650 253 0000、0086 137 0013 7000",
        birthday="20000229",
        vip="银卡",
        tags="VIP",
        consent="1",
        timezone="America/Los_Angeles",
    ),
]


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8-sig", **kwargs) -> Path:
    with path.open("w", encoding=encoding, newline="") as stream:
        csv.writer(stream, **kwargs).writerows(rows)
    return path


def write_xlsx(path: Path, rows: list[list[object]]) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path


def customers(sessions) -> dict[str, Customer]:
    with sessions() as session:
        found = session.scalars(sa.select(Customer).options(sa.orm.selectinload(Customer.phones)))
        return {customer.card_no: customer for customer in found}


def phones_of(customer: Customer) -> list[tuple[str, str]]:
    return [(phone.number_e164, phone.kind) for phone in customer.phones]


def test_chinese_headers_import_every_field(tmp_path, db_sessions):
    report = import_customers(
        db_sessions, write_csv(tmp_path / "客户.csv", [CHINESE_HEADER, *GOOD_ROWS])
    )
    assert (report.inserted, report.updated, report.unchanged, report.rejected) == (4, 0, 0, 0)
    assert report.errors == []
    stored = customers(db_sessions)
    zhang = stored["C10001"]
    assert (zhang.name, zhang.gender, zhang.birthday, zhang.lunar_birthday) == (
        "张三",
        "M",
        date(1985, 3, 8),
        False,
    )
    assert (zhang.employer, zhang.department, zhang.vip_level) == (
        "市第一人民医院",
        "财务科",
        "金卡",
    )
    assert zhang.tags == ["高血压", "老客户", "回访"]
    assert zhang.consent_to_calls is True
    assert zhang.timezone is None
    assert phones_of(zhang) == [("+8613800138000", "mobile"), ("+861012345678", "home")]

    li = stored["C10002"]
    assert (li.birthday, li.lunar_birthday, li.lunar_birth_month, li.lunar_birth_day) == (
        None,
        True,
        2,
        30,
    )
    assert phones_of(li) == [("+8613900000001", "mobile"), ("+8675512345678", "work")]
    assert li.timezone == "Asia/Shanghai"

    wang = stored["C10003"]
    assert (wang.gender, wang.birthday, wang.consent_to_calls, wang.phones) == (
        "F",
        date(1990, 1, 31),
        False,
        [],
    )

    us = stored["C10004"]
    assert us.birthday == date(2000, 2, 29)
    assert phones_of(us) == [("+16502530000", "mobile"), ("+8613700137000", "mobile")]
    assert us.timezone == "America/Los_Angeles"


BAD_ROWS = [
    ["卡号", "姓名", "性别", "手机", "生日", "农历生日", "同意回访", "时区"],
    ["C1", "好人", "男", "13800138000", "1980-01-01", "", "", ""],  # row 2: fine
    ["C2", "坏手机", "女", "12345678", "", "", "", ""],  # row 3: no area code
    ["C3", "坏日期", "女", "13800138003", "1990-02-30", "", "", ""],  # row 4: no such day
    ["C1", "重复卡号", "男", "13800138004", "", "", "", ""],  # row 5: card no. of row 2
    ["", "没有卡号", "男", "13800138005", "", "", "", ""],  # row 6
    ["C6", "", "男", "13800138006", "", "", "", ""],  # row 7: no name
    ["C7", "性别不明", "未知", "13800138007", "", "", "", ""],  # row 8
    ["C8", "分机号", "男", "1001", "", "", "", ""],  # row 9: an extension is no customer phone
    ["C9", "农历坏", "男", "", "13/1", "是", "", ""],  # row 10: lunar month 13
    ["C10", "同意不明", "男", "", "", "", "也许", ""],  # row 11
    ["C11", "时区不明", "男", "", "", "", "", "Mars/Base"],  # row 12
    ["C12", "将来生日", "男", "", "2999-01-01", "", "", ""],  # row 13
    ["C13", "多个错误", "X", "abc", "昨天", "", "", ""],  # row 14: three problems, one row
    [],  # row 15: blank, skipped
    ["C15", "最后一个好人", "女", "0086 13800138015", "1970.12.31", "", "", ""],  # row 16: fine
]


def test_every_bad_row_is_reported_and_good_rows_go_in(tmp_path, sqlite_sessions):
    report = import_customers(sqlite_sessions, write_csv(tmp_path / "bad.csv", BAD_ROWS))
    problems = [(e.row, e.column, e.field) for e in report.errors]
    assert problems == [
        (3, "手机", "mobile"),
        (4, "生日", "birthday"),
        (5, "卡号", "card_no"),
        (6, "卡号", "card_no"),
        (7, "姓名", "name"),
        (8, "性别", "gender"),
        (9, "手机", "mobile"),
        (10, "生日", "birthday"),
        (11, "同意回访", "consent"),
        (12, "时区", "timezone"),
        (13, "生日", "birthday"),
        (14, "性别", "gender"),
        (14, "生日", "birthday"),
        (14, "手机", "mobile"),
    ]
    reasons = {e.row: e.reason_en for e in report.errors}
    assert reasons[3] == "invalid phone: no area code"
    assert reasons[5] == "duplicate card no., as row 2"
    assert reasons[6] == "missing card no."
    assert reasons[7] == "missing name"
    assert reasons[8].startswith("unknown gender")
    assert reasons[9].startswith("invalid phone: an extension")
    assert (report.inserted, report.rejected) == (2, 12)
    assert sorted(customers(sqlite_sessions)) == ["C1", "C15"]
    assert customers(sqlite_sessions)["C1"].name == "好人"  # the duplicate did not overwrite


def test_values_longer_than_the_archive_holds_are_rejected(tmp_path, sqlite_sessions):
    path = write_csv(
        tmp_path / "long.csv",
        [["卡号", "姓名", "部门"], ["C1", "张" * 65, "内科"], ["C" * 33, "李四", "外" * 65]],
    )
    report = import_customers(sqlite_sessions, path)
    assert [(e.row, e.field) for e in report.errors] == [
        (2, "name"),
        (3, "card_no"),
        (3, "department"),
    ]
    assert report.errors[0].reason_en == "too long, at most 64 characters"
    assert customers(sqlite_sessions) == {}


def test_format_report_is_chinese_first(tmp_path, sqlite_sessions):
    report = import_customers(sqlite_sessions, write_csv(tmp_path / "bad.csv", BAD_ROWS))
    lines = format_report(report).splitlines()
    assert lines[0] == (
        "导入完成：新增 2，更新 0，未变 0，拒绝 12"
        " (inserted 2, updated 0, unchanged 0, rejected 12)"
    )
    assert "第 3 行 手机: 号码无效 (invalid phone: no area code)" in lines
    assert "第 5 行 卡号: 卡号重复，与第 2 行相同 (duplicate card no., as row 2)" in lines
    short = format_report(report, max_errors=2).splitlines()
    assert len(short) == 1 + 2 + 1
    assert short[-1] == "另有 12 条错误未列出 (12 more errors not shown)"


def test_the_same_file_twice_changes_nothing(tmp_path, db_sessions):
    path = write_csv(
        tmp_path / "客户.csv",
        [CHINESE_HEADER, *GOOD_ROWS, row(card="C9")],
    )
    first = import_customers(db_sessions, path)
    before = {
        card: (c.updated_at, phones_of(c), c.tags) for card, c in customers(db_sessions).items()
    }
    second = import_customers(db_sessions, path)
    assert (first.inserted, first.rejected) == (4, 1)
    assert (second.inserted, second.updated, second.unchanged, second.rejected) == (0, 0, 4, 1)
    after = {
        card: (c.updated_at, phones_of(c), c.tags) for card, c in customers(db_sessions).items()
    }
    assert after == before


def test_a_changed_file_updates_only_what_changed(tmp_path, sqlite_sessions):
    import_customers(sqlite_sessions, write_csv(tmp_path / "v1.csv", [CHINESE_HEADER, *GOOD_ROWS]))
    rows = [list(row) for row in GOOD_ROWS]
    rows[0][POSITION["mobile"]] = "13800138999"  # 张三 has a new mobile
    rows[0][POSITION["home"]] = ""  # and the landline turns out to be his office's
    rows[0][POSITION["work"]] = "010 1234 5678"
    rows[2][POSITION["consent"]] = ""  # 王芳's consent cell is empty now: still no calls
    rows[3][POSITION["vip"]] = "金卡"  # Wang Lei moved up
    report = import_customers(
        sqlite_sessions, write_csv(tmp_path / "v2.csv", [CHINESE_HEADER, *rows])
    )
    assert (report.inserted, report.updated, report.unchanged) == (0, 2, 2)
    stored = customers(sqlite_sessions)
    assert phones_of(stored["C10001"]) == [("+861012345678", "work"), ("+8613800138999", "mobile")]
    assert stored["C10003"].consent_to_calls is False
    assert stored["C10004"].vip_level == "金卡"
    assert stored["C10001"].updated_at > stored["C10002"].updated_at


def test_columns_absent_from_the_file_are_left_alone(tmp_path, sqlite_sessions):
    import_customers(
        sqlite_sessions, write_csv(tmp_path / "full.csv", [CHINESE_HEADER, *GOOD_ROWS])
    )
    report = import_customers(
        sqlite_sessions,
        write_csv(
            tmp_path / "mobiles.csv", [["卡号", "姓名", "手机"], ["C10001", "张三", "13800138000"]]
        ),
    )
    assert (report.updated, report.unchanged) == (0, 1)
    zhang = customers(sqlite_sessions)["C10001"]
    assert zhang.vip_level == "金卡"
    assert phones_of(zhang) == [("+8613800138000", "mobile"), ("+861012345678", "home")]


def test_xlsx_with_english_headers_excel_dates_and_numbers(tmp_path, sqlite_sessions):
    path = write_xlsx(
        tmp_path / "customers.xlsx",
        [
            ["Customer list exported 2024-05-01"],  # a title row above the header
            [],
            [
                "card_no",
                "Name",
                "Gender",
                "Mobile",
                "Home Phone",
                "Birthday",
                "Lunar",
                "Employer",
                "Tags",
                "Consent",
            ],
            [
                10086,
                "张三",
                "male",
                13800138000,
                "02112345678",
                datetime(1985, 3, 8),
                "no",
                "ACME",
                "a,b",
                "yes",
            ],
            [None, None, None, None, None, None, None, None, None, None],
            ["C2", "李四", "F", 13900000002.0, None, date(1992, 12, 1), 0, None, None, 0],
            ["C3", "赵六", "M", "13800138000", None, "1990-13-01", None, None, None, None],  # row 7
        ],
    )
    report = import_customers(sqlite_sessions, path)
    assert (report.inserted, report.rejected) == (2, 1)
    assert [(e.row, e.column, e.reason_zh) for e in report.errors] == [(7, "Birthday", "日期无效")]
    stored = customers(sqlite_sessions)
    assert set(stored) == {"10086", "C2"}
    assert stored["10086"].birthday == date(1985, 3, 8)
    assert stored["10086"].tags == ["a", "b"]
    assert phones_of(stored["10086"]) == [("+8613800138000", "mobile"), ("+862112345678", "home")]
    assert (stored["C2"].gender, stored["C2"].consent_to_calls) == ("F", False)
    assert phones_of(stored["C2"]) == [("+8613900000002", "mobile")]
    assert import_customers(sqlite_sessions, path).unchanged == 2


def test_gb18030_csv_from_chinese_excel(tmp_path, sqlite_sessions):
    path = write_csv(tmp_path / "gbk.csv", [CHINESE_HEADER, *GOOD_ROWS], encoding="gb18030")
    assert import_customers(sqlite_sessions, path).inserted == 4
    assert customers(sqlite_sessions)["C10001"].employer == "市第一人民医院"


def test_tab_separated_text_and_excel_text_cells(tmp_path, sqlite_sessions):
    path = write_csv(
        tmp_path / "export.csv",
        [["卡号", "姓名", "电话"], ["C1", "张三", '="075512345678"']],
        delimiter="\t",
    )
    report = import_customers(sqlite_sessions, path)
    assert report.inserted == 1, format_report(report)
    assert phones_of(customers(sqlite_sessions)["C1"]) == [("+8675512345678", "home")]


def test_unknown_columns_are_ignored_and_listed(tmp_path, sqlite_sessions):
    path = write_csv(tmp_path / "c.csv", [["卡号", "姓名", "备注", ""], ["C1", "张三", "随便", ""]])
    report = import_customers(sqlite_sessions, path)
    assert report.inserted == 1
    assert report.ignored_columns == ["备注"]
    assert "未识别的列已忽略 (ignored columns): 备注" in format_report(report)


def test_a_customer_is_found_by_any_form_of_their_numbers(tmp_path, db_sessions):
    path = write_csv(
        tmp_path / "c.csv",
        [["卡号", "姓名", "手机", "电话"], ["C1", "张三", "9 13800138000", "9 010 1234 5678"]],
    )
    assert import_customers(db_sessions, path, "CN", "9").inserted == 1
    with db_sessions() as session:
        for variant in (
            "+8613800138000",
            "008613800138000",
            "913800138000",
            "13800138000",
            "01012345678",
        ):
            e164 = normalize_phone(variant, "CN", "9").e164
            assert [c.card_no for c in find_customers_by_phone(session, e164)] == ["C1"], variant


def test_large_files_are_written_in_chunks(tmp_path, sqlite_sessions, monkeypatch):
    monkeypatch.setattr(customer_import, "CHUNK_ROWS", 100)
    rows = [["卡号", "姓名", "手机"]]
    rows += [[f"C{i:05d}", "客户", f"135{i:08d}"] for i in range(1050)]
    rows[500][2] = "bad"  # row 501 of the file
    path = write_csv(tmp_path / "big.csv", rows)
    report = import_customers(sqlite_sessions, path)
    assert (report.inserted, report.rejected) == (1049, 1)
    assert [e.row for e in report.errors] == [501]
    again = import_customers(sqlite_sessions, path)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 1049)
    with sqlite_sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Customer)) == 1049


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("old.xls", b"\xd0\xcf\x11\xe0", "unsupported file type .xls"),
        ("broken.xlsx", b"not a zip", "not a valid .xlsx file"),
        ("headless.csv", "张三,13800138000\n".encode(), "no header row"),
        ("binary.csv", b"\xff\xfe\x80\x81" * 10, "neither UTF-8 nor GB18030"),
    ],
)
def test_unusable_files_are_refused_before_anything_is_written(
    tmp_path, sqlite_sessions, name, content, message
):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImportFileError, match=message):
        import_customers(sqlite_sessions, path)
    assert customers(sqlite_sessions) == {}


def test_a_missing_file_is_refused(tmp_path, sqlite_sessions):
    with pytest.raises(ImportFileError, match="no such file"):
        import_customers(sqlite_sessions, tmp_path / "nowhere.csv")


def test_report_total():
    assert ImportReport(inserted=1, updated=2, unchanged=3, rejected=4).total == 10
