"""A fake Asterisk manager on a real TCP socket, for the tests and the demo (see :mod:`.server`)."""

from telephony.simulator.server import (
    DEFAULT_TRACES_DIR,
    ORIGINATE_TRACES,
    AmiSimulator,
    always_answered,
)

__all__ = ["DEFAULT_TRACES_DIR", "ORIGINATE_TRACES", "AmiSimulator", "always_answered"]
