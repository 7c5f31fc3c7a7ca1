"""Phone numbers as they arrive from trunks, agents and import files."""

from __future__ import annotations

import pytest

from crm_bridge.customers.numbers import (
    InvalidReason,
    PhoneKind,
    PhoneNumber,
    mask_phone,
    normalize_phone,
)

E164, WITHHELD, INTERNAL, INVALID = PhoneKind

# raw value, outside-line prefix, expected kind, expected E.164 / extension / reason
CASES = [
    ("+8613800138000", None, E164, "+8613800138000"),
    ("008613800138000", None, E164, "+8613800138000"),
    ("8613800138000", None, E164, "+8613800138000"),
    ("86 13800138000", None, E164, "+8613800138000"),
    ("13800138000", None, E164, "+8613800138000"),
    ("138-0013-8000", None, E164, "+8613800138000"),
    (" 138 0013 8000 ", None, E164, "+8613800138000"),
    ("１３８００１３８０００", None, E164, "+8613800138000"),
    ("9 13800138000", "9", E164, "+8613800138000"),
    ("913800138000", "9", E164, "+8613800138000"),
    ("013800138000", "0", E164, "+8613800138000"),
    ("01012345678", "0", E164, "+861012345678"),  # no prefix sent: still Beijing
    ("01012345678", None, E164, "+861012345678"),
    ("010-12345678", None, E164, "+861012345678"),
    ("075512345678", None, E164, "+8675512345678"),
    ("(0755)12345678", None, E164, "+8675512345678"),
    ("0755 1234 5678", None, E164, "+8675512345678"),
    ("02112345678", None, E164, "+862112345678"),
    ("4008001234", None, E164, "+864008001234"),
    ("+1 650 253 0000", None, E164, "+16502530000"),
    ("0016502530000", None, E164, "+16502530000"),
    ("+852 2123 4567", None, E164, "+85221234567"),
    ("anonymous", None, WITHHELD, None),
    ("Anonymous", None, WITHHELD, None),
    ("<unknown>", None, WITHHELD, None),
    ("withheld", None, WITHHELD, None),
    ("Private", None, WITHHELD, None),
    ("unknown", None, WITHHELD, None),
    ("restricted", None, WITHHELD, None),
    ("", None, WITHHELD, None),
    ("   ", None, WITHHELD, None),
    (None, None, WITHHELD, None),
    ("1001", None, INTERNAL, "1001"),
    ("1002", "9", INTERNAL, "1002"),
    ("9001", "9", INTERNAL, "9001"),  # an extension starting with the prefix stays whole
    ("800123", None, INTERNAL, "800123"),
    ("12345", None, INVALID, InvalidReason.SERVICE_NUMBER),  # the citizens' hotline
    ("10086", None, INVALID, InvalidReason.SERVICE_NUMBER),
    ("abc", None, INVALID, InvalidReason.NOT_A_NUMBER),
    ("138OO138OOO", None, INVALID, InvalidReason.NOT_A_NUMBER),
    ("12345678", None, INVALID, InvalidReason.NO_AREA_CODE),  # which city?
    ("62345678", None, INVALID, InvalidReason.NO_AREA_CODE),
    ("1380013800", None, INVALID, InvalidReason.NOT_VALID),  # a digit short
    ("138001380001", None, INVALID, InvalidReason.NOT_VALID),  # a digit long
    ("+999123456789", None, INVALID, InvalidReason.BAD_COUNTRY_CODE),
    ("+1001", None, INVALID, InvalidReason.TOO_SHORT),
    ("12345678901234567890", None, INVALID, InvalidReason.TOO_LONG),
]


@pytest.mark.parametrize(("raw", "prefix", "kind", "expected"), CASES)
def test_normalize_phone(raw, prefix, kind, expected):
    number = normalize_phone(raw, "CN", prefix)
    assert number.kind is kind
    if kind is INVALID:
        assert number.reason is expected
        assert number.value is None
    else:
        assert number.value == expected
        assert number.reason is None
    assert number.e164 == (expected if kind is E164 else None)
    assert number.is_e164 is (kind is E164)


def test_region_decides_how_national_numbers_are_read():
    assert normalize_phone("(650) 253-0000", "US").e164 == "+16502530000"
    assert normalize_phone("(650) 253-0000", "CN").kind is INVALID
    assert normalize_phone("+8613800138000", "US").e164 == "+8613800138000"


def test_repr_masks_the_number():
    number = normalize_phone("13800138000")
    assert "13800138000" not in repr(number)
    assert "138****8000" in repr(number)
    assert repr(PhoneNumber(PhoneKind.INVALID, reason=InvalidReason.TOO_LONG)) == (
        "PhoneNumber(kind='invalid', reason='too long')"
    )


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("+8613800138000", "+86 138****8000"),
        ("13800138000", "138****8000"),
        ("138-0013-8000", "138****8000"),
        ("008613800138000", "008********8000"),
        ("+861012345678", "+86 101***5678"),
        ("+16502530000", "+1 650***0000"),
        ("12345678", "123*5678"),
        ("sip:13800138000@pbx", "sip:138****8000@pbx"),
        ("1001", "1001"),
        ("1234567", "1234567"),
        ("anonymous", "anonymous"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_phone(value, masked):
    assert mask_phone(value) == masked


@pytest.mark.parametrize(
    "e164", sorted({expected for _, _, kind, expected in CASES if kind is E164})
)
def test_masking_hides_the_middle_of_every_valid_number(e164):
    national = e164[3:] if e164.startswith(("+86", "+85")) else e164[2:]
    masked = mask_phone(e164)
    assert "*" in masked
    assert national not in masked
    assert masked.endswith(e164[-4:])
