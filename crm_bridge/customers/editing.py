"""What an agent may change of a customer outside a call (``/customers/{id}``): name, gender,
employer, department and solar birthday. The card number, VIP level, tags, numbers and
spend come from the archive's own imports and are not edited here.

:func:`read_edit` checks a whole form and raises :class:`UserInputError` with the message of
every bad field (zh-CN / English), so a page shows each beside its field and saves nothing;
:func:`apply_edit` writes what changed and returns it, for the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from crm_bridge.accounts.users import UserInputError
from crm_bridge.db.models import GENDERS, Customer

EDITABLE = ("name", "gender", "employer", "department", "birthday")
LIMITS = {"name": 64, "employer": 128, "department": 64}
"""The most characters of each text field (the columns' own lengths)."""


@dataclass(frozen=True)
class CustomerEdit:
    name: str
    gender: str | None
    employer: str | None
    department: str | None
    birthday: date | None


def read_edit(form: dict[str, str], today: date) -> CustomerEdit:
    """The edit a form asks for; :class:`UserInputError` naming every bad field."""
    values = {field: (form.get(field) or "").strip() for field in EDITABLE}
    errors: dict[str, str] = {}
    if not values["name"]:
        errors["name"] = "请填写姓名 / Enter a name"
    for field, most in LIMITS.items():
        if len(values[field]) > most:
            errors[field] = f"最多 {most} 个字 / At most {most} characters"
    if values["gender"] and values["gender"] not in GENDERS:
        errors["gender"] = "性别只能是男或女 / Gender is male or female"
    birthday = None
    if values["birthday"]:
        try:
            birthday = date.fromisoformat(values["birthday"])
        except ValueError:
            errors["birthday"] = "日期格式应为 YYYY-MM-DD / A date is YYYY-MM-DD"
        else:
            if not date(1900, 1, 1) <= birthday <= today:
                errors["birthday"] = "生日应在 1900 年至今天之间 / Born between 1900 and today"
    if errors:
        raise UserInputError(errors)
    return CustomerEdit(
        name=values["name"],
        gender=values["gender"] or None,
        employer=values["employer"] or None,
        department=values["department"] or None,
        birthday=birthday,
    )


def apply_edit(customer: Customer, edit: CustomerEdit) -> dict[str, list[str | None]]:
    """Write ``edit`` on ``customer``; returns each changed field as ``[before, after]``."""
    changed: dict[str, list[str | None]] = {}
    for field in EDITABLE:
        before, after = getattr(customer, field), getattr(edit, field)
        if before != after:
            changed[field] = [_text(before), _text(after)]
            setattr(customer, field, after)
    return changed


def _text(value: object) -> str | None:
    return None if value is None else str(value)
