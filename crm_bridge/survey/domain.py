"""What the survey is: its prompts, its scores, and the one answer the dialplan reads.

The dialplan (``callbridge-survey`` in ``dialplans/extensions_callbridge.conf``) asks the
bridge over FastAGI, ``AGI(agi://host:port/survey,<queue>)``, and reads one variable,
``CC_SURVEY_ANSWER``: ``off``, or ``on|<ask>|<invalid>|<thanks>``, each a sound name under
``callbridge/greetings/`` (the folder the campaign greetings are played from). The score
comes back as the ``CC_SURVEY_SCORE`` VarSet of the customer's own channel, which the call
tracker keeps on the call (``telephony/call_tracker/channels.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath

SCRIPT = "survey"
ANSWER_VARIABLE = "CC_SURVEY_ANSWER"
SOUND_FOLDER = "callbridge/greetings"
"""How Asterisk names the greetings folder (``<data_dir>/greetings``) among its sounds."""

PROMPT_KINDS: dict[str, str] = {
    "ask": "评分提问 / The question",
    "invalid": "按键有误 / A wrong key",
    "thanks": "致谢 / Thanks",
}
"""Each prompt the survey plays, in the order it may play them."""
DEFAULT_WORDS: dict[str, str] = {
    "ask": "请您为本次服务评分：非常满意请按5，满意请按4，一般请按3，"
    "不满意请按2，非常不满意请按1。",
    "invalid": "输入有误，请按1到5之间的数字。",
    "thanks": "感谢您的评价，再见。",
}
"""What the default prompts say (``crm_bridge/survey/sounds/``)."""

UNKNOWN_KIND = "没有这种提示音 / No such prompt"


def answer(on: bool, files: Mapping[str, str]) -> str:
    """The dialplan's answer: ``off``, or ``on`` and the sound of each prompt kind.

    ``files``: kind -> a file name in the greetings folder (``3f…e1.wav``)."""
    if not on:
        return "off"
    return "|".join(["on", *(f"{SOUND_FOLDER}/{PurePath(files[k]).stem}" for k in PROMPT_KINDS)])

