"""One supervised AMI connection to one Asterisk server (see :mod:`.connection`)."""

from telephony.ami_connection.connection import (
    AmiActionLost,
    AmiActionTimeout,
    AmiAuthFailed,
    AmiConfig,
    AmiConnection,
    AmiError,
    AmiEvent,
    AmiNotConnected,
    AmiState,
    Headers,
    ListResult,
)

__all__ = [
    "AmiActionLost",
    "AmiActionTimeout",
    "AmiAuthFailed",
    "AmiConfig",
    "AmiConnection",
    "AmiError",
    "AmiEvent",
    "AmiNotConnected",
    "AmiState",
    "Headers",
    "ListResult",
]
