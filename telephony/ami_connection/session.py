"""One TCP session to Asterisk: the framing of what it reads, and the bookkeeping of actions.

The session's one reader task frames the bytes (:class:`~telephony.ami_codec.AmiFramer`),
drops what the sieve does not keep, hands events on in wire order, and matches each answer
(and a list action's events, up to its ``Complete``) to the action waiting for it. When the
session ends, every action still waiting fails with :class:`AmiActionLost`: it may have run
on Asterisk, and it is never resent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from panoramisk.message import Message

from telephony.ami_codec import (
    AmiFramer,
    AmiProtocolError,
    EventSieve,
    encode_action,
    parse_frame,
    parse_frame_dict,
)
from telephony.ami_connection.config import AmiActionLost, AmiNotConnected

log = logging.getLogger(__name__)

Headers = Iterable[tuple[str, str | int]] | Mapping[str, str | int]
AmiEvent = dict[str, Any]
ListResult = tuple[Message, list[AmiEvent]]

READ_SIZE = 64 * 1024
_LIST_ENDS = ("complete", "cancelled")  # astman_send_list_complete / a list cut short


@dataclass(eq=False)
class _Pending:
    """An action waiting for its answer (and, for a list action, its events)."""

    action: str
    future: asyncio.Future[ListResult]
    is_list: bool = False
    response: Message | None = None
    items: list[AmiEvent] = field(default_factory=list)
    on_complete: Callable[[Message, list[AmiEvent]], None] | None = None


def _message(pairs: list[tuple[str, str]]) -> Message:
    """A panoramisk Message; a repeated header becomes a list, as panoramisk does it."""
    headers: dict[str, str | list[str]] = {}
    for key, value in pairs:
        if key not in headers:
            headers[key] = value
        else:
            previous = headers[key]
            headers[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
    return Message(headers)


class AmiSession:
    """One TCP session: reads and dispatches frames, matches answers to pending actions."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        deliver: Callable[[AmiEvent], None],
        sieve: EventSieve | None = None,
    ) -> None:
        self.framer = AmiFramer()
        self._keeps = sieve.keeps if sieve is not None else None
        self.pending: dict[str, _Pending] = {}
        self.end_reason: str | None = None
        self._reader = reader
        self._writer = writer
        self._deliver = deliver
        self._task: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return self.end_reason is None and not self._writer.is_closing()

    def start(self) -> None:
        self._task = asyncio.create_task(self._read_loop())

    async def wait_closed(self) -> str:
        assert self._task is not None
        await asyncio.shield(self._task)
        return self.end_reason or "session ended"

    def request(
        self,
        action: str,
        action_id: str,
        headers: Headers,
        *,
        is_list: bool = False,
        on_complete: Callable[[Message, list[AmiEvent]], None] | None = None,
    ) -> _Pending:
        pairs = list(headers.items() if isinstance(headers, Mapping) else headers)
        if any(isinstance(k, str) and k.lower() == "actionid" for k, _ in pairs):
            raise ValueError("ActionID is set by the connection; pass action_id= instead")
        data = encode_action(action, [("ActionID", action_id), *pairs])
        if not self.open:
            raise AmiNotConnected("the AMI session is closed")
        if action_id in self.pending:
            raise ValueError(f"ActionID {action_id!r} is already waiting for an answer")
        future: asyncio.Future[ListResult] = asyncio.get_running_loop().create_future()
        pending = _Pending(action, future, is_list=is_list, on_complete=on_complete)
        self.pending[action_id] = pending
        self._writer.write(data)
        log.debug("sent %s (%s)", action, action_id)
        return pending

    def forget(self, action_id: str, pending: _Pending) -> None:
        if self.pending.get(action_id) is pending:
            del self.pending[action_id]

    def abort(self, reason: str) -> None:
        """Drop the socket at once (a half-open peer would never complete a clean close)."""
        self._end(reason)
        self._writer.transport.abort()

    async def aclose(self) -> None:
        self._end("closed by us")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self._writer.wait_closed()

    # -- reading

    async def _read_loop(self) -> None:
        try:
            while self.end_reason is None:
                data = await self._reader.read(READ_SIZE)
                if not data:
                    self._end("connection closed by Asterisk")
                    break
                self._handle(data, time.time())
        except AmiProtocolError as exc:
            self._end(f"AMI protocol error: {exc}")
        except (OSError, ssl.SSLError) as exc:
            self._end(f"{type(exc).__name__}: {exc}")
        finally:
            self._fail_pending()
            self._writer.close()

    def _handle(self, data: bytes, rx: float) -> None:
        keeps = self._keeps
        for raw in self.framer.feed_raw(data):
            if keeps is not None and not keeps(raw):
                continue
            frame: AmiEvent = parse_frame_dict(raw)
            if not frame:
                continue
            if self._dispatch(raw, frame, rx):
                self._end("Asterisk is shutting down (Event: Shutdown)")
                return

    def _dispatch(self, raw: bytes, frame: AmiEvent, rx: float) -> bool:
        """Route one frame; True when it announced Asterisk's shutdown.

        Events, nearly every frame, are read as a dict in one pass (``parse_frame_dict``); an
        action's response, whose headers may repeat, is read again keeping every one.
        ``Event`` is tested first: an OriginateResponse event also has a ``Response`` header.
        """
        if "Event" not in frame:
            if "Response" in frame:
                self._on_response(parse_frame(raw), frame.get("ActionID", ""))
            else:
                log.debug("AMI frame with neither Event nor Response ignored")
            return False
        frame["_rx"] = rx
        pending = self.pending.get(frame.get("ActionID", ""))
        if pending is not None and pending.is_list and pending.response is not None:
            self._on_list_item(frame["ActionID"], pending, frame)
            return False
        self._deliver(frame)
        return frame["Event"] == "Shutdown"

    def _on_response(self, pairs: list[tuple[str, str]], action_id: str) -> None:
        pending = self.pending.get(action_id)
        if pending is None:
            log.debug("answer to an action we no longer wait for dropped")
            return
        message = _message(pairs)
        if pending.is_list and message.success and message.eventlist.lower() == "start":
            pending.response = message
            return
        self._complete(action_id, pending, message, [])

    def _on_list_item(self, action_id: str, pending: _Pending, event: AmiEvent) -> None:
        if str(event.get("EventList", "")).lower() in _LIST_ENDS:
            assert pending.response is not None
            self._complete(action_id, pending, pending.response, pending.items)
        else:
            pending.items.append(event)

    def _complete(
        self, action_id: str, pending: _Pending, message: Message, items: list[AmiEvent]
    ) -> None:
        del self.pending[action_id]
        if pending.future.done():
            return
        if pending.on_complete is not None and message.success:
            pending.on_complete(message, items)
        pending.future.set_result((message, items))

    def _end(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason

    def _fail_pending(self) -> None:
        pending, self.pending = self.pending, {}
        for action_id, item in pending.items():
            if not item.future.done():
                item.future.set_exception(
                    AmiActionLost(f"{item.action} ({action_id}): connection lost before the answer")
                )

