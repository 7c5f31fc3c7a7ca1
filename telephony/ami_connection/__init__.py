"""One supervised AMI connection to one Asterisk server.

* :mod:`~telephony.ami_connection.config`: how to reach the server, the states, the errors;
* :mod:`~telephony.ami_connection.session`: one TCP session: framing, events in wire order,
  answers matched to the actions waiting for them;
* :mod:`~telephony.ami_connection.connection`: :class:`AmiConnection`, which supervises the
  sessions: login, the wait for ``FullyBooted``, the resync, keepalive, reconnect with back-off.
"""

from telephony.ami_connection.config import (
    AmiActionLost,
    AmiActionTimeout,
    AmiConfig,
    AmiError,
    AmiNotConnected,
    AmiState,
)
from telephony.ami_connection.connection import AmiConnection
from telephony.ami_connection.session import AmiEvent, Headers, ListResult

__all__ = [
    "AmiActionLost",
    "AmiActionTimeout",
    "AmiConfig",
    "AmiConnection",
    "AmiError",
    "AmiEvent",
    "AmiNotConnected",
    "AmiState",
    "Headers",
    "ListResult",
]
