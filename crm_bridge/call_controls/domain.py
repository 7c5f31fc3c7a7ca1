"""What an agent may do to their own answered call, decided without any I/O.

The controls, and the states of the call they move between (``talking`` when none is set):

==========  =====================  ===========================================
control     allowed when           the call is then
==========  =====================  ===========================================
hangup      talking                ended for the agent
hold        talking                ``held`` (the customer hears music)
resume      held                   talking
transfer    talking, held          with the target (blind): gone from the agent
consult     talking, held          ``consulting`` the target (attended)
complete    consulting             with the target: gone from the agent
cancel      consulting             talking again, the target's leg hung up
==========  =====================  ===========================================

A transfer target is a queue of ``transfer_queues``, an agent's extension (``1XXX``, the
pattern of the ``callbridge-transfer`` context, not the agent's own) or a phone number that
normalises to a valid number off the do-not-call list; anything else is refused with a zh-CN /
English message for the field, and nothing is sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

CONTROLS = {
    "hangup": "挂断 Hang up",
    "hold": "保持 Hold",
    "resume": "恢复 Resume",
    "transfer": "转接 Transfer",
    "consult": "咨询转接 Attended transfer",
    "complete": "完成转接 Complete transfer",
    "cancel": "取消转接 Cancel transfer",
}
STATES = {"talking": "通话中 Talking", "held": "保持中 On hold",
          "consulting": "转接中 Transferring", "transferred": "已转接 Transferred",
          "ended": "已挂断 Hung up"}  # fmt: skip
ALLOWED_IN = {
    "hangup": {"talking"},
    "hold": {"talking"},
    "resume": {"held"},
    "transfer": {"talking", "held"},
    "consult": {"talking", "held"},
    "complete": {"consulting"},
    "cancel": {"consulting"},
}
NEXT_STATE = {"hangup": "ended", "hold": "held", "resume": "talking", "transfer": "transferred",
              "consult": "consulting", "complete": "transferred", "cancel": "talking"}  # fmt: skip
AGENT_EXTENSION = re.compile(r"^1[0-9]{3}$")
"""The agent extensions the ``callbridge-transfer`` context dials (``_1XXX``)."""

UNKNOWN_CONTROL = "未知的操作 / Unknown call control"
NO_SUCH_CALL = "没有您正在接听的这通电话 / You are not on this call"
CHANNELS_UNKNOWN = "找不到这通电话的通话通道 / The channels of this call are not known"
CONTROL_UNDER_WAY = "上一个操作还在进行 / The last control of this call is still under way"
NO_TARGET_LEG = "转接目标还没有接听 / The transfer target has not answered yet"
NOT_STARTED = "通话控制未启用 / Call controls are not running"
UNKNOWN_KIND = "请选择队列、坐席或号码 / Choose a queue, an agent or a number"
NOT_A_QUEUE = "没有这个可转接的队列 / No such queue to transfer to"
NOT_AN_AGENT = "坐席分机应为 4 位数字，以 1 开头 / An agent extension is 4 digits starting with 1"
OWN_EXTENSION = "不能转接给自己 / You cannot transfer to yourself"
NOT_A_NUMBER = "电话号码无效 / Not a valid phone number"
ON_DO_NOT_CALL = "该号码在禁止呼叫名单中 / This number is on the do-not-call list"


def not_now(control: str, state: str) -> str:
    zh, en = CONTROLS[control].split(" ", 1)
    szh, sen = STATES[state].split(" ", 1)
    return f"当前{szh}，不能{zh} / Cannot {en.lower()} now: {sen.lower()}"


class ControlRefused(Exception):
    """A control that is not allowed; ``status`` is the HTTP status, ``field`` the form field
    the message belongs beside (None: the whole card)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Target:
    """An allowed transfer target: its kind, what the agent sees, and the dialplan extension."""

    kind: str
    label: str
    exten: str


def check_control(control: str, state: str) -> None:
    if control not in CONTROLS:
        raise ControlRefused(400, UNKNOWN_CONTROL)
    if state not in ALLOWED_IN[control]:
        raise ControlRefused(409, not_now(control, state))


def queue_target(name: str, queues: Iterable[str]) -> Target:
    if name not in set(queues):
        raise ControlRefused(400, NOT_A_QUEUE, "target")
    return Target("queue", f"队列 {name} / queue {name}", f"queue-{name}")


def agent_target(extension: str, own: Iterable[str]) -> Target:
    if not AGENT_EXTENSION.match(extension):
        raise ControlRefused(400, NOT_AN_AGENT, "target")
    if extension in set(own):
        raise ControlRefused(400, OWN_EXTENSION, "target")
    return Target("agent", f"坐席 {extension} / agent {extension}", extension)


def number_target(masked: str, outside_exten: str) -> Target:
    """A number already checked (valid, not on the do-not-call list); ``masked`` is what the
    card and the log show, ``outside_exten`` the outside-line extension (``9…``)."""
    return Target("number", f"号码 {masked} / number {masked}", outside_exten)
