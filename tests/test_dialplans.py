"""The Asterisk configuration in dialplans/: what the bridge relies on is really there.

The dialplan is checked by asterisklint (a real Asterisk configuration checker); everything
else is read with the small Asterisk-config reader below and held against the real AMI traces
in telephony/traces/sip and against the rules Asterisk's own source applies (main/manager.c for
AMI permissions and event filters, main/acl.c for permit/deny).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from telephony.dialer import AMD_EVENT, GREETING_EVENT

ROOT = Path(__file__).resolve().parents[1]
DIALPLANS = ROOT / "dialplans"
SIP_TRACES = sorted(
    p
    for p in (ROOT / "telephony" / "traces" / "sip").glob("*.ami")
    if not p.name.startswith("load_")
)
DIALPLAN_FILE = "extensions_callbridge.conf"


# --------------------------------------------------------------------------- config reader


@dataclass
class Section:
    name: str
    options: str
    items: list[tuple[str, str]] = field(default_factory=list)

    def get(self, key: str) -> list[str]:
        return [value for name, value in self.items if name == key]

    def one(self, key: str) -> str:
        (value,) = self.get(key)
        return value


def read_conf(path: Path) -> list[Section]:
    """Sections of an Asterisk .conf file: `;` comments (not `\\;`), `[name](options)`,
    `key = value` and `key => value`."""
    sections: list[Section] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = re.split(r"(?<!\\);", raw, maxsplit=1)[0].strip()
        if not line or line.startswith("#"):
            continue
        header = re.fullmatch(r"\[([^\]]+)\](?:\(([^)]*)\))?", line)
        if header:
            sections.append(Section(header[1], header[2] or ""))
            continue
        key, _, value = re.split(r"\s*(=>|=)\s*", line, maxsplit=1)
        sections[-1].items.append((key.lower(), value.replace("\\;", ";")))
    return sections


def section(sections: list[Section], name: str, type_: str | None = None) -> Section:
    """The section called `name` (of pjsip type `type_`), its templates' items first."""
    for sec in sections:
        if sec.name == name and "!" not in sec.options:
            resolved = resolve(sections, sec)
            if type_ is None or resolved.get("type") == [type_]:
                return resolved
    raise KeyError(f"[{name}] type={type_}")


def resolve(sections: list[Section], sec: Section) -> Section:
    """`sec` with the items of the templates named in its options, `[name](template)`."""
    merged = Section(sec.name, sec.options)
    for name in (part.strip() for part in sec.options.split(",")):
        if name and name != "!":
            (template,) = (t for t in sections if t.name == name and "!" in t.options)
            merged.items += resolve(sections, template).items
    merged.items += sec.items
    return merged


def split_args(data: str) -> list[str]:
    """Split dialplan application data on the commas outside (), {} and []."""
    args, depth, current = [], 0, ""
    for char in data:
        if char == "," and depth == 0:
            args.append(current)
            current = ""
            continue
        depth += (char in "({[") - (char in ")}]")
        current += char
    return [*args, current]


Dialplan = dict[str, dict[str, list[tuple[str, str]]]]


def read_dialplan(path: Path) -> Dialplan:
    """context -> extension -> [(application, data), ...] in priority order."""
    plan: Dialplan = {}
    for sec in read_conf(path):
        extensions = plan.setdefault(sec.name, {})
        exten = ""
        for key, value in sec.items:
            if key == "exten":
                exten, _, step = value.split(",", 2)
            else:
                assert key == "same", (sec.name, key)
                step = value.split(",", 1)[1]
            app, _, data = step.partition("(")
            extensions.setdefault(exten, []).append((app, data[:-1]))
    return plan


def apps(plan: Dialplan, name: str) -> list[tuple[str, str, int, str]]:
    """Every use of application `name`: (context, extension, index, data)."""
    return [
        (context, exten, index, data)
        for context, extensions in plan.items()
        for exten, steps in extensions.items()
        for index, (app, data) in enumerate(steps)
        if app == name
    ]


def pattern_matches(pattern: str, exten: str) -> bool:
    """Asterisk extension matching: a literal, or `_` with X, Z, N, [..], `.` and `!`."""
    if not pattern.startswith("_"):
        return pattern == exten
    classes = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]", ".": ".+", "!": ".*"}
    regex = "".join(
        part if part.startswith("[") else classes.get(part.upper(), re.escape(part))
        for part in re.findall(r"\[[^\]]*\]|.", pattern[1:])
    )
    return re.fullmatch(regex, exten) is not None


