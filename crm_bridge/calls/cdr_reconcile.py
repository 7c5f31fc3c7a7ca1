"""Calls that ended while callbridge was down, logged from Asterisk's own call records.

No AMI session sees a call that ends while the service is stopped (or while its connection to
Asterisk is down), so the live path can never log it. Asterisk still writes a CDR for every leg
of it: ``dialplans/cdr_custom.conf`` has module cdr_custom append them to a CSV file, and
:class:`CdrReconciler` reads that file at start and after every reconnect (right after the
resync, on the call log's writer thread) and logs each call it finds that the call log does
not hold yet.

- **The key is the Linkedid**, as on the live path: a call already logged (live, from the
  journal, by an earlier reconciliation) is left alone; so is one the resync found still in
  progress or ended by the resync itself (the live path logs those), and one that ended after
  the connection came back (its end was seen live). Nothing is logged twice.
- A reconciled call is marked (``calls.reconciled``), and goes through
  :meth:`~crm_bridge.calls.call_log.CallLog.record` like any other: its customer, its recording
  (``CDR(recording)``) linked and its transcription queued.
- A campaign call (its Linkedid is the attempt's ChannelId) is logged with the attempt's
  number and campaign, and the runner then settles the attempt from the call log with its real
  outcome (:func:`~crm_bridge.campaigns.store.reconcile_unresolved`), so the customer is not
  called again. While a reconciliation runs the bridge is not "in step", so the runner does not
  count such an attempt as lost meanwhile.

What a CDR cannot tell is left out: the hangup cause, and the rings of agents who did not
answer beyond their names. Only the main server's file is read (``CALLBRIDGE_PBX_CDR_FILE``).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.calls.call_log import CallLog
from crm_bridge.db.models import Call, DialAttempt
from telephony.call_events import CallRecord, Direction, Disposition, EndReason
from telephony.call_tracker import agent_from_interface, number_from_dial_string

log = logging.getLogger(__name__)

COLUMNS = (
    "linkedid", "uniqueid", "start", "answer", "end", "disposition", "src", "dst", "dcontext",
    "channel", "dstchannel", "lastapp", "lastdata", "userfield", "recording", "campaign",
)  # fmt: skip
"""The columns of ``dialplans/cdr_custom.conf``, in its order."""
DISPOSITIONS = {
    "ANSWERED": Disposition.ANSWERED,
    "BUSY": Disposition.BUSY,
    "NO ANSWER": Disposition.NO_ANSWER,
    "FAILED": Disposition.FAILED,
    "CONGESTION": Disposition.FAILED,
}
_IN_CHUNK = 500


@dataclass(slots=True)
class Cdr:
    """One line of the file (one leg of a call)."""

    linkedid: str
    uniqueid: str
    start: float
    answer: float | None
    end: float
    disposition: str
    src: str
    dst: str
    dcontext: str
    channel: str
    dstchannel: str
    lastapp: str
    lastdata: str
    userfield: str
    recording: str
    campaign: str

    @classmethod
    def parse(cls, row: list[str]) -> Cdr | None:
        """None for a line that is not one of ours (torn by a crash, another format)."""
        if len(row) != len(COLUMNS) or not row[0]:
            return None
        try:
            start, answer, end = float(row[2]), float(row[3]), float(row[4])
        except ValueError:
            return None
        return cls(row[0], row[1], start, answer or None, end, *row[5:])


def _ended_before(end: str, moment: float) -> bool:
    try:
        return float(end) < moment
    except ValueError:
        return False


def _interface(channel: str) -> str:
    """``PJSIP/1002-00000006`` -> ``PJSIP/1002``."""
    return channel.rsplit("-", 1)[0] if "/" in channel else channel


@dataclass(frozen=True)
class Dialled:
    """A campaign attempt's number and campaign, by its ChannelId (the call's Linkedid)."""

    number_e164: str
    campaign_id: int


def call_from_cdrs(
    cdrs: list[Cdr], server: str, agent_contexts: Iterable[str], dialled: Dialled | None
) -> CallRecord:
    """The call-log record of one call from its CDRs (every leg sharing its Linkedid)."""
    first = min(cdrs, key=lambda c: (c.uniqueid != c.linkedid, c.start))
    agent_legs = [c for c in cdrs if c.channel.startswith("Local/") and c.dstchannel]
    answered_leg = min(
        (c for c in agent_legs if c.disposition == "ANSWERED" and c.answer),
        key=lambda c: c.answer or 0.0,
        default=None,
    )
    call = CallRecord(
        linkedid=first.linkedid,
        server=server,
        caller=first.src or None,
        callee=first.dst or None,
        offered_at=first.start,
        ended_at=max(c.end for c in cdrs),
        recording_path=next((c.recording for c in cdrs if c.recording), None),
        campaign=next((c.campaign for c in cdrs if c.campaign), None),
        agents_rung=sorted({agent_from_interface(_interface(c.dstchannel)) for c in agent_legs}),
        end_reason=EndReason.HANGUP,
    )
    if first.lastapp == "Queue":
        call.queue = first.lastdata.split(",", 1)[0] or None
    if answered_leg is not None:
        call.agent_interface = _interface(answered_leg.dstchannel)
        call.agent = agent_from_interface(call.agent_interface)
    outbound = any(c.userfield.startswith("outbound") for c in cdrs)
    if dialled is not None:
        _as_campaign_call(call, first, answered_leg, dialled)
    elif outbound or first.dcontext in set(agent_contexts):
        _as_agent_call(call, first)
    else:
        call.direction = Direction.INBOUND
        call.answered_at = answered_leg.answer if answered_leg else None
        call.disposition = Disposition.ANSWERED if answered_leg else Disposition.ABANDONED
    return call


def _as_campaign_call(call: CallRecord, first: Cdr, answered_leg, dialled: Dialled) -> None:
    """Placed by the dialer: the customer's channel is the first; busy and no answer there."""
    call.direction = Direction.OUTBOUND
    call.callee = dialled.number_e164
    call.campaign = call.campaign or str(dialled.campaign_id)
    call.answered_at = first.answer
    call.disposition = DISPOSITIONS.get(first.disposition, Disposition.FAILED)
    if first.lastapp == "Queue" and answered_leg is None and call.answered_at is not None:
        call.disposition = Disposition.ABANDONED  # answered, then left waiting in the queue


