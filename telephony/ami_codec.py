"""AMI wire format: framing what Asterisk sends, encoding what we send.

What panoramisk does not do for us, and why this module exists:

* panoramisk's ``AMIProtocol.data_received`` decodes every TCP read on its own with
  ``errors="ignore"`` and only then looks for the blank line that ends a message. A UTF-8
  character split across two reads (a Chinese ``CallerIDName`` such as 张三) is silently lost.
  :class:`AmiFramer` frames on bytes first and decodes each complete frame once.
* panoramisk buffers an unterminated message without limit; :class:`AmiFramer` caps it.
* panoramisk's ``Action`` builds the request by string formatting with no checks, so a CR/LF in a
  value injects a second action. :func:`encode_action` is the one encoder every byte sent to
  Asterisk goes through, and it refuses anything Asterisk would misread.

Limits below come from Asterisk's ``main/manager.c`` (22.x): a session reads lines into a
1025-byte buffer (``inbuf``, 1024 usable bytes) and discards the whole message when a line and its
CR LF do not fit; a message holds at most 128 lines (``AST_MAX_MANHEADERS``); a ``Variable`` header
is split on commas, with quotes and backslashes consumed (``AST_STANDARD_APP_ARGS``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from itertools import repeat

BANNER_PREFIX = b"Asterisk Call Manager"
DEFAULT_MAX_FRAME_BYTES = 1024 * 1024

# manager.c get_input(): 1024 usable bytes must hold the line *and* its CR LF, so the longest
# line we may send is 1022 bytes; a 1023-byte line leaves the LF outside the buffer and Asterisk
# answers "Failed to parse message: line too long" (and drops the action).
MAX_LINE_BYTES = 1022
MAX_LINES = 128

_FRAME_END = re.compile(rb"\n\r?\n")
"""A blank line; the CR before the first LF is trimmed from the frame. Starting the pattern
with a literal lets the regex engine scan for it at C speed (10x faster than ``\r?\n\r?\n``)."""
_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_VARIABLE_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f]")
_REPEATABLE = frozenset({"variable"})
_NAMES_ONE_VARIABLE = frozenset({"getvar", "setvar"})
"""Actions whose ``Variable`` header is a bare name (Setvar's value has a header of its own);
in every other action (Originate) it is ``NAME=VALUE`` and may repeat."""
_VARIABLE_FORBIDDEN = (",", '"', "\\")


class AmiProtocolError(Exception):
    """The peer broke the AMI framing (no banner, or an endless message)."""


class UnsafeAmiValue(ValueError):
    """A header we were asked to send could be misread by Asterisk.

    The message names the header, never the value: values are phone numbers and secrets.
    """


# --------------------------------------------------------------------------- framing


def parse_frame(raw: bytes) -> list[tuple[str, str]]:
    """Decode one complete frame (without its blank line) into ordered ``(key, value)`` pairs.

    The frame is decoded as a whole (UTF-8, undecodable bytes become U+FFFD, the frame is kept).
    ``Key: Value`` splits on the first ``": "``; ``Key:`` gives ``""``; lines with no colon (a
    repeated banner, binary junk) are skipped.
    """
    pairs: list[tuple[str, str]] = []
    for line in raw.decode("utf-8", errors="replace").split("\n"):
        line = line.removesuffix("\r")
        if ": " in line:
            key, value = line.split(": ", 1)
        elif line.endswith(":"):
            key, value = line[:-1], ""
        else:
            continue
        if key:
            pairs.append((key, value))
    return pairs


def parse_frame_dict(raw: bytes) -> dict[str, str]:
    """``parse_frame`` as a dict (a repeated header keeps its last value).

    The hot path of every event: one decode, one split, and for a frame whose every line holds
    ``": "`` (nearly all that Asterisk writes) one ``dict`` built in C from ``str.split``; any
    other frame takes the line-by-line reading, which gives the same dict.
    """
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
    lines = text.split("\n")
    if "\r" not in text:
        count = len(lines)
        try:
            headers = dict(map(str.split, lines, repeat(": ", count), repeat(1, count)))
        except ValueError:  # a line without ": "
            pass
        else:
            headers.pop("", None)
            return headers
    headers = {}
    for line in lines:
        key, sep, value = line.partition(": ")
        if sep:
            if key:
                headers[key] = value.removesuffix("\r")
        elif line.endswith(":") and len(line) > 1:
            headers[line[:-1]] = ""
    return headers


class EventSieve:
    """Which event frames are worth parsing, judged on their raw bytes.

    A busy Asterisk sends many events the bridge never reads (CEL, Bridge*, DeviceStateChange,
    RTCP, VarSets of variables nobody watches): 70% of those in
    ``telephony/traces/sip/load_50_concurrent.ami``. During a burst of calls, parsing them was
    most of what the event loop did, so they are dropped on their first line. Always kept:
    frames that are not events (action responses), events answering an action (``ActionID``),
    events whose first line is not ``Event:``, and ``Shutdown``/``FullyBooted``.
    """

    _ALWAYS = frozenset({b"Shutdown", b"FullyBooted"})

    def __init__(self, events: Iterable[str], variables: Iterable[str] = ()) -> None:
        """``events``: the event names read; of ``VarSet`` (when listed), only the
        ``variables`` named."""
        self._events = frozenset(name.encode() for name in events) | self._ALWAYS
        self._variables = frozenset(name.encode() for name in variables)
        self.events_judged = 0
        """Event frames put to :meth:`keeps`, kept or not."""

    def keeps(self, raw: bytes) -> bool:
        if not raw.startswith(b"Event: "):
            return True
        self.events_judged += 1
        end = raw.find(b"\n", 7)
        name = (raw[7:] if end < 0 else raw[7:end]).removesuffix(b"\r")
        if name in self._events and (name != b"VarSet" or self._watched_variable(raw)):
            return True
        return b"\nActionID:" in raw

    def _watched_variable(self, raw: bytes) -> bool:
        start = raw.find(b"\nVariable: ")
        return start < 0 or _first_value(raw, start + 11) in self._variables


def _first_value(raw: bytes, start: int) -> bytes:
    """The bytes from ``start`` to the end of that line (CR dropped)."""
    end = raw.find(b"\n", start)
    return (raw[start:] if end < 0 else raw[start:end]).removesuffix(b"\r")


class AmiFramer:
    """Incremental AMI reader: bytes in, complete messages out, in wire order.

    ``feed(data)`` returns the messages completed by ``data`` as dicts (a repeated header keeps
    its last value); ``feed_raw(data)`` returns the same frames as bytes for callers that need
    every repeated header (``parse_frame``) or the exact wire bytes.

    With ``expect_banner`` (the client side), the first line must be ``Asterisk Call Manager/x.y.z``
    and is exposed as :attr:`banner`; it has no blank line after it.
    """

    def __init__(
        self, *, expect_banner: bool = True, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    ) -> None:
        self.banner: str | None = None
        self._awaiting_banner = expect_banner
        self._max = max_frame_bytes
        self._buf = bytearray()
        self._scan_from = 0

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back, waiting for the rest."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[dict[str, str]]:
        frames = (parse_frame_dict(raw) for raw in self.feed_raw(data))
        return [headers for headers in frames if headers]

    def feed_raw(self, data: bytes) -> list[bytes]:
        self._buf += data
        if self._awaiting_banner and not self._take_banner():
            self._check_size()
            return []
        frames = self._split_frames()
        self._check_size()
        return frames

    def _take_banner(self) -> bool:
        """Consume the banner line once it is complete; False while it is still incomplete."""
        probe = bytes(self._buf[: len(BANNER_PREFIX)])
        if not BANNER_PREFIX.startswith(probe):
            self._buf.clear()
            raise AmiProtocolError("peer did not greet as an Asterisk manager (no banner)")
        end = self._buf.find(b"\n")
        if end < 0:
            return False
        self.banner = self._buf[:end].decode("utf-8", errors="replace").rstrip("\r")
        del self._buf[: end + 1]
        self._awaiting_banner = False
        return True

    def _split_frames(self) -> list[bytes]:
        buf = self._buf
        if _FRAME_END.search(buf, self._scan_from) is None:
            self._scan_from = max(0, len(buf) - 3)
            return []
        if buf.count(b"\n") == buf.count(b"\r\n"):
            # Every line ends in CR LF, as Asterisk writes them: the only blank line is
            # CR LF CR LF, and one C-speed split finds what the pattern would, frame by frame.
            *frames, rest = bytes(buf).split(b"\r\n\r\n")
            if frames:
                self._buf = buf = bytearray(rest)
            self._scan_from = max(0, len(buf) - 3)
            return frames
        return self._split_frames_by_pattern()

    def _split_frames_by_pattern(self) -> list[bytes]:
        """Frames ended by any blank line, bare LFs included."""
        frames: list[bytes] = []
        start = 0
        pos = self._scan_from
        buf = self._buf
        while match := _FRAME_END.search(buf, pos):
            end = match.start()
            if end > start and buf[end - 1] == 0x0D:
                end -= 1
            frames.append(bytes(buf[start:end]))
            start = pos = match.end()
        del self._buf[:start]
        # A terminator may straddle the next read: rescan the last 3 bytes, not the whole frame.
        self._scan_from = max(0, len(self._buf) - 3)
        return frames

    def _check_size(self) -> None:
        if len(self._buf) > self._max:
            size = len(self._buf)
            self._buf.clear()
            self._scan_from = 0
            raise AmiProtocolError(
                f"incomplete AMI message exceeds {self._max} bytes ({size} buffered)"
            )


# --------------------------------------------------------------------------- encoding


def _as_pairs(
    headers: Iterable[tuple[str, str | int]] | Mapping[str, str | int],
) -> list[tuple[str, str | int]]:
    return list(headers.items() if isinstance(headers, Mapping) else headers)


def _check_text(what: str, text: str) -> None:
    if _CONTROL.search(text):
        raise UnsafeAmiValue(f"{what} contains a control character (CR, LF, NUL...)")


def _check_variable(action: str, key: str, value: str) -> None:
    if action.lower() in _NAMES_ONE_VARIABLE:
        if not _VARIABLE_NAME.match(value):
            raise UnsafeAmiValue(f"header {key!r} of {action} must be a NAME of [A-Za-z0-9_]")
        return
    name, sep, var_value = value.partition("=")
    if not sep or not _VARIABLE_NAME.match(name):
        raise UnsafeAmiValue(f"header {key!r} must be NAME=VALUE with NAME made of [A-Za-z0-9_]")
    if any(ch in var_value for ch in _VARIABLE_FORBIDDEN):
        raise UnsafeAmiValue(
            f"header {key!r} value contains a comma, quote or backslash "
            "(Asterisk would split or rewrite it)"
        )


def _encode_line(key: str, value: str | int, action: str = "") -> bytes:
    if not isinstance(key, str) or not _KEY.match(key):
        raise UnsafeAmiValue(f"header name {key!r} is not made of [A-Za-z0-9_-]")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise UnsafeAmiValue(f"header {key!r} value must be a string or an integer")
    text = str(value)
    _check_text(f"header {key!r} value", text)
    if key.lower() in _REPEATABLE:
        _check_variable(action, key, text)
    try:
        line = f"{key}: {text}".encode()
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 for it, so nothing sane to send
        raise UnsafeAmiValue(f"header {key!r} value is not valid Unicode text") from None
    if len(line) > MAX_LINE_BYTES:
        raise UnsafeAmiValue(
            f"header {key!r} line is {len(line)} bytes; Asterisk drops lines over {MAX_LINE_BYTES}"
        )
    return line + b"\r\n"


def _check_repeats(action: str, pairs: list[tuple[str, str | int]]) -> None:
    repeatable = frozenset() if action.lower() in _NAMES_ONE_VARIABLE else _REPEATABLE
    seen: set[str] = set()
    for key, _ in pairs:
        folded = key.lower() if isinstance(key, str) else key
        if folded == "action":
            raise UnsafeAmiValue("header 'Action' is given by the action argument")
        if folded in seen and folded not in repeatable:
            raise UnsafeAmiValue(f"header {key!r} given twice (Asterisk would read only the first)")
        seen.add(folded)


def encode_action(
    action: str,
    headers: Iterable[tuple[str, str | int]] | Mapping[str, str | int] = (),
) -> bytes:
    """Encode one AMI action; the only way bytes reach Asterisk.

    ``headers`` is a mapping or a list of pairs (``Variable`` may repeat, nothing else may).
    Raises :class:`UnsafeAmiValue` for a key outside ``[A-Za-z0-9_-]``, a control character
    (anything below 0x20 but TAB) in a key or value, a line over :data:`MAX_LINE_BYTES` bytes of
    UTF-8, more than :data:`MAX_LINES` lines, or a ``Variable`` that is not ``NAME=VALUE`` with a
    value free of commas, quotes and backslashes (in ``Getvar`` and ``Setvar``: one bare
    ``NAME``).
    """
    if not isinstance(action, str) or not _KEY.match(action):
        raise UnsafeAmiValue("action name is not made of [A-Za-z0-9_-]")
    pairs = _as_pairs(headers)
    if len(pairs) + 1 > MAX_LINES:
        raise UnsafeAmiValue(f"{len(pairs) + 1} lines; Asterisk reads at most {MAX_LINES}")
    _check_repeats(action, pairs)
    lines = [_encode_line("Action", action)]
    lines.extend(_encode_line(key, value, action) for key, value in pairs)
    return b"".join(lines) + b"\r\n"


# --------------------------------------------------------------------------- AGI commands

AGI_MAX_COMMAND_BYTES = 2047
"""res_agi reads a command into ``AGI_BUF_LEN`` (2048) bytes, the LF included."""
_AGI_FORBIDDEN = ('"', "\\")


def encode_agi_set_variable(name: str, value: str) -> bytes:
    """``SET VARIABLE NAME "value"`` for a FastAGI session: the AGI side of this module.

    res_agi splits a command on blanks, takes a double-quoted word as one and consumes
    backslashes (``parse_args``); a CR or LF would end the command and start another. So the
    name must be made of ``[A-Za-z0-9_]`` (no function such as ``SHARED(...)``: a FastAGI server
    sets plain variables on its own channel) and the value may hold no control character,
    quote or backslash. Raises :class:`UnsafeAmiValue`, naming the variable, never the value.
    """
    if not isinstance(name, str) or not _VARIABLE_NAME.match(name):
        raise UnsafeAmiValue("AGI variable name is not made of [A-Za-z0-9_]")
    if not isinstance(value, str):
        raise UnsafeAmiValue(f"AGI variable {name!r} value must be a string")
    _check_text(f"AGI variable {name!r} value", value)
    if any(ch in value for ch in _AGI_FORBIDDEN):
        raise UnsafeAmiValue(f"AGI variable {name!r} value contains a quote or backslash")
    try:
        command = f'SET VARIABLE {name} "{value}"\n'.encode()
    except UnicodeEncodeError:
        raise UnsafeAmiValue(f"AGI variable {name!r} value is not valid Unicode text") from None
    if len(command) > AGI_MAX_COMMAND_BYTES:
        raise UnsafeAmiValue(f"AGI variable {name!r}: the command is {len(command)} bytes")
    return command