@pytest.fixture(scope="module")
def plan() -> Dialplan:
    return read_dialplan(DIALPLANS / DIALPLAN_FILE)


@pytest.fixture(scope="module")
def manager() -> list[Section]:
    return read_conf(DIALPLANS / "manager.conf")


def trace_events() -> list[tuple[dict[str, str], str]]:
    """Every event of the real SIP traces: (headers, the event's text as Asterisk sent it)."""
    events = []
    for path in SIP_TRACES:
        for block in path.read_bytes().decode("utf-8").split("\r\n\r\n"):
            headers = dict(line.split(": ", 1) for line in block.split("\r\n") if ": " in line)
            if "Event" in headers:
                events.append((headers, block))
    return events


# --------------------------------------------------------------------------- the dialplan


def run_asterisklint(folder: Path) -> subprocess.CompletedProcess[str]:
    """`asterisklint dialplan-check` on an extensions.conf that includes the dialplan the way
    dialplans/README.md says to install it."""
    (folder / "extensions.conf").write_text(
        "[general]\nstatic=yes\nwriteprotect=yes\n\n[globals]\n\n#include " + DIALPLAN_FILE + "\n"
    )
    tool = shutil.which("asterisklint", path=str(Path(sys.executable).parent))
    assert tool, "asterisklint is in the test extra: pip install -e '.[test]'"
    return subprocess.run(
        [tool, "dialplan-check", "extensions.conf"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ALINT_IGNORE": ""},  # suppress no check
    )


UNKNOWN_TO_ASTERISKLINT = (
    "E_FUNC_MISSING: function 'CDR_PROP' does not exist",
    "E_APP_MISSING: app 'AMD' does not exist",
    "E_APP_MISSING: app 'WaitForSilence' does not exist",
    "E_FUNC_MISSING: function 'IFMODULE' does not exist",
    "E_APP_ARG_MANY: too many arguments for app 'Originate', maximum is 6",
)
"""What asterisklint, written for older Asterisk, does not know of the Asterisk 18+ this
dialplan is for; every other finding fails the test. CDR_PROP came with Asterisk 12's CDR
engine, replacing CDR(disable) (tests/test_supervise_realpbx.py shows on the kit that it works);
Originate's options (a: async) came with Asterisk 18 (callbridge-route); app_amd,
app_waitforsilence and func_module are not in its tables (tests/test_campaign_amd_realpbx.py
runs them)."""


def lint_findings(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What asterisklint reports, but its not knowing the above."""
    return [line for line in (result.stdout + result.stderr).splitlines()
            if not any(known in line for known in UNKNOWN_TO_ASTERISKLINT)]  # fmt: skip


def test_asterisklint_finds_nothing_in_the_dialplan(tmp_path):
    shutil.copy(DIALPLANS / DIALPLAN_FILE, tmp_path)
    result = run_asterisklint(tmp_path)
    assert lint_findings(result) == [] and result.returncode in (0, 1)


def test_asterisklint_catches_an_unescaped_semicolon(tmp_path):
    """An unescaped `;` in CDR(userfield)=a;b starts a comment and cuts the line short."""
    text = (DIALPLANS / DIALPLAN_FILE).read_text(encoding="utf-8")
    assert "\\;" in text
    (tmp_path / DIALPLAN_FILE).write_text(text.replace("\\;", ";"))
    result = run_asterisklint(tmp_path)
    assert result.returncode == 1
    assert "W_APP_BALANCE" in result.stdout + result.stderr


def test_the_contexts_and_campaign_extensions_exist(plan):
    assert {"from-customers", "agents", "outbound-campaign", "internal"} <= plan.keys()
    assert {"return-visit", "birthday"} <= plan["outbound-campaign"].keys()


def test_a_message_call_reports_amd_first_and_plays_after_a_machines_beep(plan):
    """What the dialer reads (telephony/dialer.py): AMD's verdict before any greeting, then the
    greeting's; the campaign's CC_ON_MACHINE is only ever compared with a fixed word."""
    steps = plan["callbridge-campaign"]["s"]
    names = [app for app, _ in steps]
    amd = names.index("AMD")
    reported = steps.index(("UserEvent", f"{AMD_EVENT},Status: ${{AMDSTATUS}}"))
    played = steps.index(("UserEvent", f"{GREETING_EVENT},Status: ${{PLAYBACKSTATUS}}"))
    playback = names.index("Playback")
    assert amd < reported < names.index("WaitForSilence") < playback < played
    assert [data for _, data in steps if "CC_ON_MACHINE" in data] == [
        '$["${CC_ON_MACHINE}" != "message"]?done'
    ]


def test_every_recording_names_its_file_in_cc_recfile_first(plan):
    mixmonitors = apps(plan, "MixMonitor")
    assert mixmonitors
    for context, exten, index, data in mixmonitors:
        assert split_args(data)[0] == "${CC_RECFILE}"
        earlier = [d for app, d in plan[context][exten][:index] if app == "Set"]
        assert any(d.startswith("CC_RECFILE=") for d in earlier), (context, exten)


def test_the_recording_file_name_is_the_one_in_the_traces(plan):
    """CC_RECFILE rendered with a traced call's Uniqueid gives the file that call recorded."""
    sets = dict(d.split("=", 1) for _, _, _, d in apps(plan, "Set") if d.startswith("CC_REC"))
    traced = [
        h for h, _ in trace_events() if h["Event"] == "VarSet" and h["Variable"] == "CC_RECFILE"
    ]
    assert traced
    for headers in traced:
        rendered = sets["CC_RECFILE"].replace("${CC_RECDIR}", default_recording_folder(plan))
        assert rendered.replace("${UNIQUEID}", headers["Uniqueid"]) == headers["Value"]


def default_recording_folder(plan) -> str:
    """The folder ``callbridge-record`` falls back to when no global ``CC_RECDIR`` is set."""
    fallbacks = [d for _, _, _, d in apps(plan, "ExecIf") if '"${CC_RECDIR}" = ""' in d]
    (fallback,) = fallbacks
    return re.search(r"Set\(CC_RECDIR=([^)]+)\)", fallback)[1]


def test_the_recording_folder_is_a_global_with_todays_default(plan):
    """An installation (and the PBX kit) sets the folder in [globals]; the file stays as is."""
    sets = [d for _, _, _, d in apps(plan, "Set") if d.startswith("CC_RECDIR=")]
    assert sets == ["CC_RECDIR=${CC_RECDIR}"]
    assert default_recording_folder(plan) == "/var/spool/asterisk/monitor"


def test_in_is_the_customer_and_out_the_agent_on_every_recorded_channel(plan):
    """MixMonitor's r() file is what the channel receives (its own party speaking), t() what
    it transmits (what its party hears). -in must be the customer, -out the agent/greeting."""
    ((context, exten, index, data),) = apps(plan, "MixMonitor")
    options = split_args(data)[1]
    says = re.search(r"r\(\$\{CC_RECDIR\}/\$\{UNIQUEID\}-\$\{(\w+)\}\.wav\)", options)[1]
    hears = re.search(r"t\(\$\{CC_RECDIR\}/\$\{UNIQUEID\}-\$\{(\w+)\}\.wav\)", options)[1]
    choose = re.compile(r'LOCAL\((\w+)\)=\$\{IF\(\$\["\$\{ARG2\}" = "agent"\]\?(\w+):(\w+)\)\}')
    choices = {}
    for app, set_data in plan[context][exten][:index]:
        found = choose.fullmatch(set_data)
        if app == "Set" and found:
            choices[found[1]] = {"agent": found[2], "customer": found[3]}
    calls = [d for _, _, _, d in apps(plan, "Gosub") if d.startswith(f"{context},{exten},")]
    roles = {re.search(r"\((.*)\)$", d)[1].split(",")[1] for d in calls}
    assert roles == {"customer", "agent"}
    assert [choices[says]["customer"], choices[hears]["customer"]] == ["in", "out"]
    assert [choices[says]["agent"], choices[hears]["agent"]] == ["out", "in"]
    agent_calls = [c for c, _, _, d in apps(plan, "Gosub") if d.endswith(",agent)")]
    assert set(agent_calls) == {"internal"}


def test_every_queue_the_dialplan_uses_is_configured(plan):
    queues = {s.name for s in read_conf(DIALPLANS / "queues.conf")} - {"general"}
    used = {d.split("=", 1)[1] for _, _, _, d in apps(plan, "Set") if d.startswith("__CC_QUEUE=")}
    assert used and used <= queues
    assert {split_args(d)[0] for _, _, _, d in apps(plan, "Queue")} == {"${CC_QUEUE}"}


# --------------------------------------------------------------------------- queues and phones


def test_every_queue_member_reaches_a_phone_through_the_agents_context(plan):
    queues = read_conf(DIALPLANS / "queues.conf")
    pjsip = read_conf(DIALPLANS / "pjsip.conf")
    members = section(queues, "support").get("member")
    assert len(members) >= 2
    for member in members:
        interface, _penalty, _name, state = (part.strip() for part in member.split(","))
        exten = re.fullmatch(r"Local/(\w+)@agents/n", interface)[1]
        assert any(pattern_matches(p, exten) for p in plan["agents"])
        assert state == f"PJSIP/{exten}"
        assert section(pjsip, exten, "endpoint").one("context") == "internal"


def test_the_support_queue_rings_as_agreed():
    support = section(read_conf(DIALPLANS / "queues.conf"), "support")
    assert [support.one(key) for key in ("timeout", "retry", "ringinuse")] == ["15", "2", "no"]
    assert int(support.one("wrapuptime")) > 0
    keys = {key for key, _ in support.items}
    assert not keys & {"eventwhencalled", "eventmemberstatus"}  # gone since Asterisk 12


def test_pjsip_endpoints_land_in_existing_contexts_and_keep_media_local(plan):
    pjsip = read_conf(DIALPLANS / "pjsip.conf")
    endpoints = [
        s.name
        for s in pjsip
        if "!" not in s.options and resolve(pjsip, s).get("type") == ["endpoint"]
    ]
    assert {"carrier", "1001", "1002"} <= set(endpoints)
    for name in endpoints:
        endpoint = section(pjsip, name, "endpoint")
        assert endpoint.one("context") in plan
        assert endpoint.one("direct_media") == "no"  # else MixMonitor hears nothing
    carrier = section(pjsip, "carrier", "endpoint")
    assert (carrier.one("context"), carrier.one("identify_by")) == ("from-customers", "ip")
    passwords = [value for s in pjsip for key, value in s.items if key == "password"]
    assert passwords and set(passwords) == {"CHANGE_ME"}


# --------------------------------------------------------------------------- CDRs


CDR_FIELDS = {
    "accountcode", "amaflags", "answer", "billsec", "channel", "clid", "dcontext", "disposition",
    "dst", "dstchannel", "duration", "end", "lastapp", "lastdata", "linkedid", "peeraccount",
    "sequence", "src", "start", "uniqueid", "userfield",
}  # fmt: skip


def test_cdr_mappings_give_the_headers_the_traces_show(plan):
    conf = read_conf(DIALPLANS / "cdr_manager.conf")
    assert section(conf, "general").one("enabled") == "yes"
    mappings = section(conf, "mappings").items
    cdrs = [h for h, _ in trace_events() if h["Event"] == "Cdr"]
    assert cdrs
    for headers in cdrs:
        keys = list(headers)
        assert keys[keys.index("UserField") + 1 :] == [header for _, header in mappings]
    written = {d.split(")=")[0][4:] for _, _, _, d in apps(plan, "Set") if d.startswith("CDR(")}
    for name, _ in mappings:
        assert name in CDR_FIELDS or name in written, name


# --------------------------------------------------------------------------- the AMI account


ACTION_CLASSES = {
    # From ast_manager_register_xml_core() in Asterisk's main/manager.c.
    "Login": set(),
    "Logoff": set(),
    "Ping": set(),
    "Events": set(),
    "Originate": {"originate"},
    "CoreShowChannels": {"system", "reporting"},
    "Getvar": {"call", "reporting"},
    "QueueAdd": {"agent"},
    "QueueRemove": {"agent"},
    "QueuePause": {"agent"},
    "Hangup": {"system", "call"},
    "Redirect": {"call"},
    "Bridge": {"call"},
}
NEEDED_EVENTS = {
    "Newchannel", "Newstate", "DialBegin", "DialEnd", "BridgeEnter", "BridgeLeave", "Hangup",
    "OriginateResponse", "MixMonitorStart", "BlindTransfer", "QueueCallerJoin",
    "QueueCallerLeave", "QueueCallerAbandon", "AgentCalled", "AgentConnect", "AgentComplete",
    "AgentRingNoAnswer", "VarSet", "Newexten", "Cdr", "Shutdown", "FullyBooted",
}  # fmt: skip


def classes(value: str) -> set[str]:
    return {part.strip() for part in value.split(",")}


def passes_filters(text: str, filters: list[str]) -> bool:
    """manager.c's legacy eventfilter: regexes on the event's text, `!` ones drop; with any
    plain (white) filter an event must match one of those first."""
    white = [f for f in filters if not f.startswith("!")]
    black = [f[1:] for f in filters if f.startswith("!")]
    if white and not any(re.search(f, text) for f in white):
        return False
    return not any(re.search(f, text) for f in black)


def test_the_account_gets_every_event_the_bridge_uses_and_drops_only_noise(manager):
    account = section(manager, "callbridge")
    read, filters = classes(account.one("read")), account.get("eventfilter")
    delivered, dropped = set(), set()
    for headers, text in trace_events():
        first_class = headers["Privilege"].split(",")[0]
        ok = first_class in read and passes_filters(text, filters)
        (delivered if ok else dropped).add(headers["Event"])
    assert delivered >= NEEDED_EVENTS
    assert dropped == {"CEL", "RTCPSent", "RTCPReceived", "SuccessfulAuth", "InvalidPassword"}


def test_the_account_may_send_what_the_bridge_sends_and_nothing_wider(manager):
    account = section(manager, "callbridge")
    read, write = classes(account.one("read")), classes(account.one("write"))
    assert "all" not in read | write
    assert read == {"system", "call", "agent", "dialplan", "cdr", "user"}
    assert write == {"originate", "reporting", "agent", "call"}
    for action, needs in ACTION_CLASSES.items():
        assert not needs or needs & write, action


def acl_allows(rules: list[tuple[str, str]], address: str) -> bool:
    """main/acl.c: start allowing, the last matching rule wins; an IPv4 rule never matches an
    IPv6 address, an IPv6 rule sees an IPv4 address as ::ffff:a.b.c.d."""
    allowed, addr = True, ipaddress.ip_address(address)
    for sense, network in rules:
        net = ipaddress.ip_network(network, strict=False)
        probe = addr
        if net.version == 6 and addr.version == 4:
            probe = ipaddress.IPv6Address(f"::ffff:{addr}")
        if net.version == probe.version and probe in net:
            allowed = sense == "permit"
    return allowed


def test_the_account_is_reachable_from_loopback_only(manager):
    general, account = section(manager, "general"), section(manager, "callbridge")
    assert (general.one("enabled"), general.one("bindaddr")) == ("yes", "127.0.0.1")
    assert general.one("webenabled") == "no"
    rules = [(key, value) for key, value in account.items if key in ("permit", "deny")]
    assert acl_allows(rules, "127.0.0.1")
    for outsider in ("192.168.1.20", "10.0.0.1", "::1", "2001:db8::1", "127.0.0.2"):
        assert not acl_allows(rules, outsider), outsider


def test_the_account_settings_the_bridge_counts_on(manager):
    general, account = section(manager, "general"), section(manager, "callbridge")
    assert general.one("timestampevents") == "yes"
    assert general.one("displayconnects") == account.one("displayconnects") == "no"
    assert account.one("secret") == "CHANGE_ME"  # a placeholder, never a real secret


def test_every_transfer_queue_has_its_extension_and_is_configured(plan):
    """An agent may transfer to the queues of ``transfer_queues``: each is a ``queue-<name>``
    extension of ``callbridge-transfer`` (the hold context's two extensions too)."""
    from crm_bridge.settings import Settings

    queues = {s.name for s in read_conf(DIALPLANS / "queues.conf")} - {"general"}
    wanted = Settings(serving=False).transfer_queues
    assert set(wanted) <= queues
    assert {f"queue-{name}" for name in wanted} | {"_1XXX", "_9XX.", "hangup"} <= (
        plan["callbridge-transfer"].keys()
    )
    assert {"customer", "agent"} <= plan["callbridge-hold"].keys()