def _as_agent_call(call: CallRecord, first: Cdr) -> None:
    """An agent dialling out: the agent's own channel is the first, the trunk its Dial."""
    call.direction = Direction.OUTBOUND
    call.agent_interface = _interface(first.channel)
    call.agent = agent_from_interface(call.agent_interface)
    if first.lastapp == "Dial" and "@" in first.lastdata:
        call.callee = number_from_dial_string(first.lastdata.split(",", 1)[0].split("/", 1)[-1])
    call.answered_at = first.answer
    call.disposition = DISPOSITIONS.get(first.disposition, Disposition.FAILED)


class CdrReconciler:
    """Reads the CDR file of one server and logs the calls the call log lacks."""

    def __init__(
        self,
        path: Path,
        server: str,
        sessions: sessionmaker[Session],
        call_log: CallLog,
        *,
        agent_contexts: Iterable[str],
        lookback_seconds: float,
    ) -> None:
        self.path = path
        self.server = server
        self.sessions = sessions
        self.call_log = call_log
        self.agent_contexts = tuple(agent_contexts)
        self.lookback_seconds = lookback_seconds
        self._offset = 0
        """Where the last read stopped: a later one reads only what was appended since (from
        the start again when the file was rotated). What it skipped then (calls in progress or
        seen live) the live path logs."""

    def __call__(self, connected_at: float, skip: set[str]) -> int:
        """Log the calls that ended before ``connected_at`` (the resync's start) and are not
        in ``skip`` (the calls the resync found or ended); how many were logged."""
        groups = self._read(since=connected_at - self.lookback_seconds)
        candidates = {
            lid: cdrs
            for lid, cdrs in groups.items()
            if lid not in skip and max(c.end for c in cdrs) < connected_at
        }
        if not candidates:
            return 0
        logged = self._logged_since(min(c.end for cdrs in candidates.values() for c in cdrs))
        missing = [lid for lid in candidates if lid not in logged]
        dialled = self._dialled(missing)
        for linkedid in missing:
            call = call_from_cdrs(
                candidates[linkedid], self.server, self.agent_contexts, dialled.get(linkedid)
            )
            self.call_log.record(call, reconciled=True)
        count = len(missing)
        if count:
            log.warning("%s: %d call(s) that ended while the bridge was away logged from "
                        "Asterisk's CDRs", self.server, count)  # fmt: skip
        return count

    def _read(self, since: float) -> dict[str, list[Cdr]]:
        """The CDRs appended since the last read, by Linkedid, of the calls still going at
        ``since`` (each line's end is looked at before anything else is made of it)."""
        groups: dict[str, list[Cdr]] = {}
        try:
            with self.path.open("rb") as f:
                if f.seek(0, 2) < self._offset:
                    self._offset = 0  # rotated
                f.seek(self._offset)
                data = f.read()
        except OSError as exc:
            log.error("%s: CDR file %s not read: %s", self.server, self.path, exc)
            return groups
        complete = data[: data.rfind(b"\n") + 1]  # a line being written waits for next time
        self._offset += len(complete)
        torn = 0
        for row in csv.reader(complete.decode("utf-8", errors="replace").splitlines()):
            if len(row) == len(COLUMNS) and _ended_before(row[4], since):
                continue
            cdr = Cdr.parse(row)
            if cdr is None:
                torn += 1
                continue
            groups.setdefault(cdr.linkedid, []).append(cdr)
        if torn:
            log.warning("%s: %d line(s) of the CDR file are not in callbridge's format",
                        self.server, torn)  # fmt: skip
        return groups

    def _logged_since(self, since: float) -> set[str]:
        """The Linkedids of the calls logged that ended after ``since`` (an hour's slack for
        the clocks of Asterisk and the AMI timestamps): one indexed read, not one per call."""
        after = datetime.fromtimestamp(since - 3600, UTC)
        query = select(Call.linkedid).where(or_(Call.ended_at >= after, Call.ended_at.is_(None)))
        with self.sessions() as session:
            return set(session.scalars(query))

    def _dialled(self, linkedids: list[str]) -> dict[str, Dialled]:
        """The campaign attempts among these calls, by ChannelId."""
        dialled: dict[str, Dialled] = {}
        with self.sessions() as session:
            for at in range(0, len(linkedids), _IN_CHUNK):
                rows = session.execute(
                    select(DialAttempt.channel_id, DialAttempt.number_e164, DialAttempt.campaign_id)
                    .where(DialAttempt.channel_id.in_(linkedids[at : at + _IN_CHUNK]))
                )
                dialled.update({lid: Dialled(number, cid) for lid, number, cid in rows})
        return dialled
