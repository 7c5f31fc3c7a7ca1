"""The FastAGI server (``telephony/fastagi.py``) over real sockets, with a client that speaks
as Asterisk's res_agi does: the environment block, then one reply line per command."""

from __future__ import annotations

import asyncio

import pytest

from telephony.ami_codec import UnsafeAmiValue, encode_agi_set_variable
from telephony.fastagi import AgiProtocolError, AgiRequest, FastAgiServer, parse_environment

ENVIRONMENT = (
    "agi_network: yes\n"
    "agi_network_script: route\n"
    "agi_request: agi://127.0.0.1:4573/route\n"
    "agi_channel: Local/1764000000.12@callbridge-route-ask-00000001;2\n"
    "agi_language: en\n"
    "agi_type: Local\n"
    "agi_uniqueid: 1764000000.14\n"
    "agi_callerid: 13800138000\n"
    "agi_calleridname: 张三\n"
    "agi_arg_1: 13800138000\n"
    "agi_arg_2: second\n"
    "\n"
)


async def exchange(port: int, environment: str = ENVIRONMENT, reply: bytes = b"200 result=1\n"):
    """Play Asterisk: send the environment, answer every command; the commands heard."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(environment.encode())
    await writer.drain()
    heard = []
    while line := await reader.readline():
        heard.append(line.decode())
        writer.write(reply)
        await writer.drain()
    writer.close()
    return heard


@pytest.fixture
async def server_with():
    servers = []

    async def start(handler, **options) -> FastAgiServer:
        server = FastAgiServer(handler, **options)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


async def test_the_handler_gets_the_request_and_its_variables_are_set(server_with):
    seen: list[AgiRequest] = []
    answers: list[float] = []

    async def handler(request: AgiRequest):
        seen.append(request)
        return {"CC_ROUTE_ANSWER": "10|||support|VIP · 优先接入", "OTHER": "x"}

    server = await server_with(handler, on_answer=answers.append)
    heard = await exchange(server.port)
    assert heard == ['SET VARIABLE CC_ROUTE_ANSWER "10|||support|VIP · 优先接入"\n',
                     'SET VARIABLE OTHER "x"\n']  # fmt: skip
    (request,) = seen
    assert request.script == "route" and request.arguments == ("13800138000", "second")
    assert request.environment["agi_calleridname"] == "张三"
    assert server.counts.answered == 1 and len(answers) == 1


async def test_a_peer_that_is_not_asterisk_is_dropped_and_the_next_one_served(server_with):
    async def handler(request):
        return {"A": "1"}

    server = await server_with(handler)
    assert await exchange(server.port, "GET / HTTP/1.1\nHost: x\n\n") == []
    assert await exchange(server.port, "agi_network_script: route\n\n") == []  # no agi_network
    # A peer that closes inside the environment: no spinning, the server counts it failed.
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"agi_network: yes\nagi_netw")
    writer.close()
    deadline = asyncio.get_running_loop().time() + 10
    while server.counts.failed < 3 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert server.counts.failed == 3
    assert await exchange(server.port) == ['SET VARIABLE A "1"\n']


async def test_a_silent_peer_and_a_slow_handler_end_at_the_deadline(server_with):
    async def slow(request):
        await asyncio.sleep(5)
        return {"A": "1"}

    server = await server_with(slow, deadline=0.2)
    assert await asyncio.wait_for(exchange(server.port), 3) == []  # closed at the deadline
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    assert await asyncio.wait_for(reader.read(), 3) == b""  # said nothing: closed all the same
    writer.close()
    assert server.counts.failed == 2 and server.counts.answered == 0


async def test_a_refused_command_or_a_hangup_ends_the_request(server_with):
    async def handler(request):
        return {"A": "1", "B": "2"}

    server = await server_with(handler)
    assert await exchange(server.port, reply=b"HANGUP\n") == ['SET VARIABLE A "1"\n']
    assert await exchange(server.port, reply=b"510 Invalid or unknown command\n") == [
        'SET VARIABLE A "1"\n'
    ]
    assert server.counts.failed == 2


async def test_an_unsafe_answer_sends_nothing_at_all(server_with):
    async def handler(request):
        return {"A": "fine", "B": 'bad"\nEXEC System rm'}

    server = await server_with(handler)
    assert await exchange(server.port) == []
    assert server.counts.failed == 1


async def test_a_failing_handler_closes_the_request_and_the_server_goes_on(server_with):
    calls = []

    async def handler(request):
        calls.append(request)
        if len(calls) == 1:
            raise RuntimeError("database away")
        return {"A": "1"}

    server = await server_with(handler)
    assert await exchange(server.port) == []
    assert await exchange(server.port) == ['SET VARIABLE A "1"\n']


@pytest.mark.parametrize(
    ("name", "value"),
    [("A B", "x"), ("SHARED(X,chan)", "x"), ("A", "line\nEXEC Hangup"), ("A", 'quo"te'),
     ("A", "back\\slash"), ("A", "\x00"), ("A", "x" * 2100), ("A", "\ud800")],
)  # fmt: skip
def test_the_codec_refuses_what_res_agi_would_misread(name, value):
    with pytest.raises(UnsafeAmiValue) as caught:
        encode_agi_set_variable(name, value)
    assert value not in str(caught.value) or value == "x"


def test_the_environment_parser_reads_what_asterisk_sends():
    request = parse_environment(ENVIRONMENT.encode()[:-2])
    assert request.environment["agi_channel"].startswith("Local/")
    with pytest.raises(AgiProtocolError):
        parse_environment(b"agi_network: yes\nnot a header")
