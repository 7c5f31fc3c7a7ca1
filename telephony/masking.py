"""Masking of phone numbers and names for log lines.

Every log line that mentions a number goes through :func:`mask_number` (``138****8000``); an AMI
message that must be logged for diagnosis goes through :func:`redact_frame_for_log`, which drops
the login secret, masks every long digit run and hides caller names.
``crm_bridge.customers.numbers.mask_phone`` is this rule too (it returns ``""`` for ``None``
where this returns ``"-"``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

import phonenumbers

MIN_MASKED_DIGITS = 8

_SEPARATORS = re.compile(r"[\s\-.()（）/]")
_DIALABLE = re.compile(r"\+?\d+")
_DIGIT_RUN = re.compile(rf"\d{{{MIN_MASKED_DIGITS},}}")
# Asterisk ids (Uniqueid 1795346712.954) and timestamps are not personal data: keep them readable.
_ID_OR_TIME = re.compile(r"^\d+\.\d+$")
_QUOTED = re.compile(r'"[^"]*"')
_SECRET_KEYS = frozenset({"secret", "key"})
_NAME_KEY = re.compile(r"(?:idname|linename)$", re.IGNORECASE)
_FULL_CALLERID_KEYS = frozenset({"callerid"})


def _mask_digits(digits: str) -> str:
    """Keep 3 leading and 4 trailing digits of 8 or more: ``13800138000`` -> ``138****8000``."""
    if len(digits) < MIN_MASKED_DIGITS:
        return digits
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def _mask_international(compact: str) -> str:
    try:
        parsed = phonenumbers.parse(compact, None)
    except phonenumbers.NumberParseException:
        return "+" + _mask_digits(compact[1:])
    national = phonenumbers.national_significant_number(parsed)
    return f"+{parsed.country_code} {_mask_digits(national)}"


def mask_number(value: str | None) -> str:
    """Mask a phone number for a log line: ``13800138000`` -> ``138****8000``.

    An E.164 number keeps its country code apart (``+8613800138000`` -> ``+86 138****8000``);
    separators are ignored (``138-0013-8000``). Extensions and other values with fewer than 8
    digits come back unchanged; ``None`` gives ``"-"``. Inside other text
    (``PJSIP/13900000001@carrier``) every run of 8 or more digits is masked.
    """
    if value is None:
        return "-"
    compact = _SEPARATORS.sub("", value)
    if not _DIALABLE.fullmatch(compact):
        return _DIGIT_RUN.sub(lambda match: _mask_digits(match.group()), value)
    if len(compact.lstrip("+")) < MIN_MASKED_DIGITS:
        return value
    if compact.startswith("+"):
        return _mask_international(compact)
    return _mask_digits(compact)


def _redact_value(key: str, value: str) -> str:
    if _NAME_KEY.search(key):
        return value if value in ("", "<unknown>") else "***"
    if key.lower() in _FULL_CALLERID_KEYS:
        return mask_number(_QUOTED.sub('"***"', value))
    if _ID_OR_TIME.match(value):
        return value
    return mask_number(_QUOTED.sub('"***"', value))


def redact_frame_for_log(
    headers: Mapping[str, object] | Iterable[tuple[str, object]],
) -> dict[str, str]:
    """A copy of an AMI message that is safe to log.

    ``Secret``/``Key`` are removed, caller names (``CallerIDName``, ``ConnectedLineName``,
    ``DestCallerIDName``...) become ``***``, quoted names inside values (``AppData: Inbound call
    from "张三" <13800138000>``) are hidden and every run of 8+ digits is masked. Uniqueids and
    timestamps stay readable. Non-string values (the connection's ``_rx`` float) are kept as text.
    """
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    safe: dict[str, str] = {}
    for key, value in pairs:
        if key.lower() in _SECRET_KEYS:
            continue
        text = value if isinstance(value, str) else str(value)
        safe[key] = _redact_value(key, text)
    return safe


# A run of 8+ digits (optionally after +) that is not part of a dotted id such as a Uniqueid
# (1795346712.954) or a timestamp: those carry no personal data and must stay searchable.
_FREE_TEXT_NUMBER = re.compile(r"(?<![\d.])\+?\d{8,}(?![\d.])")


def mask_numbers_in_text(text: str) -> str:
    """Mask every phone-number-like digit run inside free text (``?phone=13800138000``)."""
    return _FREE_TEXT_NUMBER.sub(lambda match: mask_number(match.group()), text)


class NumberMaskingFilter(logging.Filter):
    """A handler filter that masks numbers in the finished message of every record.

    Code masks what it logs on purpose (:func:`mask_number`); this filter catches what it does
    not control: a library's message, an access log line with a number in its query string, an
    exception text quoting a value.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_numbers_in_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_text is None:
            traceback_text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = mask_numbers_in_text(traceback_text)
        elif record.exc_text:
            record.exc_text = mask_numbers_in_text(record.exc_text)
        return True
