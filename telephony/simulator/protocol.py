"""How the fake manager speaks AMI with one client: the messages it writes, an action read
as Asterisk reads it, and a client's session (its login, and the event classes it wants)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from telephony.ami_codec import AmiFramer

Pairs = Iterable[tuple[str, str]]


def encode_message(pairs: Pairs) -> bytes:
    """One server-side message. (What we send *to* Asterisk goes through ``encode_action``.)"""
    return b"".join(f"{key}: {value}\r\n".encode() for key, value in pairs) + b"\r\n"


class ClientAction:
    """A received action; header lookup is case-insensitive and the first match wins, as in
    Asterisk's ``astman_get_header``."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs
        self.headers: dict[str, str] = {}
        for key, value in pairs:
            self.headers.setdefault(key, value)

    def get(self, key: str) -> str:
        folded = key.lower()
        return next((v for k, v in self.pairs if k.lower() == folded), "")

    @property
    def name(self) -> str:
        return self.get("Action")

    def variables(self) -> dict[str, str]:
        """``Variable`` headers, each split on commas as Asterisk does."""
        found: dict[str, str] = {}
        for key, value in self.pairs:
            if key.lower() != "variable":
                continue
            for item in value.split(","):
                name, sep, var_value = item.partition("=")
                if sep and name.strip():
                    found[name.strip()] = var_value
        return found

    def response(self, status: str, *extra: tuple[str, str], message: str | None = None) -> bytes:
        pairs = [("Response", status)]
        if action_id := self.get("ActionID"):
            pairs.append(("ActionID", action_id))
        pairs.extend(extra)
        if message is not None:
            pairs.append(("Message", message))
        return encode_message(pairs)


def parse_event_mask(value: str) -> frozenset[str] | None:
    """``Events:`` of a Login: None for every event, else the classes wanted."""
    text = value.strip().lower()
    if text in ("", "on", "yes", "true", "all"):
        return None
    if text in ("off", "no", "false"):
        return frozenset()
    return frozenset(part.strip() for part in text.split(","))


class ClientSession:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.raw = bytearray()
        self.framer = AmiFramer(expect_banner=False)
        self.logged_in = False
        self.event_mask: frozenset[str] | None = None

    @property
    def closed(self) -> bool:
        return self.writer.is_closing()

    def wants(self, event: Mapping[str, str]) -> bool:
        if not self.logged_in:
            return False
        if self.event_mask is None:
            return True
        classes = set(event.get("Privilege", "").split(",")) - {"all"}
        return bool(self.event_mask & classes)

    def send(self, data: bytes) -> None:
        if data and not self.closed:
            self.writer.write(data)

