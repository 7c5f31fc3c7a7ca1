"""AMI framing and encoding (telephony.ami_codec) and log masking (telephony.masking)."""

import random
from pathlib import Path

import pytest

from telephony.ami_codec import (
    MAX_LINE_BYTES,
    AmiFramer,
    AmiProtocolError,
    UnsafeAmiValue,
    encode_action,
    parse_frame,
)
from telephony.masking import mask_number, redact_frame_for_log
from telephony.trace_files import RECORDED_TRACES

SIP = RECORDED_TRACES / "sip"
ZHANG_SAN = "张三"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"


def one_shot(data: bytes) -> list[dict[str, str]]:
    return AmiFramer().feed(data)


def in_chunks(data: bytes, sizes: list[int]) -> list[dict[str, str]]:
    framer, out, pos = AmiFramer(), [], 0
    for size in sizes:
        out += framer.feed(data[pos : pos + size])
        pos += size
    out += framer.feed(data[pos:])
    return out


# --------------------------------------------------------------------------- framing


def test_a_chinese_name_split_at_every_offset_arrives_whole() -> None:
    data = (SIP / "a_inbound_answered_1001.ami").read_bytes()
    name_at = data.index(ZHANG_SAN.encode())
    frame_start = data.rindex(b"\r\n\r\n", 0, name_at) + 4
    frame_end = data.index(b"\r\n\r\n", name_at) + 4
    # The frame holding the first 张三 and the frame after it: every cut inside is covered.
    prefix = data[: data.index(b"\r\n\r\n", frame_end) + 4]
    expected = one_shot(prefix)
    assert expected[-2]["CallerIDName"] == ZHANG_SAN

    for cut in range(frame_start, frame_end + 1):
        framer = AmiFramer()
        got = framer.feed(prefix[:cut]) + framer.feed(prefix[cut:])
        assert got == expected, f"cut at byte {cut}"
        assert framer.buffered == 0


