"""An asyncio FastAGI server: Asterisk's ``AGI(agi://host:port/script,args)`` asks, a handler
answers with channel variables. The protocol only; what the answer is, is the handler's
business.

The exchange (Asterisk's ``res/res_agi.c``): Asterisk connects, sends ``agi_network: yes``,
``agi_network_script: <script>`` and the ``agi_*`` environment (``agi_channel``,
``agi_uniqueid``, ``agi_arg_1`` ...), one ``key: value`` line each, ending with a blank line.
Each command we send (``SET VARIABLE NAME "value"``) gets one reply line, ``200 result=1``;
``HANGUP`` instead tells the channel is gone. When we close the connection the AGI ends and the
dialplan goes on.

Why not panoramisk's ``fast_agi`` (1.4): its handler reads the environment with
``reader.read(100)`` until a blank line, with no time limit, no size limit, and spins for ever
on a peer that closes before the blank line (``read`` keeps returning ``b""``); its
``send_command`` waits for a reply without a limit; it decodes strictly outside its ``try``, so
a caller name that is not UTF-8 ends the handler with the socket left open; its route table
wraps plain functions with ``asyncio.coroutine``, gone from Python 3.11; and it formats
commands with no check, so a CR/LF in a value would inject a second command. Here every
connection has one deadline for the whole exchange, the environment is capped, and every
command is built by :func:`telephony.ami_codec.encode_agi_set_variable`.

The deadline on our side only keeps this server tidy. Asterisk itself waits for an AGI server
without any limit once connected (``run_agi`` polls with ``ms = -1``), so the dialplan must not
let the customer's channel wait on us (``dialplans/extensions_callbridge.conf``,
``callbridge-route``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from telephony.ami_codec import UnsafeAmiValue, encode_agi_set_variable

log = logging.getLogger(__name__)

MAX_ENVIRONMENT_BYTES = 16 * 1024
"""Far above what Asterisk sends (about 1 KiB: some thirty short lines)."""


class AgiProtocolError(Exception):
    """The peer is not speaking FastAGI as Asterisk does."""


@dataclass(frozen=True)
class AgiRequest:
    """One AGI call: the script of the URL, its arguments and the whole ``agi_*`` environment."""

    script: str
    arguments: tuple[str, ...]
    environment: Mapping[str, str] = field(repr=False)


Handler = Callable[[AgiRequest], Awaitable[Mapping[str, str]]]
"""Gives the channel variables to set for a request (empty: set nothing)."""


@dataclass
class AgiCounts:
    answered: int = 0
    """Requests whose variables were all set."""
    failed: int = 0
    """Requests that ended otherwise: timeout, protocol error, handler error, peer gone."""


def parse_environment(raw: bytes) -> AgiRequest:
    """The request in the environment block (without its blank line)."""
    text = raw.decode("utf-8", errors="replace")
    environment: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep or not key.startswith("agi_"):
            raise AgiProtocolError("an environment line is not 'agi_<key>: <value>'")
        environment[key] = value.strip()
    if environment.get("agi_network") != "yes":
        raise AgiProtocolError("no 'agi_network: yes': not a FastAGI request")
    arguments = []
    while f"agi_arg_{len(arguments) + 1}" in environment:
        arguments.append(environment[f"agi_arg_{len(arguments) + 1}"])
    script = environment.get("agi_network_script", "").split("?", 1)[0]
    return AgiRequest(script, tuple(arguments), environment)


class FastAgiServer:
    """Listens on ``host:port`` (port 0: any free one, see :attr:`port`); each connection gets
    ``deadline`` seconds for the whole exchange. ``on_answer`` hears the seconds from the
    connection's accept to its last reply, for each request answered."""

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        deadline: float = 0.5,
        on_answer: Callable[[float], None] | None = None,
    ) -> None:
        self._handler = handler
        self._host, self._port = host, port
        self._deadline = deadline
        self._on_answer = on_answer
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.counts = AgiCounts()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self._host, self._port, limit=MAX_ENVIRONMENT_BYTES
        )

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()
        self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._deadline):
                await self._exchange(reader, writer)
            self.counts.answered += 1
            if self._on_answer is not None:
                self._on_answer(time.perf_counter() - started)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                AgiProtocolError, UnsafeAmiValue) as exc:  # fmt: skip
            self.counts.failed += 1
            log.warning("FastAGI request not answered: %s", type(exc).__name__)
        except Exception:  # the handler's own fault: the dialplan goes on without us
            self.counts.failed += 1
            log.exception("FastAGI handler failed")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raw = await reader.readuntil(b"\n\n")
        request = parse_environment(raw[:-2])
        variables = await self._handler(request)
        commands = [encode_agi_set_variable(name, value) for name, value in variables.items()]
        for command in commands:
            # One at a time: res_agi reads its socket through stdio (fdopen, fgets) but waits
            # for it with poll(), so a second command already in stdio's buffer would never
            # be seen.
            writer.write(command)
            await writer.drain()
            reply = (await reader.readuntil(b"\n")).decode("utf-8", errors="replace").strip()
            if not reply.startswith("200"):
                raise AgiProtocolError("Asterisk refused a command or the channel hung up")
