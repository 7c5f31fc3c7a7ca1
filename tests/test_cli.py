"""The ``callbridge`` command, run as a user runs it (Typer's runner, real files, real SQLite)."""

from __future__ import annotations

from sqlalchemy import func, select
from typer.testing import CliRunner

from crm_bridge.cli import app
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.models import Customer

runner = CliRunner()

CSV = """卡号,姓名,性别,手机,生日
C9001,王五,男,0086 139 1234 5678,1980-02-03
C9002,赵六,女,12345,1990-13-01
C9001,王五二,男,13912345679,1981-01-01
C9003,孙七,女,+86 138 1234 0000,1975/7/7
"""


def env_for(tmp_path) -> dict[str, str]:
    return {"CALLBRIDGE_DATA_DIR": str(tmp_path), "CALLBRIDGE_DATABASE_URL": ""}


def count_customers(tmp_path) -> int:
    engine = make_engine(f"sqlite:///{tmp_path / 'callbridge.db'}")
    with make_session_factory(engine)() as session:
        count = session.scalar(select(func.count(Customer.id)))
    engine.dispose()
    return int(count or 0)


def test_import_reports_bad_rows_keeps_good_ones_and_is_idempotent(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text(CSV, encoding="utf-8")
    first = runner.invoke(app, ["import", "customers", str(path)], env=env_for(tmp_path))
    assert first.exit_code == 1, first.output
    assert "第 3 行" in first.output and "第 4 行" in first.output
    assert count_customers(tmp_path) == 2
    second = runner.invoke(app, ["import", "customers", str(path)], env=env_for(tmp_path))
    assert count_customers(tmp_path) == 2
    assert second.output.count("第 ") == first.output.count("第 ")


def test_a_file_that_cannot_be_read_is_one_clear_line_not_a_traceback(tmp_path):
    path = tmp_path / "customers.xlsx"
    path.write_bytes(b"this is not a zip file")
    result = runner.invoke(app, ["import", "customers", str(path)], env=env_for(tmp_path))
    assert result.exit_code == 2
    assert "customers.xlsx" in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_import_needs_no_service_secrets_but_serve_does(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("卡号,姓名,手机\nC1,张三,13800138000\n", encoding="utf-8")
    imported = runner.invoke(app, ["import", "customers", str(path)], env=env_for(tmp_path))
    assert imported.exit_code == 0, imported.output
    served = runner.invoke(app, ["serve", "--port", "1"], env=env_for(tmp_path))
    assert served.exit_code == 2
    assert "API_TOKEN must be set" in served.output


def test_db_upgrade(tmp_path):
    result = runner.invoke(app, ["db", "upgrade"], env=env_for(tmp_path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "callbridge.db").exists()
