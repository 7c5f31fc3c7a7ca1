"""Property tests of the AMI codec: hostile values never reach the wire, any bytes frame safely.

Hypothesis generates the inputs: values with every control character, Chinese text, commas;
streams cut at every possible place; random bytes. The properties are what Asterisk relies on.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telephony.ami_codec import (
    MAX_LINE_BYTES,
    AmiFramer,
    AmiProtocolError,
    UnsafeAmiValue,
    encode_action,
    parse_frame,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

header_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,20}", fullmatch=True).filter(
    lambda name: name.lower() not in {"action", "variable"}
)
# Any text at all, with the dangerous characters made likely.
hostile_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(["\r", "\n", "\x00", "\t", ",", "=", '"', "\\", ":", " ", "张", "三"]),
        st.characters(),
    ),
    max_size=80,
)


def _lines(wire: bytes) -> list[bytes]:
    assert wire.endswith(b"\r\n\r\n")
    return wire[:-4].split(b"\r\n")


@FUZZ
@given(
    headers=st.lists(
        st.tuples(header_names, hostile_text), max_size=6, unique_by=lambda h: h[0].lower()
    )
)
def test_an_encoded_action_is_one_message_with_exactly_its_own_lines(headers):
    try:
        wire = encode_action("Originate", headers)
    except UnsafeAmiValue:
        return
    lines = _lines(wire)
    assert len(lines) == len(headers) + 1
    assert lines[0] == b"Action: Originate"
    for line in lines:
        assert b"\n" not in line and b"\r" not in line and b"\x00" not in line
        assert len(line) <= MAX_LINE_BYTES
    # Read back, the message says what was asked and nothing more.
    assert parse_frame(wire[:-4]) == [("Action", "Originate"), *[(k, str(v)) for k, v in headers]]


@FUZZ
@given(name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True), value=hostile_text)
def test_a_variable_never_splits_into_more_variables(name, value):
    try:
        wire = encode_action("Originate", [("Variable", f"{name}={value}")])
    except UnsafeAmiValue:
        unsafe = re.search(r"[\x00-\x08\x0a-\x1f,\"\\\ud800-\udfff]", value)
        assert unsafe or len(value.encode()) > MAX_LINE_BYTES - 20
        return
    (line,) = _lines(wire)[1:]
    assert line.count(b",") == 0
    assert line.decode() == f"Variable: {name}={value}"


def test_an_injected_action_in_a_caller_name_is_refused():
    with pytest.raises(UnsafeAmiValue) as refused:
        encode_action(
            "Originate", {"CallerID": '"王五\r\nAction: Command\r\nCommand: core stop now" <1>'}
        )
    assert "Command" not in str(refused.value)  # the error names the header, not the value


wire_events = st.lists(
    st.dictionaries(
        header_names,
        st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=30),
        min_size=1,
        max_size=5,
    ),
    min_size=1,
    max_size=6,
)


def _stream(events: list[dict[str, str]], newline: bytes) -> bytes:
    body = b"".join(
        b"".join(f"{k}: {v}".encode() + newline for k, v in event.items()) + newline
        for event in events
    )
    return b"Asterisk Call Manager/11.0.0\r\n" + body


@FUZZ
@given(events=wire_events, cuts=st.lists(st.integers(min_value=0), max_size=8), crlf=st.booleans())
def test_framing_does_not_depend_on_where_the_reads_end(events, cuts, crlf):
    wire = _stream(events, b"\r\n" if crlf else b"\n")
    whole = AmiFramer().feed(wire)
    framer = AmiFramer()
    pieces, start = [], 0
    for cut in sorted({c % (len(wire) + 1) for c in cuts}) + [len(wire)]:
        pieces.extend(framer.feed(wire[start:cut]))
        start = cut
    assert pieces == whole
    assert whole == events
    assert framer.buffered == 0


@FUZZ
@given(junk=st.binary(max_size=2000), cuts=st.lists(st.integers(min_value=0), max_size=5))
def test_random_bytes_after_the_banner_never_raise_and_never_grow_without_bound(junk, cuts):
    framer = AmiFramer(max_frame_bytes=512)
    framer.feed(b"Asterisk Call Manager/11.0.0\r\n")
    start = 0
    for cut in sorted({c % (len(junk) + 1) for c in cuts}) + [len(junk)]:
        try:
            for event in framer.feed(junk[start:cut]):
                assert all(isinstance(k, str) and isinstance(v, str) for k, v in event.items())
        except AmiProtocolError:
            assert framer.buffered == 0  # an endless message is dropped, not kept
        assert framer.buffered <= 512
        start = cut


@FUZZ
@given(junk=st.binary(min_size=1, max_size=200))
def test_a_peer_that_is_not_asterisk_is_refused(junk):
    framer = AmiFramer()
    if b"Asterisk Call Manager/".startswith(junk[:22]):
        return
    with pytest.raises(AmiProtocolError):
        framer.feed(junk)
