"""The language a page is shown in: zh-CN or English, one at a time.

Labels are written once with both languages, ``<span class="zh">中文</span> <span
class="en">English</span>``; the page's ``<html lang>`` says which one shows (``base.html`` hides
the other with CSS), so a label keeps working whichever language is chosen. A label still in
the older style, ``中文 <span class="en">English</span>``, shows its Chinese alone in zh-CN; in
English, ``static/lang.js`` marks its bare Chinese text, also in what a page's script builds.
Text that cannot hold markup (``title``, ``placeholder``, ``aria-label``, the page ``<title>``)
is chosen on the server with the template global ``t("中文", "English")``. A quieter note shown
in both languages (a card number beside a name) is ``<span class="aside">``. A message the
server wrote in both languages, ``"中文 / English"`` (an error beside a field, a flash), is shown
through the filter ``|in_page_language``, which keeps the half the page wants (a label kept
whole as ``"中文 English"``, ``|label_in_page_language``); ``lang.js`` does
the same for a script's messages (``window.inPageLanguage``). It is applied to our own messages,
never to what a user typed.

Which language: the signed-in user's own choice (``users.language``), else the choice made on
this browser (the ``callbridge_lang`` cookie, set by the switch on the sign-in page), else the
browser's ``Accept-Language``; zh-CN when it names neither.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import pass_context
from starlette.requests import HTTPConnection

from crm_bridge.db.models import LANGUAGES

ZH, EN = LANGUAGES
LANGUAGE_COOKIE = "callbridge_lang"
LANGUAGE_NAMES = {ZH: "中文", EN: "English"}
"""How the switch names each language (each in itself, whatever the page shows)."""


def from_accept_language(header: str) -> str:
    """The first of zh or en the browser prefers (by ``q``), zh-CN when it names neither."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in ("zh", "en") and quality > 0:
            ranked.append((-quality, position, ZH if primary == "zh" else EN))
    return min(ranked)[2] if ranked else ZH


def language_of(conn: HTTPConnection, user: Any = None) -> str:
    """The language to show ``conn``'s page in; ``user`` is the signed-in user, if any."""
    chosen = getattr(user, "language", None)
    if chosen in LANGUAGES:
        return chosen
    cookie = conn.cookies.get(LANGUAGE_COOKIE)
    if cookie in LANGUAGES:
        return cookie
    return from_accept_language(conn.headers.get("accept-language", ""))


@pass_context
def page_language(context: Any) -> str:
    """The template global ``page_language()``: the language of the page being rendered."""
    request = context.get("request")
    if request is None:
        return ZH
    return language_of(request, context.get("user"))


@pass_context
def choose(context: Any, zh: str, en: str) -> str:
    """The template global ``t("中文", "English")``: the one the page's language wants."""
    return en if page_language(context) == EN else zh


_CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
_HALVES = re.compile(r"(?: |(?<=[\u3000-\u303f\uff00-\uffef]))/ (?=[A-Za-z0-9\"'(])")
"""Where a two-language message turns English: a `` / `` (or ``）/ ``, after a full-width
bracket) followed by what English starts with."""


def one_language(message: str, language: str) -> str:
    """The half of ``"中文 / English"`` that ``language`` wants; any other text unchanged.

    The split is at the last `` / `` with Chinese before it and English after it, so a slash
    in either half (a date, "and/or") and a Chinese name quoted in the English half both stay.
    """
    for split in reversed(list(_HALVES.finditer(message))):
        zh, en = message[: split.start()], message[split.end() :]
        if _CJK.search(zh):
            return en if language == EN else zh
    return message


_TURNS_ENGLISH = re.compile(r"(?<=[\u3000-\u303f\u3400-\u9fff\uff00-\uffef)]) (?=[A-Za-z])")
"""Where a label written ``中文 English`` turns English: a space after its Chinese (or after a
bracket closing it, ``登录时长(秒) Logged in (s)``), before a letter."""


def label_half(label: str, language: str) -> str:
    """The half of a label kept whole in one string (a KPI header is also the first row of its
    Excel export, an agent's state label is also in the agent page's JSON) that ``language``
    wants: the Chinese before the first such space, or the English after it; a label without
    both halves unchanged."""
    for turn in _TURNS_ENGLISH.finditer(label):
        if _CJK.search(label[: turn.start()]):
            return label[turn.end() :] if language == EN else label[: turn.start()]
    return label


@pass_context
def label_in_page_language(context: Any, label: Any) -> str:
    """The filter ``|label_in_page_language``: a ``中文 English`` label in the page's language."""
    return label_half(str(label), page_language(context))


@pass_context
def in_page_language(context: Any, message: Any) -> str:
    """The filter ``|in_page_language``: a server message in the page's language."""
    return one_language(str(message), page_language(context))


def install_language_globals(environment: Any) -> None:
    environment.globals.update(t=choose, page_language=page_language, language_names=LANGUAGE_NAMES)
    environment.filters["in_page_language"] = in_page_language
    environment.filters["label_in_page_language"] = label_in_page_language
