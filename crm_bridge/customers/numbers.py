"""Phone numbers at the edge: normalised once with ``phonenumbers``, masked in every log line.

A caller ID, a number typed in an import file or a campaign target becomes one
:class:`PhoneNumber`: an E.164 number (``+8613800138000``), a withheld number, an internal
extension (``1001``) or an invalid value with the reason. The archive stores E.164 only.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from phonenumbers import shortnumberinfo

from telephony.masking import mask_number

MAX_EXTENSION_DIGITS = 6
"""Digit strings up to this length that are no public number are PBX extensions."""

_WITHHELD = frozenset(
    {
        "",
        "anonymous",
        "withheld",
        "private",
        "unknown",
        "<unknown>",
        "restricted",
        "unavailable",
    }
)
_SEPARATORS = re.compile(r"[\s\-.()（）/]")
_DIALABLE = re.compile(r"\+?\d+")


class PhoneKind(StrEnum):
    E164 = "e164"
    WITHHELD = "withheld"
    INTERNAL = "internal"
    INVALID = "invalid"


class InvalidReason(StrEnum):
    """Why a value is no usable phone number; the value is also a readable English phrase."""

    NOT_A_NUMBER = "not a phone number"
    SERVICE_NUMBER = "a public service short number"
    NO_AREA_CODE = "no area code"
    TOO_SHORT = "too short"
    TOO_LONG = "too long"
    BAD_COUNTRY_CODE = "unknown country code"
    NOT_VALID = "not a valid number"


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """The outcome of :func:`normalize_phone`.

    ``value`` is the E.164 number for ``E164``, the extension digits for ``INTERNAL`` and None
    otherwise; ``reason`` is set for ``INVALID`` only. The repr masks the number so an object
    that slips into a log line does not leak it.
    """

    kind: PhoneKind
    value: str | None = None
    reason: InvalidReason | None = None

    @property
    def e164(self) -> str | None:
        return self.value if self.kind is PhoneKind.E164 else None

    @property
    def is_e164(self) -> bool:
        return self.kind is PhoneKind.E164

    def __repr__(self) -> str:
        details = [f"kind={self.kind.value!r}"]
        if self.value is not None:
            details.append(f"value={mask_phone(self.value)!r}")
        if self.reason is not None:
            details.append(f"reason={self.reason.value!r}")
        return f"PhoneNumber({', '.join(details)})"


WITHHELD = PhoneNumber(PhoneKind.WITHHELD)


NUMBERS_REMEMBERED = 4096
"""The last numbers :func:`normalize_phone` read, kept with their answers: a ringing call's
number is read by its pop, its lookup and the wallboard within one turn of the event loop, and
phonenumbers' parse is most of each read."""


@functools.lru_cache(maxsize=NUMBERS_REMEMBERED)
def normalize_phone(
    raw: str | None, region: str = "CN", outside_line_prefix: str | None = None
) -> PhoneNumber:
    """Classify and normalise one phone number as a caller ID, an import cell or a dial target.

    ``region`` is where the number was dialled from (national forms like ``010-12345678`` are
    read in it); ``outside_line_prefix`` is what the PBX prepends for an outside line (``9``):
    it is stripped when what follows is longer than an extension, unless only the unstripped
    digits make a valid number.
    """
    text = (raw or "").strip()
    if text.lower() in _WITHHELD:
        return WITHHELD
    compact = _SEPARATORS.sub("", text)
    if not _DIALABLE.fullmatch(compact):
        return _invalid(InvalidReason.NOT_A_NUMBER)
    dialled = ("+" if compact.startswith("+") else "") + phonenumbers.normalize_digits_only(compact)
    candidates = _candidates(dialled, outside_line_prefix)
    for candidate in candidates:
        e164 = _valid_e164(candidate, region)
        if e164 is not None:
            return PhoneNumber(PhoneKind.E164, e164)
    return _classify_invalid(candidates[0], region)


def _candidates(dialled: str, outside_line_prefix: str | None) -> list[str]:
    """The digits to try, the prefix-stripped form first."""
    prefix = outside_line_prefix or ""
    stripped = dialled[len(prefix) :]
    if prefix and dialled.startswith(prefix) and len(stripped) > MAX_EXTENSION_DIGITS:
        return [stripped, dialled]
    return [dialled]


def _valid_e164(candidate: str, region: str) -> str | None:
    try:
        parsed = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _classify_invalid(candidate: str, region: str) -> PhoneNumber:
    """Internal extension, or invalid with the most telling reason."""
    if not candidate.startswith("+") and len(candidate) <= MAX_EXTENSION_DIGITS:
        if _is_service_number(candidate, region):
            return _invalid(InvalidReason.SERVICE_NUMBER)
        return PhoneNumber(PhoneKind.INTERNAL, candidate)
    try:
        parsed = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            return _invalid(InvalidReason.BAD_COUNTRY_CODE)
        return _invalid(InvalidReason.NOT_VALID)
    possible = phonenumbers.is_possible_number_with_reason(parsed)
    reason = {
        phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: InvalidReason.BAD_COUNTRY_CODE,
        phonenumbers.ValidationResult.TOO_SHORT: InvalidReason.TOO_SHORT,
        phonenumbers.ValidationResult.TOO_LONG: InvalidReason.TOO_LONG,
    }.get(possible)
    if reason is not None:
        return _invalid(reason)
    if _looks_local(candidate, region):
        return _invalid(InvalidReason.NO_AREA_CODE)
    return _invalid(InvalidReason.NOT_VALID)


def _is_service_number(digits: str, region: str) -> bool:
    """A public short code of the region (10086, 12345, 110), which is no extension."""
    try:
        parsed = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return False
    return shortnumberinfo.is_valid_short_number_for_region(parsed, region)


def _looks_local(candidate: str, region: str) -> bool:
    """A 7-8 digit subscriber number dialled without the trunk prefix and area code.

    Only explains the rejection: such a number cannot be placed in a city.
    """
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    trunk_prefix = metadata.national_prefix if metadata is not None else None
    return (
        bool(trunk_prefix)
        and not candidate.startswith(("+", trunk_prefix))
        and len(candidate) in (7, 8)
    )


def _invalid(reason: InvalidReason) -> PhoneNumber:
    return PhoneNumber(PhoneKind.INVALID, reason=reason)


def mask_phone(value: str | None) -> str:
    """Hide the middle of a phone number for logs: ``13800138000`` -> ``138****8000``.

    The rule is :func:`telephony.masking.mask_number`'s (one rule for both packages); only an
    empty value differs: it gives ``""`` here.
    """
    return mask_number(value) if value else ""
