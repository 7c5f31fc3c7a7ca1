"""What the simulator's replays make of the recorded events: the channels they leave up, as
``CoreShowChannels`` lists them, and a recorded outbound call rewritten to answer a new
``Originate`` (its ActionID, ChannelId, number and variables)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from telephony.simulator.protocol import ClientAction

_SNAPSHOT_FIELDS = (
    "Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
    "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode", "Context", "Exten",
    "Priority", "Uniqueid", "Linkedid",
)  # fmt: skip
_DIALLED = re.compile(r"^[^/]+/([^@/]+)")


class LiveChannels:
    """The channels the replayed events created and did not hang up, as CoreShowChannels
    reports them."""

    def __init__(self) -> None:
        self._channels: dict[str, dict[str, str]] = {}
        self._created: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._channels)

    def clear(self) -> None:
        self._channels.clear()
        self._created.clear()

    def apply(self, event: Mapping[str, str], now: float) -> None:
        name = event.get("Event")
        uid = event.get("Uniqueid", "")
        if name == "Newchannel" and uid:
            self._channels[uid] = {f: event.get(f, "") for f in _SNAPSHOT_FIELDS}
            self._channels[uid].update(BridgeId="", Application="", ApplicationData="")
            self._created[uid] = now
        elif name == "Hangup":
            self._channels.pop(uid, None)
            self._created.pop(uid, None)
        else:
            self._update(event)

    def _update(self, event: Mapping[str, str]) -> None:
        for prefix in ("", "Dest"):
            channel = self._channels.get(event.get(f"{prefix}Uniqueid", ""))
            if channel is not None:
                for f in _SNAPSHOT_FIELDS:
                    if f"{prefix}{f}" in event:
                        channel[f] = event[f"{prefix}{f}"]
        channel = self._channels.get(event.get("Uniqueid", ""))
        if channel is None:
            return
        name = event.get("Event")
        if name == "Newexten":
            channel["Application"] = event.get("Application", "")
            channel["ApplicationData"] = event.get("AppData", "")
        elif name == "BridgeEnter":
            channel["BridgeId"] = event.get("BridgeUniqueid", "")
        elif name == "BridgeLeave":
            channel["BridgeId"] = ""

    def listing(self, now: float) -> list[list[tuple[str, str]]]:
        """One CoreShowChannel body (without Event/ActionID) per live channel."""
        rows = []
        for uid, channel in self._channels.items():
            seconds = int(now - self._created[uid])
            duration = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
            rows.append([*channel.items(), ("Duration", duration)])
        return rows


def recorded_number(events: Sequence[Mapping[str, str]]) -> str | None:
    """The number the recorded Originate dialled: DialBegin ``DialString: 13900000001@carrier``."""
    for event in events:
        if event["Event"] == "DialBegin" and "DialString" in event:
            return event["DialString"].split("@", 1)[0]
    return None


def with_caller(
    events: Sequence[Mapping[str, str]], number: str, name: str
) -> list[dict[str, str]]:
    """A recorded inbound call as if another caller had made it: the caller id of its first
    channel (number and name) replaced wherever a value holds it (the agents' connected line,
    the Cdr, the dialplan's notes). ``anonymous`` is what Asterisk shows of a withheld number."""
    first = next((e for e in events if e.get("Event") == "Newchannel"), {})
    pairs = ((first.get("CallerIDNum", ""), number), (first.get("CallerIDName", ""), name))
    replacements = [(old, new) for old, new in pairs if old and old not in ("<unknown>", new)]
    return [replace_in_values(event, replacements) for event in events]


def agent_first_rewrite(
    events: Sequence[Mapping[str, str]], action: ClientAction, originated: str | None
) -> list[dict[str, str]]:
    """A recorded agent-first call (the agent's phone rung, then dialling the customer) made
    to dial the Originate's ``Exten``: the recorded exten and the number inside it (the exten
    without its outside-line digit), and the recorded channel id wherever a value holds it (the
    recording's file name), are replaced in every value."""
    response = next((e for e in events if e["Event"] == "OriginateResponse"), {})
    dialled = next((e for e in events if e["Event"] == "DialBegin" and "Channel" in e), {})
    old_exten, new_exten = response.get("Exten", ""), action.get("Exten")
    old_number = dialled.get("DialString", "").split("@", 1)[0]
    replacements = []
    if old_exten and new_exten and old_number and old_exten.endswith(old_number):
        prefix = len(old_exten) - len(old_number)
        replacements += [(old_exten, new_exten), (old_number, new_exten[prefix:])]
    if originated and action.get("ChannelId"):
        replacements.append((originated, action.get("ChannelId")))
    rewritten = [replace_in_values(event, replacements) for event in events]
    return _with_originate_variables(rewritten, action.get("ChannelId"), action.variables())


def _with_originate_variables(
    events: list[dict[str, str]], origin: str, variables: Mapping[str, str]
) -> list[dict[str, str]]:
    """The recorded Originate's own variables (the VarSets Asterisk sends on the originated
    channel before its OriginateResponse) replaced by this Originate's: a preview dial's
    ``CAMPAIGN`` is seen at once, as on a real PBX, where a click-to-call's was recorded."""
    response = next((i for i, e in enumerate(events) if e["Event"] == "OriginateResponse"), 0)
    own = [
        i
        for i, e in enumerate(events[:response])
        if e["Event"] == "VarSet" and e.get("Uniqueid") == origin
    ]
    if not own:
        return events
    template = events[own[0]]
    sets = [template | {"Variable": name, "Value": value} for name, value in variables.items()]
    kept = [e for i, e in enumerate(events) if i not in own[1:]]
    at = own[0]
    return kept[:at] + sets + kept[at + 1 :]


def replace_in_values(event: Mapping[str, str], replacements: Sequence[tuple[str, str]]) -> dict:
    """``event`` with each ``(old, new)`` replaced inside every value, in that order."""
    out = {}
    for key, value in event.items():
        for old, new in replacements:
            value = value.replace(old, new)
        out[key] = value
    return out


class OriginateRewrite:
    """Makes a recorded outbound call's events answer a new Originate."""

    def __init__(self, action: ClientAction, recorded_number: str | None) -> None:
        self.action_id = action.get("ActionID")
        self.channel = action.get("Channel")
        self.channel_id = action.get("ChannelId")
        self.variables = action.variables()
        match = _DIALLED.match(self.channel)
        self.old = recorded_number
        self.new = match.group(1) if match else None

    def __call__(self, headers: Mapping[str, str]) -> dict[str, str]:
        out = dict(headers)
        if out.get("Event") == "OriginateResponse":
            self._originate_response(out)
        elif self.old and self.new:
            for key in ("DialString", "Channel"):
                if key in out:
                    out[key] = out[key].replace(self.old, self.new)
        if out.get("Event") == "VarSet" and out.get("Variable") in self.variables:
            out["Value"] = self.variables[out["Variable"]]
        if out.get("Event") == "Cdr" and "Campaign" in out and "CAMPAIGN" in self.variables:
            out["Campaign"] = self.variables["CAMPAIGN"]
        return out

    def _originate_response(self, out: dict[str, str]) -> None:
        if self.action_id:
            out["ActionID"] = self.action_id
        else:
            out.pop("ActionID", None)
        if self.channel_id:
            out["Uniqueid"] = self.channel_id
        if self.old and self.old in out.get("Channel", ""):
            out["Channel"] = self.channel
