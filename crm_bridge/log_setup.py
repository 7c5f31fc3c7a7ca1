"""Logging for the service's commands: one format, and phone numbers masked on every line."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from telephony.masking import NumberMaskingFilter

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def masked_handler(stream: TextIO) -> logging.Handler:
    """A stream handler whose every line has had its phone numbers masked."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(NumberMaskingFilter())
    return handler


def configure_logging(level: int = logging.INFO) -> None:
    """Send every logger, uvicorn's access log included, through :func:`masked_handler`.

    Like ``logging.basicConfig`` it does nothing when the root logger already has handlers (a
    host program, or a test runner, configured logging first).
    """
    logging.basicConfig(level=level, handlers=[masked_handler(sys.stderr)])
