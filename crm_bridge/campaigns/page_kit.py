"""What the campaign pages share: their headers, the labels they show, the roles they let in,
the page renderer, and the campaign form (read, checked, and kept as typed when refused).

A greeting upload is converted to what Asterisk plays (:mod:`crm_bridge.campaigns.greetings`:
8 kHz mono 16-bit WAV, whatever it came as), stored in ``<data_dir>/greetings`` under a
generated name; the campaign's page plays it back (``GET /campaigns/{id}/greeting``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Request, status
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from crm_bridge.accounts import auth
from crm_bridge.accounts.auth import SignedInUser
from crm_bridge.campaigns import greetings
from crm_bridge.campaigns.dial_decision import REASON_LABELS, OnMachine, PolicyIn
from crm_bridge.campaigns.rules import FESTIVALS, parse_rules
from crm_bridge.customers.numbers import mask_phone
from crm_bridge.db.models import (
    Campaign,
    Customer,
)
from crm_bridge.runtime import runtime_of
from crm_bridge.web.pages import (
    PAGE_HEADERS,
    ROLE_LABELS,
    page_templates,
)
from crm_bridge.web.request_guards import BODY_ALLOWED_CONTROLS, CONTROL_CHARACTER, has_control

PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; media-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)


CAMPAIGN_PAGE_HEADERS = PAGE_HEADERS | {"Content-Security-Policy": PAGE_POLICY}


KIND_LABELS = {
    "return_visit": "回访 Return visit",
    "birthday": "生日祝福 Birthday",
    "festival": "节日问候 Festival",
    "complaint_followup": "投诉回访 Complaint follow-up",
    "promotion": "促销通知 Promotion",
}


MODE_LABELS = {
    "message": "播放录音 Message",
    "agent": "转坐席 Agent",
    "preview": "预览外呼 Preview",
}


STATUS_LABELS = {
    "draft": "草稿 Draft",
    "running": "进行中 Running",
    "paused": "已暂停 Paused",
    "stopped": "已停止 Stopped",
    "done": "已完成 Done",
}


OUTCOME_LABELS = {
    "answered": "接通 Answered",
    "machine": "答录机 Answering machine",
    "busy": "忙 Busy",
    "no_answer": "未接 No answer",
    "congestion": "线路拥塞 Congestion",
    "failed": "失败 Failed",
    "lost": "未发出 Not placed",
    "unknown": "未知 Unknown",
}


ON_MACHINE_LABELS = {
    "hang_up": "挂断，稍后按重拨间隔再呼 Hang up and call again after the retry delay",
    "message": "提示音后留言 Leave the greeting after the beep",
}


WEEKDAYS = ("一", "二", "三", "四", "五", "六", "日")


RETRY_KEYS = ("busy", "no_answer", "congestion", "failed", "machine")
"""The outcomes the form sets a retry delay for (each a ``retry_<outcome>`` field)."""


ACTIONS = {
    "start": "开始 Start",
    "pause": "暂停 Pause",
    "resume": "继续 Resume",
    "stop": "停止 Stop",
}


PREVIEW_SAMPLE = 20


Scheduler = Annotated[SignedInUser, Depends(auth.require_role("scheduler", "admin"))]






class CampaignForm(BaseModel):
    """The campaign form's fields, as posted."""

    name: str = Field(min_length=1, max_length=128)
    kind: Literal["return_visit", "birthday", "festival", "complaint_followup", "promotion"]
    mode: Literal["message", "agent", "preview"]
    rule_birthday: bool = False
    rule_after_purchase: bool = False
    after_purchase_days: int = 7
    rule_top_spenders: bool = False
    top_n: int = 10
    include_important: bool = False
    rule_complaint_followup: bool = False
    complaint_days: int = 1
    rule_festival: bool = False
    festivals: list[str] = Field(default_factory=list)
    rule_uploaded: bool = False
    uploaded: str = Field(default="", max_length=2_000_000)
    start: time = time(9, 0)
    end: time = time(20, 0)
    weekdays: list[int] = Field(default_factory=list)
    blackout: str = Field(default="", max_length=4000)
    max_attempts: int = 3
    retry_busy: float = 10
    retry_no_answer: float = 60
    retry_congestion: float = 5
    retry_failed: float = 30
    retry_machine: float = 120
    on_machine: OnMachine = "hang_up"

    def rules(self) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = []
        if self.rule_birthday:
            rules.append({"kind": "birthday"})
        if self.rule_after_purchase:
            rules.append({"kind": "after_purchase", "days": self.after_purchase_days})
        if self.rule_top_spenders:
            rules.append(
                {
                    "kind": "top_spenders",
                    "top_n": self.top_n,
                    "include_important": self.include_important,
                }
            )
        if self.rule_complaint_followup:
            rules.append({"kind": "complaint_followup", "days_after": self.complaint_days})
        if self.rule_festival:
            rules.append({"kind": "festival", "festivals": self.festivals})
        if self.rule_uploaded:
            entries = [line.strip() for line in self.uploaded.replace(",", "\n").splitlines()]
            rules.append({"kind": "uploaded", "entries": [e for e in entries if e]})
        return rules

    def policy(self) -> dict[str, Any]:
        blackout = [part.strip() for part in self.blackout.replace("，", ",").split(",")]
        return {
            "start": self.start.isoformat("minutes"),
            "end": self.end.isoformat("minutes"),
            "weekdays": self.weekdays,
            "blackout_dates": [b for b in blackout if b],
            "max_attempts": self.max_attempts,
            "retry_minutes": {
                "busy": self.retry_busy,
                "no_answer": self.retry_no_answer,
                "congestion": self.retry_congestion,
                "failed": self.retry_failed,
                "machine": self.retry_machine,
            },
            "on_machine": self.on_machine,
        }


