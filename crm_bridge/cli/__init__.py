"""The ``callbridge`` command (Typer)."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from crm_bridge.cli import speech as cli_speech
from crm_bridge.log_setup import configure_logging
from crm_bridge.settings import ConfigurationError, Settings

app = typer.Typer(help="callbridge: Asterisk ↔ customer archive bridge.", no_args_is_help=True)
import_app = typer.Typer(help="Import data into the archive.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
users_app = typer.Typer(help="People who sign in to the web pages.", no_args_is_help=True)
app.add_typer(import_app, name="import")
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(cli_speech.models_app, name="models")
app.command("transcribe")(cli_speech.transcribe)
retention_app = typer.Typer(help="Delete recordings and transcripts past their keep time.",
                            no_args_is_help=True)  # fmt: skip
app.add_typer(retention_app, name="retention")

HostOption = Annotated[str, typer.Option(help="address to listen on")]
PortOption = Annotated[int, typer.Option(help="port to listen on")]


def _settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)
    except ConfigurationError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _logging() -> None:
    configure_logging()


def _run(settings: Settings, host: str, port: int) -> None:
    from crm_bridge.app import create_app, server_options

    uvicorn.run(create_app(settings), host=host, port=port, **server_options(settings))


@app.command()
def serve(host: HostOption = "127.0.0.1", port: PortOption = 8000) -> None:
    """Run the service against the Asterisk servers in the settings."""
    _logging()
    _run(_settings(), host, port)


@app.command()
def demo(
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    data_dir: Annotated[Path, typer.Option(help="where the demo keeps its database")] = Path(
        "./data/demo"
    ),
    speed: Annotated[float, typer.Option(help="replay the recorded calls this much faster")] = 1.0,
) -> None:
    """Run the service with no Asterisk: a seeded archive and recorded calls replayed live."""
    from crm_bridge.demo.feed import ensure_demo_users, new_demo_password

    _logging()
    token = secrets.token_urlsafe(16)
    settings = _settings(
        demo=True,
        data_dir=data_dir,
        api_token=token,
        demo_speed=speed,
        secret_key=secrets.token_urlsafe(32),  # sessions of an earlier run end with it
        api_docs=True,
    )
    password = new_demo_password()
    demo_users = ensure_demo_users(settings.database_url, password)
    typer.echo(f"callbridge demo on http://{host}:{port}/agent")
    typer.echo(f"登录 Sign in (password for this run / 本次密码: {password}):")
    for user in demo_users:
        extensions = f" ({', '.join(user.extensions)})" if user.extensions else ""
        typer.echo(f"  {user.username:<11} {user.role}{extensions}")
    typer.echo(f"OpenAPI: http://{host}:{port}/openapi.json (token or supervisor/admin)")
    typer.echo(f"API token for this run: {token}")
    typer.echo(f'  curl -H "Authorization: Bearer {token}" http://{host}:{port}/api/calls')
    _run(settings, host, port)


@import_app.command("customers")
def import_customers_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Import customers from CSV or Excel (.xlsx); Chinese or English headers."""
    from crm_bridge.customers.importer import ImportFileError, format_report, import_customers
    from crm_bridge.db.engine import make_engine, make_session_factory
    from crm_bridge.db.migrate import upgrade

    settings = _settings(serving=False)
    upgrade(settings.database_url)
    sessions = make_session_factory(make_engine(settings.database_url))
    try:
        report = import_customers(
            sessions, file, settings.number_region, settings.outside_line_prefix
        )
    except ImportFileError as exc:
        typer.echo(f"{file.name}: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(format_report(report))
    if report.rejected:
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema up to date (Alembic)."""
    from crm_bridge.db.migrate import upgrade

    settings = _settings(serving=False)
    upgrade(settings.database_url)
    typer.echo(f"database at {settings.database_url_masked} is up to date")


def _user_sessions():
    from crm_bridge.db.engine import make_engine, make_session_factory
    from crm_bridge.db.migrate import upgrade

    settings = _settings(serving=False)
    upgrade(settings.database_url)
    return make_session_factory(make_engine(settings.database_url))


def _read_password(from_stdin: bool, username: str) -> str:
    """The new password, from stdin's first line or typed twice; a weak one ends the command."""
    from crm_bridge.accounts.users import password_problem

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("密码 Password", hide_input=True, confirmation_prompt=True)
    problem = password_problem(password, username)
    if problem:
        typer.echo(problem, err=True)
        raise typer.Exit(1)
    return password


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="user name: 2-32 letters, digits, '.', '_', '-'")],
    role: Annotated[str, typer.Option(help="agent, supervisor, scheduler or admin")],
    extension: Annotated[
        list[str] | None,
        typer.Option(help="an extension or interface they answer on (1001, PJSIP/1001); repeat"),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
) -> None:
    """Add a user; the password is asked twice (or read from stdin) and stored as argon2."""
    from crm_bridge.accounts.users import (
        UserInputError,
        create_user,
        role_problem,
        username_problem,
    )

    for problem in (username_problem(name), role_problem(role)):
        if problem:
            typer.echo(problem, err=True)
            raise typer.Exit(1)
    password = _read_password(password_stdin, name)
    sessions = _user_sessions()
    try:
        with sessions.begin() as session:
            user = create_user(session, name, password, role, extension or [])
            summary = f"{user.username} ({user.role}) {' '.join(user.extensions)}".rstrip()
    except UserInputError as exc:
        for message in exc.errors.values():
            typer.echo(message, err=True)
        raise typer.Exit(1) from None
    finally:
        sessions.kw["bind"].dispose()
    typer.echo(f"用户已创建 / user created: {summary}")


