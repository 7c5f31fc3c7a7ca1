"""Labels written ``中文 English`` in one string, shown in the page's language.

Some labels are kept whole because more than the page uses them: the KPI tables' headers are
also the first row of their Excel and CSV exports, an agent's state label is also in the
JSON the agent page polls. A page shows the half its language wants (the filter
``|label_in_page_language``); a server message ``"中文 / English"`` is the filter
``|in_page_language`` of :mod:`crm_bridge.web.language` instead.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import pass_context

from crm_bridge.web.language import EN, page_language

_CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
_TURNS_ENGLISH = re.compile(r"(?<=[\u3000-\u303f\u3400-\u9fff\uff00-\uffef)]) (?=[A-Za-z])")
"""Where a label turns English: a space after its Chinese (or after a bracket closing it,
``登录时长(秒) Logged in (s)``), before a letter."""


def label_half(label: str, language: str) -> str:
    """The half of ``label`` that ``language`` wants: the Chinese before the first such space,
    or the English after it; a label without both halves unchanged."""
    for turn in _TURNS_ENGLISH.finditer(label):
        if _CJK.search(label[: turn.start()]):
            return label[turn.end() :] if language == EN else label[: turn.start()]
    return label


@pass_context
def label_in_page_language(context: Any, label: Any) -> str:
    """The filter ``|label_in_page_language``."""
    return label_half(str(label), page_language(context))


def install_label_filter(environment: Any) -> None:
    environment.filters["label_in_page_language"] = label_in_page_language
