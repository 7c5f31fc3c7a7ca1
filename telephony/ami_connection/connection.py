"""One supervised AMI connection to one Asterisk server.

What we take from panoramisk: :class:`panoramisk.message.Message` wraps every action response, so
callers get ``.success``, ``.action_id`` and case-insensitive access (``msg["message"]``,
``msg.message``), and a repeated response header comes as a list like panoramisk gives it.

What we do not take, and why this layer exists instead of ``panoramisk.Manager``:

* ``AMIProtocol`` decodes each TCP read on its own (a Chinese name split across reads is lost);
  we frame bytes first with :class:`~telephony.ami_codec.AmiFramer`.
* ``Manager`` resends actions left unanswered when the connection dropped. An ``Originate`` sent
  twice dials the customer twice, so here such an action fails with :class:`AmiActionLost` and
  is never resent.
* ``Manager`` reconnects after a fixed delay, with no resync; here the delay grows (capped, with
  jitter) and every login is followed by ``CoreShowChannels`` so the call tracker can rebuild the
  calls it missed while disconnected.
* Every byte we send goes through :func:`~telephony.ami_codec.encode_action`.

Event dicts handed to ``on_event`` carry Asterisk's header names (a repeated header keeps its
last value) plus ``"_rx"``: the ``time.time()`` at which the read that completed the frame
returned. Events reach ``on_event`` in wire order, from the one task that reads the socket.

Logs name events, actions and states only: AMI messages carry phone numbers and customer names,
and the login secret appears in no log line, exception message or repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import secrets
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from panoramisk.message import Message

from telephony.ami_codec import AmiProtocolError, EventSieve
from telephony.ami_connection.config import (
    AmiActionTimeout,
    AmiAuthFailed,
    AmiConfig,
    AmiError,
    AmiNotConnected,
    AmiState,
    sends_system_events,
)
from telephony.ami_connection.session import AmiEvent, AmiSession, Headers, ListResult

log = logging.getLogger(__name__)

_JITTER = 0.1
_MAX_BACKOFF_EXPONENT = 32
_LOGOFF_TIMEOUT = 2.0


class AmiConnection:
    """A supervised AMI client: login, resync, events, actions, keepalive, reconnect.

    ``await start()`` returns at once; a supervisor task connects, logs in, waits for
    ``FullyBooted`` (unless ``config.wait_fully_booted`` is off), runs ``CoreShowChannels``
    and calls ``on_resync(channels, started_at)`` (``started_at`` is the ``time.time()`` taken
    just before the request), then the state becomes ``connected``. After
    EOF, a socket error, ``Event: Shutdown`` or a missed ``Ping`` it reconnects with capped,
    jittered exponential back-off; the delays chosen are kept in :attr:`reconnect_delays`.

    Exceptions raised by ``on_event``/``on_state``/``on_resync`` are logged and swallowed.
    """

    def __init__(
        self,
        config: AmiConfig,
        on_event: Callable[[AmiEvent], None],
        on_state: Callable[[AmiState], None] | None = None,
        on_resync: Callable[[list[AmiEvent], float], None] | None = None,
        sieve: EventSieve | None = None,
    ) -> None:
        """With ``sieve``, events it does not keep are dropped unread (see
        :class:`~telephony.ami_codec.EventSieve`); ``on_event`` gets every other one."""
        self.config = config
        self._sieve = sieve
        self.last_error: str | None = None
        self.reconnect_delays: deque[float] = deque(maxlen=64)
        self._on_event = on_event
        self._on_state = on_state
        self._on_resync = on_resync
        self._state = AmiState.DISCONNECTED
        self._session: AmiSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._ids = itertools.count(1)
        self._id_token = secrets.token_hex(3)
        self._rng = random.Random()
        self._booted = asyncio.Event()

    def __repr__(self) -> str:
        return f"<AmiConnection {self.config.label} {self._where} {self._state}>"

    @property
    def state(self) -> AmiState:
        return self._state

    @property
    def banner(self) -> str | None:
        """The banner of the current session (``Asterisk Call Manager/11.0.0``)."""
        return self._session.framer.banner if self._session else None

    @property
    def _where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    # -- public API

    async def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._supervise(), name=f"ami-{self.config.label}")

    async def stop(self) -> None:
        """Log off (when logged in), close the socket and stop reconnecting."""
        self._stopping.set()
        session = self._session
        if session is not None and self._state is AmiState.CONNECTED:
            with contextlib.suppress(AmiError):
                await self._exchange(session, "Logoff", (), timeout=_LOGOFF_TIMEOUT)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._set_state(AmiState.STOPPED)

    async def send_action(
        self,
        action: str,
        headers: Headers = (),
        *,
        action_id: str | None = None,
        timeout: float | None = None,
    ) -> Message:
        """Send one action and return Asterisk's response.

        Raises :class:`~telephony.ami_codec.UnsafeAmiValue` (nothing sent),
        :class:`AmiNotConnected`, :class:`AmiActionTimeout` or :class:`AmiActionLost` (the
        action may have run; it is never resent).
        """
        session = self._connected_session()
        response, _ = await self._exchange(
            session, action, headers, action_id=action_id, timeout=timeout
        )
        return response

    async def send_list_action(
        self,
        action: str,
        headers: Headers = (),
        *,
        action_id: str | None = None,
        timeout: float | None = None,
    ) -> ListResult:
        """Send an EventList action; return its response and the events up to the ``Complete``
        one (excluded). An error response comes back with an empty list."""
        session = self._connected_session()
        return await self._exchange(
            session, action, headers, action_id=action_id, timeout=timeout, is_list=True
        )

    # -- plumbing shared by our own and the callers' actions

    def _connected_session(self) -> AmiSession:
        session = self._session
        if self._state is not AmiState.CONNECTED or session is None or not session.open:
            raise AmiNotConnected(f"AMI {self.config.label} is {self._state}")
        return session

    async def _exchange(
        self,
        session: AmiSession,
        action: str,
        headers: Headers,
        *,
        action_id: str | None = None,
        timeout: float | None = None,
        is_list: bool = False,
        on_complete: Callable[[Message, list[AmiEvent]], None] | None = None,
    ) -> ListResult:
        action_id = action_id or f"cb-{self._id_token}-{next(self._ids)}"
        timeout = self.config.action_timeout if timeout is None else timeout
        pending = session.request(
            action, action_id, headers, is_list=is_list, on_complete=on_complete
        )
        try:
            async with asyncio.timeout(timeout):
                return await pending.future
        except TimeoutError:
            raise AmiActionTimeout(
                f"{action} ({action_id}) got no answer within {timeout:g} s"
            ) from None
        finally:
            session.forget(action_id, pending)

    # -- supervisor

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            self._set_state(AmiState.CONNECTING)
            state, error, served = await self._attempt()
            if self._stopping.is_set():
                return
            failures = 0 if served else failures
            self._record_failure(state, error)
            delay = self._backoff_delay(failures)
            failures += 1
            self.reconnect_delays.append(delay)
            log.info("AMI %s: reconnecting in %.2f s", self.config.label, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()

    async def _attempt(self) -> tuple[AmiState, str, bool]:
        """One session; returns the state to report, why it ended, and whether it got as far
        as connected (which resets the back-off)."""
        try:
            reason = await self._run_session()
        except AmiAuthFailed as exc:
            return AmiState.AUTH_FAILED, str(exc), False
        except (OSError, ssl.SSLError, AmiError, AmiProtocolError) as exc:
            return AmiState.DISCONNECTED, self._describe(exc), False
        except Exception as exc:  # a bug must not end the supervisor: log it and reconnect
            log.exception("AMI %s: unexpected error in the session", self.config.label)
            return AmiState.DISCONNECTED, self._describe(exc), False
        return AmiState.DISCONNECTED, reason, True

    async def _run_session(self) -> str:
        """Connect, log in, resync and serve until the session ends; return why it ended.

        Raises when the session fails before it is connected."""
        reader, writer = await self._open()
        session = AmiSession(reader, writer, self._deliver_event, self._sieve)
        self._session = session
        session.start()
        try:
            self._booted.clear()
            await self._login(session)
            await self._wait_fully_booted(session)
            await self._resync(session)
            keepalive = asyncio.create_task(self._keepalive(session))
            try:
                return self._scrub(await session.wait_closed())
            finally:
                keepalive.cancel()
        finally:
            self._session = None
            await session.aclose()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        cfg = self.config
        context = (cfg.ssl_context or ssl.create_default_context()) if cfg.use_tls else None
        log.info("AMI %s: connecting to %s%s", cfg.label, self._where, " (TLS)" if context else "")
        try:
            async with asyncio.timeout(cfg.connect_timeout):
                return await asyncio.open_connection(cfg.host, cfg.port, ssl=context)
        except TimeoutError:
            raise AmiError(f"connect to {self._where} timed out") from None

    async def _login(self, session: AmiSession) -> None:
        cfg = self.config
        response, _ = await self._exchange(session, "Login", cfg._login_headers())
        if not response.success:
            refusal = self._scrub(str(response.get("Message", "")))
            raise AmiAuthFailed(f"login as {cfg.username!r} refused: {refusal}")
        log.info("AMI %s: logged in to %s (%s)", cfg.label, self._where, session.framer.banner)

    async def _wait_fully_booted(self, session: AmiSession) -> None:
        """Until Asterisk says it is ready: a login during its boot succeeds before the modules
        (queues, PJSIP) are loaded, and calls placed or listed then would fail or be missing."""
        cfg = self.config
        if not cfg.wait_fully_booted or not sends_system_events(cfg.events):
            return
        if self._booted.is_set():
            return
        log.info("AMI %s: logged in, waiting for FullyBooted", cfg.label)
        closed = asyncio.ensure_future(session.wait_closed())
        booted = asyncio.ensure_future(self._booted.wait())
        try:
            done, _ = await asyncio.wait(
                {closed, booted}, timeout=cfg.boot_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            closed.cancel()
            booted.cancel()
        if booted not in done:
            why = "the session ended" if closed in done else f"none within {cfg.boot_timeout:g} s"
            raise AmiError(
                f"no FullyBooted from Asterisk ({why}); the AMI user needs read=system"
            )

    async def _resync(self, session: AmiSession) -> None:
        started_at = time.time()

        def resynced(_response: Message, channels: list[AmiEvent]) -> None:
            # Runs in the reader, right after CoreShowChannelsComplete and before the next
            # frame: the tracker sees the snapshot exactly between the events around it.
            log.info("AMI %s: resync found %d channel(s)", self.config.label, len(channels))
            if self._on_resync is not None:
                self._call_safely("on_resync", self._on_resync, channels, started_at)
            self._set_state(AmiState.CONNECTED)

        response, _ = await self._exchange(
            session, "CoreShowChannels", (), is_list=True, on_complete=resynced
        )
        if not response.success:
            refusal = self._scrub(str(response.get("Message", "")))
            raise AmiError(
                f"CoreShowChannels refused ({refusal}); the AMI user needs write=reporting "
                "(or write=system)"
            )

    async def _keepalive(self, session: AmiSession) -> None:
        """Ping every ping_interval; a peer that stays silent past ping_timeout is dropped."""
        cfg = self.config
        while session.open:
            await asyncio.sleep(cfg.ping_interval)
            try:
                await self._exchange(session, "Ping", (), timeout=cfg.ping_timeout)
            except AmiActionTimeout:
                log.warning(
                    "AMI %s: no answer to Ping within %g s, dropping the connection",
                    cfg.label,
                    cfg.ping_timeout,
                )
                session.abort(f"no answer to Ping within {cfg.ping_timeout:g} s")
                return
            except AmiError:
                return

    def _backoff_delay(self, failures: int) -> float:
        cfg = self.config
        exponent = min(failures, _MAX_BACKOFF_EXPONENT)
        base = min(cfg.backoff_max, cfg.backoff_initial * 2**exponent)
        return min(cfg.backoff_max, base * (1 + self._rng.uniform(0, _JITTER)))

    # -- state, callbacks, errors

    def _record_failure(self, state: AmiState, error: str) -> None:
        self.last_error = error
        log.warning("AMI %s (%s): %s", self.config.label, self._where, error)
        self._set_state(state)

    def _set_state(self, state: AmiState) -> None:
        if state is self._state:
            return
        self._state = state
        log.info("AMI %s: %s", self.config.label, state)
        if self._on_state is not None:
            self._call_safely("on_state", self._on_state, state)

    def _deliver_event(self, event: AmiEvent) -> None:
        if event.get("Event") == "FullyBooted":
            self._booted.set()
        try:
            self._on_event(event)
        except Exception:
            log.exception(
                "AMI %s: on_event failed on a %s event", self.config.label, event.get("Event")
            )

    def _call_safely(self, what: str, callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("AMI %s: %s failed", self.config.label, what)

    def _describe(self, exc: BaseException) -> str:
        text = str(exc) or "no detail"
        return self._scrub(f"{type(exc).__name__}: {text}")

    def _scrub(self, text: str) -> str:
        """Remove the secret from text that came from outside (a peer could echo anything)."""
        secret = self.config.secret
        return text.replace(secret, "***") if secret else text