def form_values(form) -> dict[str, Any]:
    """The posted form as :class:`CampaignForm` takes it (checkboxes and repeated fields)."""
    values: dict[str, Any] = {k: v for k, v in form.items() if not isinstance(v, str) or v != ""}
    values.pop("csrf_token", None)
    values.pop("greeting", None)
    values.pop("kept_greeting", None)
    values["festivals"] = form.getlist("festivals")
    values["weekdays"] = form.getlist("weekdays")
    for flag in (
        "rule_birthday",
        "rule_after_purchase",
        "rule_top_spenders",
        "rule_complaint_followup",
        "rule_festival",
        "rule_uploaded",
        "include_important",
    ):
        values[flag] = flag in form
    return values


FIELD_OF_LOCATION = {
    "blackout_dates": "blackout",
    "days": "after_purchase_days",
    "days_after": "complaint_days",
    "entries": "uploaded",
}
"""Where an error of the policy or the rules is shown: the form field that holds the value."""
MESSAGES = {
    "missing": "必填 / Required",
    "string_too_short": "必填 / Required",
    "string_too_long": "太长 / Too long",
    "int_parsing": "请填整数 / Enter a whole number",
    "int_from_float": "请填整数 / Enter a whole number",
    "float_parsing": "请填数字 / Enter a number",
    "time_parsing": "时间格式为 HH:MM / A time as HH:MM",
    "time_from_datetime_parsing": "时间格式为 HH:MM / A time as HH:MM",
    "date_parsing": "日期格式为 YYYY-MM-DD，如 2026-10-01 / A date as YYYY-MM-DD, e.g. 2026-10-01",
    "date_from_datetime_parsing":
        "日期格式为 YYYY-MM-DD，如 2026-10-01 / A date as YYYY-MM-DD, e.g. 2026-10-01",
    "literal_error": "请从列表中选择 / Pick one from the list",
    "greater_than_equal": "太小 / Too small",
    "greater_than": "太小 / Too small",
    "less_than_equal": "太大 / Too large",
    "less_than": "太大 / Too large",
}  # fmt: skip
"""What the form says of a value pydantic refused, by pydantic's error type."""


@dataclass
class CheckedForm:
    """A posted campaign form, checked: the values to store when it passed, else what to say
    (beside each field, and above the form for what belongs to no one field), and always the
    form as typed, to show it again."""

    typed: dict[str, Any]
    data: CampaignForm | None = None
    stored: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    field_errors: dict[str, str] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        return bool(self.errors or self.field_errors)


def validated_form(form, need_rules: bool = True) -> CheckedForm:
    """The form, its rules and policy checked, every error in zh-CN and English. A started
    campaign's list is fixed, so its edit form sends no rules (``need_rules=False``)."""
    checked = CheckedForm(typed_form(form))
    for name, value in form.multi_items():
        if isinstance(value, str) and has_control(value, BODY_ALLOWED_CONTROLS):
            if name in checked.typed:
                checked.field_errors[name] = CONTROL_CHARACTER
            else:
                checked.errors.append(f"{name}: {CONTROL_CHARACTER}")
    if checked.refused:  # refused, but the rest is checked (without the characters)
        form = FormData([(k, _without_controls(v)) for k, v in form.multi_items()])
    try:
        checked.data = CampaignForm.model_validate(form_values(form))
        rules = parse_rules(checked.data.rules())
        policy = PolicyIn.model_validate(checked.data.policy())
    except ValidationError as exc:
        _say_where(checked, exc)
        checked.data = None
        return checked
    if need_rules and not rules:
        checked.errors.append("请至少选择一条名单规则 / Pick at least one audience rule")
    checked.stored = {"rules": [r.model_dump(mode="json") for r in rules],
                      "policy": policy.model_dump(mode="json")}  # fmt: skip
    return checked


def _say_where(checked: CheckedForm, exc: ValidationError) -> None:
    for error in exc.errors():
        names = [str(part) for part in error["loc"] if isinstance(part, str)]
        name = names[-1] if names else ""
        if len(names) > 1 and names[-2] == "retry_minutes":
            name = f"retry_{names[-1]}"
        name = FIELD_OF_LOCATION.get(name, name)
        message = MESSAGES.get(error["type"], f"填写有误 / Not valid: {error['msg']}")
        if isinstance(error.get("input"), str) and error["type"] not in ("missing",):
            message = f"“{error['input'][:40]}”: {message}"
        if name in checked.typed:
            checked.field_errors.setdefault(name, message)
        else:
            checked.errors.append(message)


