"""A fake Asterisk 22 manager on a real TCP socket, for the tests and the demo.

* :mod:`~telephony.simulator.protocol`: the messages it writes, an action as it reads one, a
  client's session;
* :mod:`~telephony.simulator.replay`: what replayed events leave up, a recorded outbound call
  rewritten to answer an ``Originate``, a recorded inbound call given another caller;
* :mod:`~telephony.simulator.server`: :class:`AmiSimulator`, the server: its actions, faults,
  and the replay of traces to every logged-in session.
"""

from telephony.simulator.replay import with_caller
from telephony.simulator.server import (
    AGENT_FIRST_TRACE,
    DEFAULT_TRACES_DIR,
    ORIGINATE_TRACES,
    AmiSimulator,
    always_answered,
)

__all__ = [
    "AGENT_FIRST_TRACE",
    "DEFAULT_TRACES_DIR",
    "ORIGINATE_TRACES",
    "AmiSimulator",
    "always_answered",
    "with_caller",
]
