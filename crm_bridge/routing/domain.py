"""The routing decision: who is calling, by the admin's rules, gets which treatment before
``Queue()``. Pure: the caller's facts and the rules in, a :class:`Decision` out.

- A VIP level listed in the rules, or a spend over the last 12 months at or above the
  high-value threshold, gives the call that queue priority (``QUEUE_PRIO``; the higher wins).
- A customer with an open complaint goes to the complaint queue (the senior agents), and not
  to an account manager first: the complaint is what the call is about.
- Otherwise a customer with an account manager rings that agent first, for the rules' ring
  time, when the agent is logged in and ready; then the queue.

The dialplan reads the decision from one channel variable, ``CC_ROUTE_ANSWER``:
``priority|agent|ring seconds|queue|label`` (``dialplans/extensions_callbridge.conf``,
``callbridge-route``); an empty field leaves that part as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

ANSWER_VARIABLE = "CC_ROUTE_ANSWER"
LABEL_VIP = "VIP · 优先接入"
LABEL_HIGH_VALUE = "高价值 · 优先接入"
LABEL_COMPLAINT = "投诉跟进"
LABEL_MANAGER = "专属客户经理 {extension}"
MAX_PRIORITY = 100
RING_SECONDS = (5, 60)


@dataclass(frozen=True)
class RoutingRules:
    """What the admin set (``/admin/routing``)."""

    tiers: dict[str, int] = field(default_factory=dict)
    """VIP level -> queue priority."""
    high_value_cents: int | None = None
    high_value_priority: int = 5
    manager_ring_seconds: int = 15
    complaint_queue: str | None = None


@dataclass(frozen=True)
class CallerFacts:
    """What the archive knows of the one customer who holds the calling number."""

    customer_id: int
    vip_level: str | None
    spend_12_months: Decimal
    open_complaints: int
    account_manager: str | None


@dataclass(frozen=True)
class Decision:
    priority: int = 0
    agent: str | None = None
    ring_seconds: int = 0
    queue: str | None = None
    labels: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return " · ".join(self.labels)

    def answer(self) -> str:
        """The value of :data:`ANSWER_VARIABLE`; never empty, so the dialplan knows we answered."""
        fields = (
            str(self.priority) if self.priority else "",
            self.agent or "",
            str(self.ring_seconds) if self.agent else "",
            self.queue or "",
            self.label,
        )
        return "|".join(fields)


PLAIN = Decision()
"""An unknown caller, a family phone, or no rule that applies: the usual queue."""


def decide(
    facts: CallerFacts | None, rules: RoutingRules, agent_ready: Callable[[str], bool]
) -> Decision:
    if facts is None:
        return PLAIN
    priority, labels = _priority(facts, rules)
    if facts.open_complaints and rules.complaint_queue:
        return Decision(priority, queue=rules.complaint_queue, labels=(*labels, LABEL_COMPLAINT))
    manager = facts.account_manager
    if manager and agent_ready(manager):
        labels = (*labels, LABEL_MANAGER.format(extension=manager))
        return Decision(priority, manager, rules.manager_ring_seconds, labels=labels)
    return Decision(priority, labels=labels)


def _priority(facts: CallerFacts, rules: RoutingRules) -> tuple[int, tuple[str, ...]]:
    by_tier = rules.tiers.get(facts.vip_level or "", 0)
    by_spend = 0
    if rules.high_value_cents is not None and facts.spend_12_months * 100 >= rules.high_value_cents:
        by_spend = rules.high_value_priority
    if not by_tier and not by_spend:
        return 0, ()
    return max(by_tier, by_spend), ((LABEL_VIP,) if by_tier >= by_spend else (LABEL_HIGH_VALUE,))
