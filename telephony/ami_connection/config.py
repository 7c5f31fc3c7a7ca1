"""How to reach one Asterisk manager (:class:`AmiConfig`), the states an AMI connection goes
through, and the errors it raises. The login secret shows in no ``repr`` or ``str``."""

from __future__ import annotations

import dataclasses
import ssl
from dataclasses import dataclass, field
from enum import StrEnum

from telephony.ami_codec import encode_action


class AmiState(StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"  # logged in, Asterisk fully booted, resynced
    AUTH_FAILED = "auth_failed"
    STOPPED = "stopped"


class AmiError(Exception):
    """Base of the errors this connection raises."""


class AmiNotConnected(AmiError):
    """The connection is not logged in and resynced; nothing was sent."""


class AmiActionTimeout(AmiError):
    """Asterisk did not answer the action in time; the connection stays up."""


class AmiActionLost(AmiError):
    """The connection dropped before the answer came. The action may or may not have run on
    Asterisk; it is never resent."""


class AmiAuthFailed(AmiError):
    """Asterisk refused the login."""


@dataclass(frozen=True, kw_only=True)
class AmiConfig:
    """How to reach one Asterisk manager. ``secret`` never shows in ``repr``/``str``."""

    host: str
    port: int = 5038
    username: str
    secret: str = field(repr=False)
    name: str = "default"
    purpose: str = "bridge"
    """What the session is for (``bridge``, ``dialer``): two sessions to one server log apart."""
    use_tls: bool = False
    ssl_context: ssl.SSLContext | None = None
    connect_timeout: float = 5.0
    action_timeout: float = 10.0
    ping_interval: float = 20.0
    ping_timeout: float = 5.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    events: str = "on"
    wait_fully_booted: bool = True
    boot_timeout: float = 60.0
    """Report ``connected`` only once Asterisk has sent ``FullyBooted`` (it does at once after
    the login of a booted Asterisk, and when the boot ends for a login during the boot). Needs
    ``system`` in the account's ``read=``; a session whose ``events`` leave out ``system`` never
    gets it and does not wait."""

    def __post_init__(self) -> None:
        for name in (
            "connect_timeout",
            "action_timeout",
            "ping_interval",
            "ping_timeout",
            "backoff_initial",
            "boot_timeout",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"AmiConfig.{name} must be positive")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("AmiConfig.backoff_max must be >= backoff_initial")
        if not 0 < self.port < 65536:
            raise ValueError("AmiConfig.port must be 1..65535")
        # Refuse now, not at every reconnect, a login Asterisk would misread (never echoes it).
        encode_action("Login", self._login_headers())

    @property
    def label(self) -> str:
        """How logs name this session: its purpose and server (``bridge@default``)."""
        return f"{self.purpose}@{self.name}"

    def _login_headers(self) -> list[tuple[str, str]]:
        return [("Username", self.username), ("Secret", self.secret), ("Events", self.events)]

    def __repr__(self) -> str:
        shown = (f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr)
        return f"AmiConfig({', '.join(shown)}, secret='***')"

    __str__ = __repr__


def sends_system_events(events: str) -> bool:
    """Whether a Login with this ``Events:`` value gets the ``system`` class (FullyBooted)."""
    wanted = {part.strip().lower() for part in events.split(",")}
    return bool(wanted & {"on", "all", "system"})

