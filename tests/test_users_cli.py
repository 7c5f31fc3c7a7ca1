"""``callbridge users add`` and ``callbridge users list``, run as a user runs them.

Typer's runner, a real SQLite file, real argon2 with the production parameters; the user made
on the command line then signs in to the real app.
"""

from __future__ import annotations

import re
import socket

import httpx
from sqlalchemy import select
from typer.testing import CliRunner

from crm_bridge.app import create_app
from crm_bridge.cli import app
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.models import User
from crm_bridge.settings import Settings

runner = CliRunner()


def env_for(tmp_path) -> dict[str, str]:
    return {"CALLBRIDGE_DATA_DIR": str(tmp_path), "CALLBRIDGE_DATABASE_URL": ""}


def stored_users(tmp_path) -> dict[str, User]:
    engine = make_engine(f"sqlite:///{tmp_path / 'callbridge.db'}")
    with make_session_factory(engine)() as session:
        found = {user.username: user for user in session.scalars(select(User))}
    engine.dispose()
    return found


def add(tmp_path, *args: str, stdin: str = "a-good-password\n"):
    return runner.invoke(app, ["users", "add", *args], input=stdin, env=env_for(tmp_path))


async def test_a_user_added_on_the_command_line_can_sign_in(tmp_path):
    result = add(tmp_path, "Zhang.Wei", "--role", "admin", "--password-stdin")
    assert result.exit_code == 0, result.output
    assert "zhang.wei" in result.output
    (user,) = stored_users(tmp_path).values()
    assert user.role == "admin" and user.active
    assert user.password_hash.startswith("$argon2id$")
    assert user.password_hash not in result.output

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    settings = Settings(
        data_dir=tmp_path,
        ami_port=closed_port,
        ami_secret="unused-secret",
        api_token="test-token-0123456789",
        secret_key="a-test-secret-key-of-some-length",
    )
    web = create_app(settings)
    async with web.router.lifespan_context(web):
        transport = httpx.ASGITransport(app=web)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            page = (await client.get("/login")).text
            token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            form = {"username": "zhang.wei", "password": "a-good-password", "csrf_token": token}
            signed_in = await client.post("/login", data=form)
            assert signed_in.status_code == 303
            assert (await client.get("/admin/users")).status_code == 200


def test_the_password_is_asked_twice(tmp_path):
    result = add(tmp_path, "li", "--role", "agent", stdin="a-good-password\na-good-password\n")
    assert result.exit_code == 0, result.output
    assert "a-good-password" not in result.output
    mismatch = add(tmp_path, "wu", "--role", "agent", stdin="a-good-password\nanother-one-1\n")
    assert mismatch.exit_code != 0
    assert set(stored_users(tmp_path)) == {"li"}


def test_agents_are_bound_to_their_extensions(tmp_path):
    result = add(
        tmp_path,
        "wang",
        "--role",
        "agent",
        "--extension",
        "1001",
        "--extension",
        "PJSIP/1001",
        "--password-stdin",
    )
    assert result.exit_code == 0, result.output
    assert stored_users(tmp_path)["wang"].extensions == ["1001", "PJSIP/1001"]


def test_weak_passwords_and_bad_input_are_refused_with_a_clear_message(tmp_path):
    weak = add(tmp_path, "li", "--role", "agent", "--password-stdin", stdin="short\n")
    assert weak.exit_code == 1
    assert "至少 10" in weak.output and "at least 10 characters" in weak.output
    bad_role = add(tmp_path, "li", "--role", "root", "--password-stdin")
    assert bad_role.exit_code == 1 and "Unknown role" in bad_role.output
    bad_name = add(tmp_path, "li na", "--role", "agent", "--password-stdin")
    assert bad_name.exit_code == 1 and "Username must be" in bad_name.output
    bad_extension = add(
        tmp_path, "li", "--role", "agent", "--extension", "1001,x;y", "--password-stdin"
    )
    assert bad_extension.exit_code == 1 and "Not an extension" in bad_extension.output
    assert stored_users(tmp_path) == {}
    assert add(tmp_path, "li", "--role", "agent", "--password-stdin").exit_code == 0
    duplicate = add(tmp_path, "LI", "--role", "admin", "--password-stdin")
    assert duplicate.exit_code == 1 and "already taken" in duplicate.output
    assert stored_users(tmp_path)["li"].role == "agent"


def test_list_shows_users_without_their_hashes(tmp_path):
    add(tmp_path, "li", "--role", "supervisor", "--password-stdin")
    add(tmp_path, "wang", "--role", "agent", "--extension", "1001", "--password-stdin")
    result = runner.invoke(app, ["users", "list"], env=env_for(tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["li", "supervisor", "active"]
    assert lines[1].split() == ["wang", "agent", "active", "1001"]
    assert "$argon2" not in result.output
