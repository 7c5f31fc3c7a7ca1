"""The one typed configuration of callbridge.

Values come from, highest priority first: keyword arguments, ``CALLBRIDGE_*`` environment
variables, a ``.env`` file in the working directory, the TOML file named by the environment
variable ``CALLBRIDGE_CONFIG``, and the defaults below. The environment variable names are a
public surface: ``CALLBRIDGE_DATABASE_URL``, ``CALLBRIDGE_AMI_SECRET``, ``CALLBRIDGE_AMI_SERVERS``
(a JSON list), and so on.

Outside the demo, unsafe combinations are refused at construction. Every problem is reported as a
:class:`ConfigurationError` naming the setting and never its value, so no secret (AMI secret,
API token, session key, database password) can leak through an error message or a traceback.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

ENV_PREFIX = "CALLBRIDGE_"
CONFIG_FILE_ENV = "CALLBRIDGE_CONFIG"
DEMO_SECRET_KEY = "callbridge-demo-secret-key-do-not-use-in-production"  # noqa: S105
"""The session key the demo runs with; refused outside the demo."""
MIN_SECRET_KEY_LENGTH = 16
ASTERISK_MONITOR_DIR = PurePosixPath("/var/spool/asterisk/monitor")
"""Asterisk's own recordings folder (``astspooldir``/monitor), where the dialplan records."""
DEFAULT_DATA_DIR = Path("./data")

_DIGITS = re.compile(r"\d+")


class ConfigurationError(ValueError):
    """Settings that cannot be used; the message lists every problem, without values."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid callbridge settings:\n" + "\n".join(f"- {p}" for p in problems))


class AmiServer(BaseModel):
    """One more Asterisk server to watch, beside the main ``ami_*`` one."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    name: str = Field(min_length=1, max_length=64)
    host: str = Field(min_length=1)
    port: int = Field(default=5038, ge=1, le=65535)
    username: str = "callbridge"
    secret: SecretStr
    tls: bool = False


