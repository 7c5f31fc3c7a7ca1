"""Logging for the service's commands: one format, phone numbers masked on every line, and
the access log without the values of query parameters."""

from __future__ import annotations

import logging
import sys
from typing import TextIO
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from telephony.masking import NumberMaskingFilter, mask_numbers_in_text

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = "uvicorn.access"
HIDDEN_VALUE = "*"


def target_for_log(target: str) -> str:
    """A request target as the access log keeps it: the path (URL-decoded, digits masked,
    anything unprintable escaped) and the names of its query parameters, never their values.

    A search sends a number or a name in any form (``138+0013+8000``, ``138%200013%208000``,
    ``0086-138-0013-8000``, ``%E5%BC%A0%E4%B8%89``); no masking of values could know every
    form, so no value is kept: ``/supervisor/calls?number=*&customer=*``.
    """
    parts = urlsplit(target)
    path = quote(mask_numbers_in_text(unquote(parts.path)), safe="/*-._~!$&'()+,;=:@")
    names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
    query = "&".join(f"{quote(name, safe='')}={HIDDEN_VALUE}" for name in names)
    return f"{path}?{query}" if query else path


class AccessLogFilter(logging.Filter):
    """Rewrites the request target of uvicorn's access log records (:func:`target_for_log`).

    uvicorn logs ``'%s - "%s %s HTTP/%s" %d'`` with the client, method, target, version and
    status as arguments; only the target changes."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.name == ACCESS_LOGGER and isinstance(args, tuple) and len(args) == 5:
            record.args = (args[0], args[1], target_for_log(str(args[2])), *args[3:])
        return True


def masked_handler(stream: TextIO) -> logging.Handler:
    """A stream handler whose every line has had its query values dropped and its phone
    numbers masked."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(AccessLogFilter())
    handler.addFilter(NumberMaskingFilter())
    return handler


def configure_logging(level: int = logging.INFO) -> None:
    """Send every logger, uvicorn's access log included, through :func:`masked_handler`.

    Like ``logging.basicConfig`` it does nothing when the root logger already has handlers (a
    host program, or a test runner, configured logging first).
    """
    logging.basicConfig(level=level, handlers=[masked_handler(stream=sys.stderr)])