@users_app.command("list")
def users_list() -> None:
    """Every user: name, role, active or not, extensions."""
    from crm_bridge.accounts.users import list_users

    sessions = _user_sessions()
    try:
        with sessions() as session:
            users = list_users(session)
    finally:
        sessions.kw["bind"].dispose()
    for user in users:
        state = "active" if user.active else "deactivated"
        typer.echo(f"{user.username:<32} {user.role:<10} {state:<11} {' '.join(user.extensions)}")


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="stop when no job is due")] = False,
    language: Annotated[str, typer.Option(help="language of the model (zh, en, ko…)")] = "zh",
    lease_seconds: Annotated[float, typer.Option(min=2, help="lease, renewed meanwhile")] = 60.0,
    poll_seconds: Annotated[float, typer.Option(min=0.1, help="wait between empty polls")] = 2.0,
    max_attempts: Annotated[int, typer.Option(min=1, help="tries before a job fails")] = 5,
    retry_delay_seconds: Annotated[float, typer.Option(min=0, help="first back-off")] = 30.0,
    niceness: Annotated[
        int, typer.Option(min=0, max=19, help="lower the CPU priority by this much")
    ] = 10,
) -> None:
    """Transcribe recordings from the job queue; run as many worker processes as you like."""
    from crm_bridge.db.migrate import upgrade
    from crm_bridge.speech.jobs import RetryPolicy, run_worker
    from transcription.errors import ModelError
    from transcription.model_files import check_model

    _logging()
    settings = _settings(serving=False)
    if settings.vosk_model is None:
        typer.echo("CALLBRIDGE_VOSK_MODEL is not set: name the Vosk model folder", err=True)
        raise typer.Exit(2)
    try:
        check_model(settings.vosk_model)
    except ModelError as exc:
        typer.echo(f"model: {exc}", err=True)
        raise typer.Exit(2) from None
    upgrade(settings.database_url)
    retry = RetryPolicy(max_attempts=max_attempts, base_delay_seconds=retry_delay_seconds)
    handled = run_worker(
        settings.database_url,
        settings.recordings_dir,
        settings.vosk_model,
        language=language,
        once=once,
        lease_seconds=lease_seconds,
        poll_seconds=poll_seconds,
        retry=retry,
        niceness=niceness,
    )
    typer.echo(f"worker stopped after {handled} job(s)", err=True)


@retention_app.command("run")
def retention_run() -> None:
    """Delete the recordings (and transcripts) older than the retention settings, once."""
    from crm_bridge.supervision.retention import run_retention

    _logging()
    settings = _settings(serving=False)
    report = run_retention(_user_sessions(), settings.recordings_dir)
    typer.echo(
        f"{report.recordings_deleted} recording(s) deleted ({report.files_removed} file(s)), "
        f"{report.segments_deleted} transcript segment(s) deleted"
    )