def _split_list(value: Any) -> Any:
    """Accept a JSON list or a comma-separated string for list settings given as text.

    Decoded here rather than by pydantic-settings so that a malformed value is reported without
    being echoed (``ami_servers`` holds secrets).
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text.startswith("["):
        return [part.strip() for part in text.split(",") if part.strip()]
    try:
        decoded = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError("not valid JSON") from None
    if not isinstance(decoded, list):
        raise ValueError("must be a JSON list")
    return decoded


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Everything callbridge needs to start; see the module docstring for the sources."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        hide_input_in_errors=True,
        validate_default=True,
    )

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = Field(default="", repr=False)
    """Default ``sqlite:///<data_dir>/callbridge.db``."""
    recordings_dir: Path = DEFAULT_DATA_DIR / "recordings"
    """Default ``<data_dir>/recordings``."""
    pbx_recordings_dir: PurePosixPath = ASTERISK_MONITOR_DIR
    """The folder Asterisk records to, as Asterisk names it (``CC_RECDIR`` in
    ``dialplans/extensions_callbridge.conf``): a recording path reported under it is read under
    ``recordings_dir`` (the same folder, or a share of it mounted here)."""
    pbx_cdr_file: Path | None = None
    """The CSV file Asterisk's cdr_custom writes (``dialplans/cdr_custom.conf``), read at start
    and after every reconnect to log the calls that ended while the bridge was away
    (``crm_bridge/calls/cdr_reconcile.py``). None: such calls are not logged."""
    pbx_cdr_lookback_hours: float = Field(default=24.0, gt=0, le=24 * 90)
    """How far back the CDR file is read for calls missing from the call log."""
    journal_dir: Path = DEFAULT_DATA_DIR / "journal"
    """Where ended calls wait on disk until the call log has them (``crm_bridge/calls/journal.py``);
    one folder per running instance. Default ``<data_dir>/journal``."""
    vosk_model: Path | None = None
    pop_relay: bool | None = None
    """Share screen pops with the other instances on the same PostgreSQL database
    (``crm_bridge/pops/relay.py``); None: on exactly when the database is PostgreSQL."""

    ami_host: str = "127.0.0.1"
    ami_port: int = Field(default=5038, ge=1, le=65535)
    ami_username: str = "callbridge"
    ami_secret: SecretStr = SecretStr("")
    ami_tls: bool = False
    ami_servers: Annotated[list[AmiServer], NoDecode] = Field(default_factory=list)

    timezone: str = "Asia/Shanghai"
    number_region: str = "CN"
    outside_line_prefix: str | None = None

    api_token: SecretStr | None = None
    secret_key: SecretStr = SecretStr(DEMO_SECRET_KEY)
    forwarded_allow_ips: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """The reverse proxies whose ``X-Forwarded-For`` / ``-Proto`` are believed (uvicorn's
    ``forwarded_allow_ips``: addresses or networks); empty: none, the peer is the client."""
    secure_cookies: bool = False
    """Behind a TLS proxy: every cookie gets the Secure flag and every answer HSTS, whatever
    scheme the request reached this process with."""
    api_docs: bool = False
    """Serve ``/openapi.json``, to the API token and signed-in supervisors and admins only (no
    Swagger UI or ReDoc page: they load their code from a CDN). The demo turns it on."""
    demo: bool = False
    demo_speed: float = Field(default=1.0, gt=0, le=1000)
    """How much faster than recorded the demo replays its calls."""
    demo_language: Literal["zh", "ko"] = "zh"
    """The language of the ``vosk_model`` the demo transcribes with: the sentence its customer
    says (``crm_bridge/demo/speech/``) is in that language, and so is its watch word."""

    campaign_max_concurrent: int = Field(default=10, ge=1, le=500)
    """How many campaign calls may be placed (ringing or talking) at once."""
    campaign_calls_per_second: float = Field(default=2.0, gt=0, le=100)
    """How many campaign Originates may be sent per second at most."""
    campaign_ring_seconds: float = Field(default=30.0, ge=5, le=120)
    """How long a campaign call rings before it counts as not answered."""
    campaign_unresolved_grace_seconds: float = Field(default=180.0, ge=1, le=86400)
    """How long an attempt left without outcome (by a restart) waits for its call to reach the
    call log before it is counted ``lost`` and tried again."""

    live_speech: bool = False
    """Transcribe answered calls while they go on and raise watch-word alerts
    (``crm_bridge/live_speech/``); needs ``vosk_model``."""
    live_speech_host: str = "127.0.0.1"
    """Where the AudioSocket server listens (the dialplan's global ``CC_LIVE_AUDIO`` points
    Asterisk at it)."""
    live_speech_port: int = Field(default=8090, ge=0, le=65535)
    live_speech_max_streams: int = Field(default=8, ge=0, le=1000)
    """Call sides transcribed live at once; a call past it gets the post-call transcript only."""
    live_speech_language: str = "zh"
    live_speech_workers: int = Field(default=2, ge=1, le=64)
    """Threads decoding live audio (one core each at most)."""

    routing: bool = True
    """Routing by customer value (``crm_bridge/routing/``): the FastAGI server the dialplan
    asks before ``Queue()`` (``callbridge-route``). Off in the demo, which has no dialplan."""
    routing_host: str = "127.0.0.1"
    """Where the FastAGI server listens (the dialplan's global ``CC_ROUTE_AGI`` points Asterisk
    at it)."""
    routing_port: int = Field(default=4573, ge=0, le=65535)
    """4573 is FastAGI's usual port; 0: any free one (tests)."""

    inbound_contexts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["from-customers", "from-trunk", "from-pstn", "from-external"]
    )
    agent_states: bool = True
    """Agent states and the wallboard: a second AMI session on the main server reads the
    queues' members (QueueStatus and the QueueMember* events) and sends QueueAdd, QueueRemove
    and QueuePause. Off in the demo, whose recorded AMI has no queue members."""
    queue_member_interface: str = Field(default="Local/{extension}@agents/n", min_length=1)
    """What a queue rings for an agent who logs in, ``{extension}`` replaced by theirs: the
    agents context of dialplans/extensions_callbridge.conf, as the static members of
    queues.conf."""
    queue_state_interface: str = Field(default="PJSIP/{extension}", min_length=1)
    """The device whose state the queue watches for that member (a Local channel has none)."""
    agent_contexts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["internal", "from-internal"]
    )
    transfer_queues: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["support", "senior"]
    )
    """The queues an agent may transfer a call to: each needs its ``queue-<name>`` extension in
    the ``callbridge-transfer`` context of dialplans/extensions_callbridge.conf."""

    def __init__(self, *, serving: bool = True, **values: Any) -> None:
        """``serving=False`` is for commands that only touch the database or files (import,
        migrations): they need no API token, session key or AMI secret, so those are not
        demanded; every value is still validated."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError(_describe_validation_error(exc)) from None
        if serving and not self.demo:
            problems = self.unsafe_problems()
            if problems:
                raise ConfigurationError(problems)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV, "").strip()
        if config_file:
            sources.append(_toml_source(settings_cls, Path(config_file)))
        return tuple(sources)

    @field_validator(
        "ami_servers",
        "inbound_contexts",
        "agent_contexts",
        "transfer_queues",
        "forwarded_allow_ips",
        mode="before",
    )
    @classmethod
    def _lists_from_text(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("transfer_queues")
    @classmethod
    def _queue_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", name):
                raise ValueError("a queue name is letters, digits, _ and - (at most 32)")
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _addresses_or_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError("each entry must be an IP address or network") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone (expected a name like Asia/Shanghai)") from None
        return value

    @field_validator("number_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError("unknown phone number region (expected a code like CN)")
        return region

    @field_validator("outside_line_prefix")
    @classmethod
    def _digit_prefix(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not _DIGITS.fullmatch(value.strip()):
            raise ValueError("must be digits only, like 9")
        return value.strip()

    @model_validator(mode="before")
    @classmethod
    def _derive_from_data_dir(cls, data: Any) -> Any:
        """Place the SQLite file, the recordings and the call journal under ``data_dir`` unless
        given."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        data_dir = data.get("data_dir") or DEFAULT_DATA_DIR
        if not isinstance(data_dir, str | Path):
            return data  # the field validation reports the bad type
        if not str(data.get("database_url") or "").strip():
            data["database_url"] = f"sqlite:///{(Path(data_dir) / 'callbridge.db').as_posix()}"
        if not data.get("recordings_dir"):
            data["recordings_dir"] = Path(data_dir) / "recordings"
        if not data.get("journal_dir"):
            data["journal_dir"] = Path(data_dir) / "journal"
        return data

    @field_validator("pbx_recordings_dir")
    @classmethod
    def _absolute_pbx_dir(cls, value: PurePosixPath) -> PurePosixPath:
        if not value.is_absolute() or ".." in value.parts:
            raise ValueError("must be an absolute path on the Asterisk machine")
        return value

    @field_validator("database_url")
    @classmethod
    def _parsable_url(cls, value: str) -> str:
        try:
            make_url(value.strip())
        except ArgumentError:
            raise ValueError("not a database URL (sqlite:///… or postgresql://…)") from None
        return value.strip()

    @model_validator(mode="after")
    def _relay_needs_postgresql(self) -> Self:
        if self.pop_relay and not self.is_postgresql:
            raise ValueError("pop_relay: needs a PostgreSQL database_url")
        return self

    @model_validator(mode="after")
    def _live_speech_needs_a_model(self) -> Self:
        if self.live_speech and self.vosk_model is None:
            raise ValueError("live_speech needs vosk_model (a Vosk model folder)")
        return self

    @model_validator(mode="after")
    def _unique_server_names(self) -> Self:
        names = [server.name for server in self.ami_servers]
        if len(names) != len(set(names)):
            raise ValueError("ami_servers: every server needs its own name")
        return self

    def unsafe_problems(self) -> list[str]:
        """What makes these settings unfit outside the demo (empty when they are fine)."""
        problems = []
        if self.api_token is None or not self.api_token.get_secret_value().strip():
            problems.append(f"{ENV_PREFIX}API_TOKEN must be set outside the demo")
        key = self.secret_key.get_secret_value()
        if key == DEMO_SECRET_KEY:
            problems.append(f"{ENV_PREFIX}SECRET_KEY is the demo default; set your own")
        elif len(key) < MIN_SECRET_KEY_LENGTH:
            problems.append(
                f"{ENV_PREFIX}SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters"
            )
        if not self.ami_secret.get_secret_value():
            problems.append(f"{ENV_PREFIX}AMI_SECRET must be set outside the demo")
        if not self.ami_tls and not is_loopback_host(self.ami_host):
            problems.append(
                f"{ENV_PREFIX}AMI_HOST is not on loopback: set {ENV_PREFIX}AMI_TLS=true "
                "(AMI sends the secret and every caller's number in clear text)"
            )
        for server in self.ami_servers:
            if not server.tls and not is_loopback_host(server.host):
                problems.append(f"ami_servers[{server.name}] is not on loopback: set tls = true")
        return problems

    def __repr_args__(self) -> Any:
        yield from super().__repr_args__()
        yield "database_url", self.database_url_masked

    @property
    def database_url_masked(self) -> str:
        """The database URL with its password hidden, for logs and repr."""
        return make_url(self.database_url).render_as_string(hide_password=True)

    @property
    def is_postgresql(self) -> bool:
        return make_url(self.database_url).get_backend_name() == "postgresql"

    @property
    def pop_relay_enabled(self) -> bool:
        """Whether this instance relays screen pops (see ``crm_bridge.pops.relay``)."""
        return self.is_postgresql if self.pop_relay is None else self.pop_relay

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or None for another database or an in-memory one."""
        url = make_url(self.database_url)
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        return Path(url.database)

    @property
    def greetings_dir(self) -> Path:
        """Where the campaign greetings the schedulers upload are kept."""
        return self.data_dir / "greetings"

    @property
    def zone(self) -> ZoneInfo:
        """The center's time zone, in which times are shown."""
        return ZoneInfo(self.timezone)


def _toml_source(settings_cls: type[BaseSettings], path: Path) -> TomlConfigSettingsSource:
    if not path.is_file():
        raise ConfigurationError([f"{CONFIG_FILE_ENV} names a file that does not exist: {path}"])
    try:
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    except tomllib.TOMLDecodeError as exc:
        problem = f"{CONFIG_FILE_ENV} file {path} is not valid TOML: {exc}"
        raise ConfigurationError([problem]) from None


def _describe_validation_error(exc: ValidationError) -> list[str]:
    """One line per error: where and what, never the rejected value."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return problems