@pytest.mark.parametrize("path", sorted(SIP.glob("*.ami")), ids=lambda p: p.stem)
def test_random_chunking_gives_the_same_frames_as_one_read(path: Path) -> None:
    data = path.read_bytes()
    expected = one_shot(data)
    rng = random.Random(path.stem)
    sizes = [rng.randint(1, 3000) for _ in range(len(data) // 1500 + 1)]
    assert in_chunks(data, sizes) == expected
    names = "".join(f.get("CallerIDName", "") for f in expected)
    assert "\ufffd" not in names


def test_the_chinese_name_survives_one_byte_reads() -> None:
    data = (SIP / "a_inbound_answered_1001.ami").read_bytes()[:6000]
    frames = in_chunks(data, [1] * len(data))
    assert frames == one_shot(data)
    assert any(f.get("CallerIDName") == ZHANG_SAN for f in frames)


def test_the_banner_is_exposed_and_has_no_blank_line_after_it() -> None:
    framer = AmiFramer()
    assert framer.feed(b"Asterisk Call") == []
    assert framer.banner is None
    frames = framer.feed(b" Manager/11.0.0\r\nResponse: Success\r\nActionID: a-1\r\n\r\n")
    assert framer.banner == "Asterisk Call Manager/11.0.0"
    assert frames == [{"Response": "Success", "ActionID": "a-1"}]


def test_a_peer_that_is_not_asterisk_is_refused() -> None:
    with pytest.raises(AmiProtocolError, match="banner"):
        AmiFramer().feed(b"HTTP/1.1 400 Bad Request\r\n\r\n")


def test_several_frames_in_one_read_come_out_in_wire_order() -> None:
    data = BANNER + b"".join(
        f"Event: {name}\r\nPrivilege: call,all\r\nUniqueid: 1795346712.{n}\r\n\r\n".encode()
        for n, name in enumerate(["Newchannel", "Newstate", "DialBegin", "Hangup"])
    )
    frames = AmiFramer().feed(data)
    assert [f["Event"] for f in frames] == ["Newchannel", "Newstate", "DialBegin", "Hangup"]
    assert [f["Uniqueid"] for f in frames] == [f"1795346712.{n}" for n in range(4)]


def test_bare_lf_line_ends_are_tolerated() -> None:
    frames = AmiFramer().feed(BANNER + b"Event: A\nX: 1\n\nEvent: B\r\nX: 2\r\n\n")
    assert frames == [{"Event": "A", "X": "1"}, {"Event": "B", "X": "2"}]


def test_header_lines_parse_like_asterisk_writes_them() -> None:
    raw = b"Event: Newexten\r\nAccountCode: \r\nEmpty:\r\nAppData: a: b\r\nno colon here\r\n"
    assert parse_frame(raw) == [
        ("Event", "Newexten"),
        ("AccountCode", ""),
        ("Empty", ""),
        ("AppData", "a: b"),
    ]


def test_a_repeated_header_keeps_its_last_value_in_the_dict() -> None:
    frames = AmiFramer().feed(BANNER + b"Event: X\r\nOutput: one\r\nOutput: two\r\n\r\n")
    assert frames == [{"Event": "X", "Output": "two"}]


def test_undecodable_bytes_are_replaced_not_dropped() -> None:
    frames = AmiFramer().feed(BANNER + b"Event: X\r\nCallerIDName: \xff\xfe\xe5\xbc\r\n\r\n")
    assert frames == [{"Event": "X", "CallerIDName": "\ufffd\ufffd\ufffd"}]


def test_junk_and_truncated_frames_do_not_crash() -> None:
    framer = AmiFramer()
    junk = bytes(range(256)).replace(b"\n", b"")
    frames = framer.feed(
        BANNER + junk + b"\r\n\r\nno colon\r\n\r\n\r\n\r\nEvent: Ok\r\n\r\nEvent: Cut"
    )
    assert frames == [{"Event": "Ok"}]
    assert framer.buffered == len(b"Event: Cut")


def test_an_endless_message_is_refused_instead_of_buffered() -> None:
    framer = AmiFramer(max_frame_bytes=10_000)
    framer.feed(BANNER)
    with pytest.raises(AmiProtocolError, match="exceeds"):
        for _ in range(100):
            framer.feed(b"X" * 500 + b"\r\n")
    assert framer.buffered == 0


def test_the_default_cap_is_one_mebibyte() -> None:
    framer = AmiFramer()
    framer.feed(BANNER + b"A" * (1024 * 1024))
    with pytest.raises(AmiProtocolError):
        framer.feed(b"A")


# --------------------------------------------------------------------------- encoding


def test_encode_action_writes_crlf_lines_and_a_blank_line() -> None:
    data = encode_action(
        "Originate",
        [
            ("ActionID", "cb-1"),
            ("Channel", "PJSIP/1001"),
            ("Variable", "CAMPAIGN=birthday"),
            ("Variable", "CUSTOMER_ID=C10086"),
            ("Timeout", 30000),
        ],
    )
    assert data == (
        b"Action: Originate\r\nActionID: cb-1\r\nChannel: PJSIP/1001\r\n"
        b"Variable: CAMPAIGN=birthday\r\nVariable: CUSTOMER_ID=C10086\r\nTimeout: 30000\r\n\r\n"
    )


def test_encode_action_takes_a_mapping_and_utf8() -> None:
    data = encode_action("Originate", {"CallerID": '"诊所" <4008001234>'})
    assert data == 'Action: Originate\r\nCallerID: "诊所" <4008001234>\r\n\r\n'.encode()


INJECTION = '"x" <1>\r\nAction: Command\r\nCommand: core restart now'


@pytest.mark.parametrize(
    "value",
    [INJECTION, "a\nb", "a\rb", "a\x00b", "a\x1bb", "a\x0cb"],
)
def test_control_characters_are_refused_without_echoing_the_value(value: str) -> None:
    with pytest.raises(UnsafeAmiValue) as refused:
        encode_action("Originate", [("CallerID", value)])
    assert "CallerID" in str(refused.value)
    assert "core restart" not in str(refused.value)
    assert value not in str(refused.value)


def test_a_tab_is_allowed() -> None:
    assert encode_action("Ping", [("X", "a\tb")]) == b"Action: Ping\r\nX: a\tb\r\n\r\n"


def test_a_secret_with_a_line_break_is_refused_and_not_echoed() -> None:
    with pytest.raises(UnsafeAmiValue) as refused:
        encode_action("Login", [("Username", "bridge"), ("Secret", "hunter2\r\nEvents: on")])
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize("key", ["Caller ID", "Key:", "Ke\ny", "", "名字"])
def test_header_names_outside_the_safe_alphabet_are_refused(key: str) -> None:
    with pytest.raises(UnsafeAmiValue):
        encode_action("Originate", [(key, "x")])


def test_action_names_are_checked_too() -> None:
    with pytest.raises(UnsafeAmiValue):
        encode_action("Ping\r\nAction: Command", [])


@pytest.mark.parametrize(
    "value",
    ["CAMPAIGN=a,CUSTOMER_ID=b", "NOEQUALS", "=x", "BAD-NAME=x", "A B=x", 'A="x"', "A=x\\y"],
)
def test_unsafe_variables_are_refused(value: str) -> None:
    with pytest.raises(UnsafeAmiValue) as refused:
        encode_action("Originate", [("Variable", value)])
    assert value not in str(refused.value)


def test_getvar_and_setvar_name_one_bare_variable() -> None:
    """Their ``Variable`` is a name (Setvar's value is a header of its own), not NAME=VALUE."""
    getvar = encode_action(
        "Getvar", [("Channel", "PJSIP/carrier-00000001"), ("Variable", "CC_RECFILE")]
    )
    assert getvar.endswith(b"Variable: CC_RECFILE\r\n\r\n")
    setvar = encode_action("Setvar", [("Variable", "CC_SURVEY_SCORE"), ("Value", "5")])
    assert b"Variable: CC_SURVEY_SCORE\r\nValue: 5\r\n" in setvar
    for unsafe in ("A=1", "SHARED(x)", "A B", ""):
        with pytest.raises(UnsafeAmiValue, match="NAME"):
            encode_action("Getvar", [("Variable", unsafe)])
    with pytest.raises(UnsafeAmiValue, match="twice"):
        encode_action("Getvar", [("Variable", "A"), ("Variable", "B")])


def test_only_variable_may_repeat_and_action_is_not_a_header() -> None:
    with pytest.raises(UnsafeAmiValue, match="twice"):
        encode_action("Originate", [("Context", "a"), ("context", "b")])
    with pytest.raises(UnsafeAmiValue, match="Action"):
        encode_action("Originate", [("Action", "Command")])


def test_line_length_limit_matches_asterisk_input_buffer() -> None:
    # "Data: " is 6 bytes: a 1022-byte line plus CR LF fills Asterisk's 1024-byte buffer.
    longest = "x" * (MAX_LINE_BYTES - 6)
    line = encode_action("Originate", [("Data", longest)]).split(b"\r\n")[1]
    assert len(line) == 1022
    with pytest.raises(UnsafeAmiValue, match="1023 bytes"):
        encode_action("Originate", [("Data", longest + "x")])
    with pytest.raises(UnsafeAmiValue, match="1024 bytes"):
        encode_action("Originate", [("Data", longest + "xx")])


def test_line_length_counts_utf8_bytes_not_characters() -> None:
    fits = "张" * ((MAX_LINE_BYTES - 6) // 3)
    encode_action("Originate", [("Data", fits)])
    with pytest.raises(UnsafeAmiValue):
        encode_action("Originate", [("Data", fits + "张")])


def test_more_lines_than_asterisk_reads_are_refused() -> None:
    encode_action("Originate", [("Variable", f"V{n}=1") for n in range(127)])
    with pytest.raises(UnsafeAmiValue, match="128"):
        encode_action("Originate", [("Variable", f"V{n}=1") for n in range(128)])


def test_non_text_values_are_refused() -> None:
    with pytest.raises(UnsafeAmiValue):
        encode_action("Originate", [("Async", True)])  # type: ignore[list-item]


def test_encoded_actions_frame_back_to_what_was_sent() -> None:
    pairs = [("ActionID", "cb-9"), ("CallerID", '"张三" <13800138000>'), ("Variable", "A=1")]
    data = encode_action("Originate", pairs)
    assert AmiFramer(expect_banner=False).feed(data) == [{"Action": "Originate", **dict(pairs)}]


# --------------------------------------------------------------------------- masking


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("13800138000", "138****8000"),
        ("+8613800138000", "+86 138****8000"),
        ("+86 138-0013-8000", "+86 138****8000"),
        ("138 0013 8000", "138****8000"),
        ("021-6212-3456", "021****3456"),
        ("1001", "1001"),
        ("4008001234", "400***1234"),
        ("PJSIP/13900000001@carrier", "PJSIP/139****0001@carrier"),
        ("", ""),
        (None, "-"),
    ],
)
def test_mask_number(value: str | None, masked: str) -> None:
    assert mask_number(value) == masked


def test_redact_frame_for_log_hides_numbers_names_and_the_secret() -> None:
    frame = {
        "Event": "Newexten",
        "CallerIDNum": "13800138000",
        "CallerIDName": ZHANG_SAN,
        "ConnectedLineName": "<unknown>",
        "Exten": "1001",
        "Uniqueid": "1795346712.954",
        "Timestamp": "1795346712.348737",
        "AppData": 'Inbound call from "张三" <13800138000> to DID 4008001234',
        "DialString": "13900000001@carrier",
        "Secret": "hunter2",
        "_rx": 1795346712.5,
    }
    safe = redact_frame_for_log(frame)
    text = repr(safe)
    for leak in ("13800138000", ZHANG_SAN, "hunter2", "13900000001", "4008001234"):
        assert leak not in text
    assert "Secret" not in safe
    assert safe["CallerIDNum"] == "138****8000"
    assert safe["ConnectedLineName"] == "<unknown>"
    assert safe["Exten"] == "1001"
    assert safe["Uniqueid"] == "1795346712.954"
    assert safe["Timestamp"] == "1795346712.348737"