def _without_controls(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    return "".join(ch for ch in value if not has_control(ch, BODY_ALLOWED_CONTROLS))


async def save_greeting(upload: UploadFile, folder: Path) -> str:
    """Convert an uploaded greeting to what Asterisk plays and store it under a generated name
    in ``folder``; return the name. Raises :class:`GreetingRefused` (zh-CN / English)."""
    data = await upload.read(greetings.MAX_GREETING_BYTES + 1)
    return await run_in_threadpool(greetings.store, data, folder)


templates = page_templates()


def page(request: Request, user: SignedInUser, name: str, context: dict[str, Any], code=200):
    context = {
        "user": user,
        "csrf_token": user.csrf_token,
        "role_labels": ROLE_LABELS,
        "kinds": KIND_LABELS,
        "modes": MODE_LABELS,
        "statuses": STATUS_LABELS,
        "outcomes": OUTCOME_LABELS,
        "on_machine_labels": ON_MACHINE_LABELS,
        "reasons": REASON_LABELS,
        "festival_choices": FESTIVALS,
        "weekday_names": WEEKDAYS,
        "retry_keys": RETRY_KEYS,
        "actions": ACTIONS,
        **context,
    }
    return templates.TemplateResponse(
        request, name, context, status_code=code, headers=CAMPAIGN_PAGE_HEADERS
    )




def load(request: Request, campaign_id: int) -> Campaign:
    with runtime_of(request).sessions() as session:
        campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="没有这个活动 / No such campaign")
    return campaign


def blank(text: str | None) -> str | None:
    return (text or "").strip() or None


def sample_rows(session, ids: list[int], reasons: dict[int, str] | None = None) -> list[dict]:
    """Names, card nos. and masked first numbers of a few customers, for the preview."""
    if not ids:
        return []
    rows = {c.id: c for c in session.scalars(select(Customer).where(Customer.id.in_(ids)))}
    out = []
    for cid in ids:
        customer = rows[cid]
        phone = customer.phones[0].number_e164 if customer.phones else ""
        out.append(
            {
                "card_no": customer.card_no,
                "name": customer.name,
                "phone": mask_phone(phone),
                "reason": REASON_LABELS.get((reasons or {}).get(cid, ""), ""),
            }
        )
    return out


def form_of(campaign: Campaign) -> dict[str, Any]:
    """The campaign as its form shows it (the shape of :func:`typed_form`)."""
    rules = {rule["kind"]: rule for rule in campaign.rules or []}
    policy = PolicyIn.model_validate(campaign.policy or {})
    top = rules.get("top_spenders", {})
    return {
        "name": campaign.name, "kind": campaign.kind, "mode": campaign.mode,
        "rules": set(rules),
        "after_purchase_days": rules.get("after_purchase", {}).get("days", 7),
        "top_n": top.get("top_n", 10),
        "include_important": top.get("include_important", True),
        "complaint_days": rules.get("complaint_followup", {}).get("days_after", 1),
        "festivals": rules.get("festival", {}).get("festivals", []),
        "uploaded": "\n".join(rules.get("uploaded", {}).get("entries", [])),
        "start": policy.start.strftime("%H:%M"), "end": policy.end.strftime("%H:%M"),
        "weekdays": list(policy.weekdays),
        "blackout": ", ".join(d.isoformat() for d in policy.blackout_dates),
        "max_attempts": policy.max_attempts, "on_machine": policy.on_machine,
        **{f"retry_{key}": f"{policy.retry_minutes[key]:g}" for key in RETRY_KEYS},
        "kept_greeting": "", "kept_greeting_seconds": None,
    }  # fmt: skip


def new_form() -> dict[str, Any]:
    """An empty form: a new campaign's defaults."""
    return form_of(Campaign(name="", kind="return_visit", mode="message", rules=[], policy={}))


def typed_form(form) -> dict[str, Any]:
    """The posted form as it was typed (the shape of :func:`form_of`), to show it again."""
    shown = new_form()
    for name in ("name", "kind", "mode", "after_purchase_days", "top_n", "complaint_days",
                 "uploaded", "start", "end", "blackout", "max_attempts", "on_machine",
                 *(f"retry_{key}" for key in RETRY_KEYS)):  # fmt: skip
        value = form.get(name)
        if isinstance(value, str):
            shown[name] = _without_controls(value)
    shown["rules"] = {kind for kind in RULE_FLAGS if f"rule_{kind}" in form}
    shown["include_important"] = "include_important" in form
    shown["festivals"] = form.getlist("festivals")
    shown["weekdays"] = [int(d) for d in form.getlist("weekdays") if str(d).isdigit()]
    return shown


RULE_FLAGS = ("birthday", "after_purchase", "top_spenders", "complaint_followup", "festival",
              "uploaded")  # fmt: skip
"""The audience rules the form offers, by kind (each a ``rule_<kind>`` checkbox)."""
RULE_FIELDS = ("rules", "after_purchase_days", "top_n", "include_important", "complaint_days",
               "festivals", "uploaded")  # fmt: skip
"""The form's values that make up its rules (fixed once a campaign has started)."""
