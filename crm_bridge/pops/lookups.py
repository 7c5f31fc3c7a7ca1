"""What the pop hub asks the archive: who is calling (the customer cards of a batch of numbers)
and, for a campaign's call, its campaign and customer. Each lookup takes a fresh session; the
hub runs them on a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo

from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.campaigns.store import campaign_for_attempt
from crm_bridge.customers.card import PopLookup, build_cards, lookup_callers, warm_up
from crm_bridge.db.models import Campaign

Lookup = Callable[[list[str | None]], list[PopLookup]]
"""Caller numbers -> their lookups, in order (one batch: see :meth:`PopHub._run_lookups`)."""


class CampaignOfCall(BaseModel):
    """What a pop shows of the campaign that placed the call."""

    campaign_id: int
    name: str
    kind: str
    mode: str
    customer_id: int


class CampaignPop(BaseModel):
    """A campaign call's lookup: its campaign and the card of the customer it called."""

    campaign: CampaignOfCall
    lookup: PopLookup


CampaignLookup = Callable[[str], CampaignPop | None]
"""Linkedid -> the campaign call with that Linkedid, or None when no attempt has it."""


def database_lookup(
    sessions: sessionmaker[Session],
    *,
    zone: tzinfo,
    region: str,
    outside_line_prefix: str | None,
) -> Lookup:
    """The hub's caller lookup: a fresh session for each batch. Its queries are compiled here,
    at start-up, not on the first calls."""
    with sessions() as session:
        warm_up(session)

    def lookup(numbers: list[str | None]) -> list[PopLookup]:
        with sessions() as session:
            return lookup_callers(
                session,
                numbers,
                zone=zone,
                region=region,
                outside_line_prefix=outside_line_prefix,
            )

    return lookup


def database_campaign_lookup(sessions: sessionmaker[Session], *, zone: tzinfo) -> CampaignLookup:
    """The hub's campaign lookup: the attempt whose ChannelId is the call's Linkedid, its
    campaign, and the card of the customer it called."""

    def campaign_lookup(linkedid: str) -> CampaignPop | None:
        with sessions() as session:
            found = campaign_for_attempt(session, linkedid)
            campaign = session.get(Campaign, found[0]) if found else None
            if found is None or campaign is None:
                return None
            cards = build_cards(session, [found[1]], today=datetime.now(zone).date(), zone=zone)
            if not cards:
                return None  # the customer was deleted since: the number tells what is left
            return CampaignPop(
                campaign=CampaignOfCall(
                    campaign_id=campaign.id,
                    name=campaign.name,
                    kind=campaign.kind,
                    mode=campaign.mode,
                    customer_id=found[1],
                ),
                lookup=PopLookup(kind="known", customer_count=1, cards=cards),
            )

    return campaign_lookup
