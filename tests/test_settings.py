"""Settings: environment, .env and TOML sources, unsafe combinations, secrets kept out of sight."""

from __future__ import annotations

import json
import os
import traceback
from pathlib import Path, PurePosixPath

import pytest

from crm_bridge.settings import DEMO_SECRET_KEY, ConfigurationError, Settings

AMI_SECRET = "ami-Secret-9f3b2c"
API_TOKEN = "api-Token-77e1d0"
SECRET_KEY = "session-Key-4c8e1a55b0d2"
DB_PASSWORD = "db-Pass-31c9"
SAFE = {"ami_secret": AMI_SECRET, "api_token": API_TOKEN, "secret_key": SECRET_KEY}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No CALLBRIDGE_* variable nor .env file of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.startswith("CALLBRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_derive_the_database_and_recordings_from_data_dir():
    settings = Settings(demo=True)
    assert settings.data_dir == Path("data")
    assert settings.database_url == "sqlite:///data/callbridge.db"
    assert settings.sqlite_path == Path("data/callbridge.db")
    assert settings.recordings_dir == Path("data/recordings")
    assert (settings.ami_host, settings.ami_port, settings.ami_username) == (
        "127.0.0.1",
        5038,
        "callbridge",
    )
    assert settings.ami_tls is False
    assert settings.timezone == "Asia/Shanghai"
    assert str(settings.zone) == "Asia/Shanghai"
    assert settings.number_region == "CN"
    assert settings.outside_line_prefix is None
    assert settings.inbound_contexts == [
        "from-customers",
        "from-trunk",
        "from-pstn",
        "from-external",
    ]
    assert settings.agent_contexts == ["internal", "from-internal"]
    assert settings.api_token is None
    assert settings.secret_key.get_secret_value() == DEMO_SECRET_KEY


def test_environment_variables(monkeypatch, tmp_path):
    servers = [
        {"name": "pbx2", "host": "127.0.0.2", "port": 5039, "secret": "other-secret"},
        {"name": "pbx3", "host": "pbx3.example.com", "secret": "third", "tls": True},
    ]
    env = {
        "CALLBRIDGE_DATA_DIR": str(tmp_path / "var"),
        "CALLBRIDGE_AMI_HOST": "pbx1.example.com",
        "CALLBRIDGE_AMI_PORT": "5039",
        "CALLBRIDGE_AMI_TLS": "true",
        "CALLBRIDGE_AMI_SECRET": AMI_SECRET,
        "CALLBRIDGE_AMI_SERVERS": json.dumps(servers),
        "CALLBRIDGE_API_TOKEN": API_TOKEN,
        "CALLBRIDGE_SECRET_KEY": SECRET_KEY,
        "CALLBRIDGE_TIMEZONE": "Asia/Taipei",
        "CALLBRIDGE_NUMBER_REGION": "tw",
        "CALLBRIDGE_OUTSIDE_LINE_PREFIX": "9",
        "CALLBRIDGE_INBOUND_CONTEXTS": "from-trunk, from-sip",
        "CALLBRIDGE_AGENT_CONTEXTS": '["agents"]',
        "CALLBRIDGE_VOSK_MODEL": "/models/vosk-small-cn",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.database_url == f"sqlite:///{tmp_path / 'var' / 'callbridge.db'}"
    assert settings.recordings_dir == tmp_path / "var" / "recordings"
    assert (settings.ami_host, settings.ami_port, settings.ami_tls) == (
        "pbx1.example.com",
        5039,
        True,
    )
    assert settings.ami_secret.get_secret_value() == AMI_SECRET
    assert [(s.name, s.host, s.port, s.tls) for s in settings.ami_servers] == [
        ("pbx2", "127.0.0.2", 5039, False),
        ("pbx3", "pbx3.example.com", 5038, True),
    ]
    assert settings.ami_servers[0].secret.get_secret_value() == "other-secret"
    assert settings.ami_servers[0].username == "callbridge"
    assert settings.timezone == "Asia/Taipei"
    assert settings.number_region == "TW"
    assert settings.outside_line_prefix == "9"
    assert settings.inbound_contexts == ["from-trunk", "from-sip"]
    assert settings.agent_contexts == ["agents"]
    assert settings.vosk_model == Path("/models/vosk-small-cn")


def test_explicit_database_url_and_recordings_dir_win(monkeypatch):
    monkeypatch.setenv("CALLBRIDGE_DATABASE_URL", "postgresql://cb@db.internal/callbridge")
    monkeypatch.setenv("CALLBRIDGE_RECORDINGS_DIR", "/var/spool/asterisk/monitor")
    settings = Settings(demo=True, data_dir="/srv/cb")
    assert settings.database_url == "postgresql://cb@db.internal/callbridge"
    assert settings.sqlite_path is None
    assert settings.recordings_dir == Path("/var/spool/asterisk/monitor")


def test_asterisk_recordings_folder(monkeypatch):
    assert Settings(demo=True).pbx_recordings_dir == PurePosixPath("/var/spool/asterisk/monitor")
    monkeypatch.setenv("CALLBRIDGE_PBX_RECORDINGS_DIR", "/srv/pbx/rec")
    assert Settings(demo=True).pbx_recordings_dir == PurePosixPath("/srv/pbx/rec")
    for bad in ("relative/rec", "/srv/../etc"):
        monkeypatch.setenv("CALLBRIDGE_PBX_RECORDINGS_DIR", bad)
        with pytest.raises(ConfigurationError, match="pbx_recordings_dir"):
            Settings(demo=True)


def test_dotenv_file_in_the_working_directory(tmp_path):
    (tmp_path / ".env").write_text(
        f"CALLBRIDGE_DEMO=1\nCALLBRIDGE_AMI_PORT=6038\nCALLBRIDGE_AMI_SECRET={AMI_SECRET}\n",
        encoding="utf-8",
    )
    settings = Settings()
    assert settings.demo is True
    assert settings.ami_port == 6038
    assert settings.ami_secret.get_secret_value() == AMI_SECRET


def test_toml_file_named_by_callbridge_config(monkeypatch, tmp_path):
    config = tmp_path / "callbridge.toml"
    config.write_text(
        f"""
data_dir = "{(tmp_path / "toml-data").as_posix()}"
ami_host = "10.0.0.5"
ami_tls = true
ami_secret = "{AMI_SECRET}"
api_token = "{API_TOKEN}"
secret_key = "{SECRET_KEY}"
outside_line_prefix = "0"
inbound_contexts = ["from-trunk"]

[[ami_servers]]
name = "branch"
host = "127.0.0.1"
port = 15038
secret = "branch-secret"
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("CALLBRIDGE_CONFIG", str(config))
    monkeypatch.setenv("CALLBRIDGE_AMI_PORT", "5040")  # the environment beats the file
    settings = Settings()
    assert settings.ami_host == "10.0.0.5"
    assert settings.ami_port == 5040
    assert settings.ami_tls is True
    assert settings.outside_line_prefix == "0"
    assert settings.inbound_contexts == ["from-trunk"]
    assert settings.database_url == f"sqlite:///{(tmp_path / 'toml-data').as_posix()}/callbridge.db"
    assert [(s.name, s.port) for s in settings.ami_servers] == [("branch", 15038)]


def test_callbridge_config_naming_a_missing_file_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("CALLBRIDGE_CONFIG", str(tmp_path / "nowhere.toml"))
    with pytest.raises(ConfigurationError, match="does not exist"):
        Settings(demo=True)


def test_a_production_configuration_is_accepted():
    settings = Settings(**SAFE)
    assert settings.demo is False
    assert settings.unsafe_problems() == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"api_token": None}, "CALLBRIDGE_API_TOKEN"),
        ({"api_token": "  "}, "CALLBRIDGE_API_TOKEN"),
        ({"secret_key": DEMO_SECRET_KEY}, "CALLBRIDGE_SECRET_KEY is the demo default"),
        ({"secret_key": "short"}, "CALLBRIDGE_SECRET_KEY must be at least"),
        ({"ami_secret": ""}, "CALLBRIDGE_AMI_SECRET"),
        ({"ami_host": "192.168.1.20"}, "CALLBRIDGE_AMI_HOST is not on loopback"),
        ({"ami_host": "pbx.example.com"}, "CALLBRIDGE_AMI_HOST is not on loopback"),
        (
            {"ami_servers": [{"name": "far", "host": "10.1.1.1", "secret": "x"}]},
            "ami_servers[far] is not on loopback",
        ),
    ],
)
def test_unsafe_combinations_are_refused_outside_the_demo(overrides, expected):
    with pytest.raises(ConfigurationError) as caught:
        Settings(**{**SAFE, **overrides})
    assert expected in str(caught.value)
    Settings(**{**SAFE, **overrides, "demo": True})  # the demo accepts it


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.1.1", "localhost", "::1", "[::1]"])
def test_loopback_hosts_need_no_tls(host):
    assert Settings(**SAFE, ami_host=host).ami_host == host


def test_a_remote_host_with_tls_is_accepted():
    assert Settings(**SAFE, ami_host="pbx.example.com", ami_tls=True).ami_tls is True


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigurationError) as caught:
        Settings(ami_host="10.0.0.9")
    assert len(caught.value.problems) == 4  # token, default key, AMI secret, clear-text AMI


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timezone", "Mars/Olympus"),
        ("number_region", "XX"),
        ("outside_line_prefix", "9#"),
        ("ami_port", "0"),
        ("database_url", "not a url"),
    ],
)
def test_bad_values_are_refused(field, value):
    with pytest.raises(ConfigurationError) as caught:
        Settings(demo=True, **{field: value})
    assert field in str(caught.value)


def test_extra_servers_need_distinct_names():
    servers = [
        {"name": "a", "host": "127.0.0.1", "secret": "x"},
        {"name": "a", "host": "127.0.0.2", "secret": "y"},
    ]
    with pytest.raises(ConfigurationError, match="own name"):
        Settings(demo=True, ami_servers=servers)


def _everything_printed(exc: BaseException) -> str:
    return "".join([str(exc), repr(exc), *traceback.format_exception(exc)])


@pytest.mark.parametrize(
    ("servers_env", "values"),
    [
        # an unsafe combination while the secrets are set
        (None, {"ami_secret": AMI_SECRET, "api_token": API_TOKEN, "ami_host": "10.0.0.1"}),
        # a bad value beside the secrets
        (None, {**SAFE, "ami_port": "not-a-port"}),
        # malformed JSON holding a secret
        ('[{"secret": "' + AMI_SECRET + '"', SAFE),
        # a server without host: pydantic alone would echo the whole server, secret included
        (json.dumps([{"name": "b", "secret": AMI_SECRET}]), SAFE),
        # a secret of the wrong type (as a TOML file could give it)
        (None, {**SAFE, "api_token": [API_TOKEN]}),
        # a database password in the URL next to an unsafe setting
        (None, {**SAFE, "database_url": f"postgresql://cb:{DB_PASSWORD}@db/cb", "ami_host": "h"}),
    ],
    ids=["unsafe", "bad-port", "bad-json", "server-without-host", "wrong-type", "db-url"],
)
def test_secrets_never_appear_in_errors(monkeypatch, servers_env, values):
    if servers_env is not None:
        monkeypatch.setenv("CALLBRIDGE_AMI_SERVERS", servers_env)
    with pytest.raises(ConfigurationError) as caught:
        Settings(**values)
    printed = _everything_printed(caught.value)
    for secret in (AMI_SECRET, API_TOKEN, SECRET_KEY, DB_PASSWORD):
        assert secret not in printed
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_secrets_never_appear_in_repr_or_str():
    settings = Settings(
        **SAFE,
        database_url=f"postgresql://cb:{DB_PASSWORD}@db.internal/cb",
        ami_servers=[{"name": "b", "host": "127.0.0.1", "secret": AMI_SECRET + "-b"}],
    )
    for shown in (repr(settings), str(settings), repr(settings.ami_servers)):
        for secret in (AMI_SECRET, API_TOKEN, SECRET_KEY, DB_PASSWORD):
            assert secret not in shown
    assert "db.internal" in repr(settings)
    assert DB_PASSWORD not in settings.database_url_masked
    assert DB_PASSWORD in settings.database_url  # the real URL is still there to connect with
