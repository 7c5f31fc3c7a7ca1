"""Who may listen to, whisper into or barge into which call, decided without any I/O.

A request names a call in progress (its Linkedid) and a mode. It is allowed when the user is a
supervisor with an extension to ring, the call is answered by an agent and belongs to a queue
the supervisor supervises, the agent's channel is known, nobody is listening to the call
already and the supervisor's own phone is not listening to another one. Each refusal carries
the HTTP status and the zh-CN / English message the supervisor sees; nothing is sent to
Asterisk then.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from telephony.call_events import CallRecord
from telephony.call_tracker import agent_from_interface

MODES = {"listen": "监听 Listen", "whisper": "耳语 Whisper", "barge": "强插 Barge"}
"""The modes, each an extension of the dialplan context ``callbridge-supervise`` (which holds
the ChanSpy options: ``q``, ``qw``, ``qB``, with ``E`` and ``S``)."""
SUPERVISOR_ROLE = "supervisor"

UNKNOWN_MODE = "未知的方式（listen、whisper 或 barge）/ Unknown mode: listen, whisper or barge"
NOT_A_SUPERVISOR = "只有主管可以监听、耳语或强插 / Only supervisors may listen, whisper or barge"
NO_EXTENSION = "您的账号没有分机，无法为您振铃 / Your account has no extension to ring"
NO_SUCH_CALL = "没有这通进行中的通话 / No such call in progress"
NOT_ANSWERED = "这通电话还没有坐席接听 / No agent has answered this call yet"
NO_QUEUE = "这通电话不属于任何队列 / This call is in no queue"
AGENT_CHANNEL_UNKNOWN = "找不到坐席的通话通道 / The agent's channel of this call is not known"
OWN_CALL = "不能监听自己的通话 / You cannot listen to your own call"
NOT_STARTED = "监听服务未启用 / Listening in is not running"


def not_your_queue(queue: str) -> str:
    return f"您不是队列 {queue} 的主管 / You do not supervise the queue {queue}"


def already_listened(by: str, mode: str) -> str:
    return (f"这通电话已有主管 {by} 在{MODES[mode].split()[0]} / "
            f"This call is already listened to ({by}, {mode})")  # fmt: skip


def phone_busy(linkedid: str) -> str:
    return (f"您的话机正在监听另一通电话（{linkedid}），请先挂机 / Your phone is listening to "
            f"another call ({linkedid}): hang up first")  # fmt: skip


class SupervisionRefused(Exception):
    """A request that is not allowed; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Supervisor:
    username: str
    role: str
    extensions: tuple[str, ...]
    supervised_queues: tuple[str, ...]


@dataclass(frozen=True)
class Target:
    """What an allowed request listens to: the call, its queue and agent, the agent's channel
    (the one ChanSpy is given) and the supervisor's extension to ring."""

    linkedid: str
    queue: str
    agent: str
    channel: str
    extension: str


@dataclass(frozen=True)
class Busy:
    """Who is listening to a call now (from the sessions going on)."""

    linkedid: str
    username: str
    extension: str
    mode: str


def decide(
    supervisor: Supervisor,
    mode: str,
    call: CallRecord | None,
    agent_channel: str | None,
    busy: Iterable[Busy],
) -> Target:
    """The target of an allowed request, or :class:`SupervisionRefused` with its reason.

    ``call`` is the call in progress named by the request (None: there is none),
    ``agent_channel`` the answering agent's channel of it, ``busy`` the sessions going on."""
    if supervisor.role != SUPERVISOR_ROLE:
        raise SupervisionRefused(403, NOT_A_SUPERVISOR)
    if mode not in MODES:
        raise SupervisionRefused(400, UNKNOWN_MODE)
    if not supervisor.extensions:
        raise SupervisionRefused(400, NO_EXTENSION)
    if call is None:
        raise SupervisionRefused(404, NO_SUCH_CALL)
    if not call.queue:
        raise SupervisionRefused(403, NO_QUEUE)
    if call.queue not in supervisor.supervised_queues:
        raise SupervisionRefused(403, not_your_queue(call.queue))
    if call.answered_at is None or not call.agent:
        raise SupervisionRefused(409, NOT_ANSWERED)
    extension = supervisor.extensions[0]
    if agent_from_interface(extension) == call.agent:
        raise SupervisionRefused(409, OWN_CALL)
    if agent_channel is None:
        raise SupervisionRefused(409, AGENT_CHANNEL_UNKNOWN)
    for session in busy:
        if session.linkedid == call.linkedid:
            raise SupervisionRefused(409, already_listened(session.username, session.mode))
        if session.extension == extension:
            raise SupervisionRefused(409, phone_busy(session.linkedid))
    return Target(call.linkedid, call.queue, call.agent, agent_channel, extension)
