"""NhsaClient: the call log around every call, httpx errors translated at the edge."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from terminald.upstream.nhsa.calllog import CallLog
from terminald.upstream.nhsa.client import NhsaClient, Person
from terminald.upstream.nhsa.envelope import Ok, Refused
from terminald.upstream.nhsa.errors import EnvelopeError, UnknownOutcome
from terminald.upstream.nhsa.msgid import inf_time
from terminald.upstream.nhsa.profiles import load_profile
from tests.nhsa.helpers import CODE, INSTITUTION, OPERATOR, PSN_NO, Clock, answer

PERSON = Person(PSN_NO, "440300", ("张三丰", "110101199003071234"))
SETTLE = {"psn_no": PSN_NO, "mdtrt_cert_type": "02", "mdtrt_cert_no": "110101199003071234"}
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def log(tmp_path: Path) -> Iterator[CallLog]:
    with CallLog(tmp_path / "spool.db", fixmedins_code=CODE, clock=Clock()) as made:
        yield made


def _client(log: CallLog, handler: Handler | None = None, url: str = "http://gw.test/fsi/api",
            timeout_s: float = 5.0) -> NhsaClient:
    transport = httpx.MockTransport(handler) if handler else None
    client = NhsaClient(url=url, profile=load_profile("national"), institution=INSTITUTION, operator=OPERATOR,
                        calllog=log, timeout_s=timeout_s, transport=transport)
    client.sign_no = "SIGN0001"
    return client


def _run(client: NhsaClient, coro_fn: Callable[[NhsaClient], Any]) -> Any:
    async def main() -> Any:
        try:
            return await coro_fn(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def _settle(client: NhsaClient) -> Any:
    return client.call("2102", SETTLE, psn=PERSON, record_id="r1")


def test_the_row_is_written_before_the_request_leaves(log: CallLog) -> None:
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        env = json.loads(request.content)
        seen["env"], seen["row"] = env, log.get(env["msgid"])
        seen["type"] = request.headers["content-type"]
        return httpx.Response(200, content=answer(0, {"setlinfo": {"setl_id": "S1"}}))

    result = _run(_client(log, handler), _settle)
    assert isinstance(result, Ok) and result.output["setlinfo"]["setl_id"] == "S1"
    env, row = seen["env"], seen["row"]
    assert row is not None and row.state == "sent" and row.record_id == "r1"
    assert env["inf_time"] == inf_time(env["msgid"]) and env["sign_no"] == "SIGN0001"
    assert env["insuplc_admdvs"] == "440300" and env["input"]["data"] == SETTLE
    assert seen["type"].startswith("application/json")
    done = log.get(env["msgid"])
    assert done is not None and done.state == "ok" and done.inf_refmsgid.startswith("440300")


def test_a_refusal_is_logged_failed_and_masked(log: CallLog) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=answer(-1, err_msg="张三丰(110101199003071234)参保状态异常"))

    result = _run(_client(log, handler), _settle)
    assert isinstance(result, Refused) and result.kind == "rejected"
    [row] = log.for_record("r1")
    assert row.state == "failed" and "参保状态异常" in row.err_msg
    assert "110101199003071234" not in row.err_msg and "张三丰" not in row.err_msg
    assert "110101199003071234" not in result.err_msg


def _raise(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(("handler", "reason"), [
    (_raise(httpx.ReadTimeout("t")), "timeout"),
    (_raise(httpx.ConnectTimeout("t")), "timeout"),
    (_raise(httpx.ConnectError("refused")), "connect_failed"),
    (_raise(httpx.ReadError("reset")), "connection_lost"),
    (_raise(httpx.RemoteProtocolError("eof")), "connection_lost"),
    (_raise(httpx.WriteError("broken pipe")), "connection_lost"),
    (_raise(httpx.ProxyError("proxy")), "transport"),
    (_raise(httpx.DecodingError("gzip")), "transport"),
    (lambda r: httpx.Response(503, text="busy"), "http_status"),
    (lambda r: httpx.Response(200, content=b""), "empty"),
    (lambda r: httpx.Response(200, text="<html>error</html>"), "not_json"),
    (lambda r: httpx.Response(200, content=answer(0, {})[:-3]), "not_json"),
])
def test_every_failure_is_an_unknown_outcome_logged_unknown(log: CallLog, handler: Handler, reason: str) -> None:
    with pytest.raises(UnknownOutcome) as info:
        _run(_client(log, handler), _settle)
    assert info.value.reason == reason
    [row] = log.for_record("r1")
    assert row.state == "unknown" and row.err_msg.startswith(reason)
    assert [c.msgid for c in log.unfinished({"2102"})] == [row.msgid]


def test_a_request_that_cannot_be_built_gets_no_row(log: CallLog) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    with pytest.raises(EnvelopeError):
        _run(_client(log, handler), lambda c: c.call("2102", SETTLE, psn=Person(PSN_NO, ""), record_id="r1"))
    with pytest.raises(EnvelopeError):
        _run(_client(log, handler), lambda c: c.call("2102", {"pric": 1.5}, psn=PERSON, record_id="r1"))
    with pytest.raises(EnvelopeError, match="reverse"):
        _run(_client(log, handler), lambda c: c.call("2601", {}, psn=PERSON))
    assert log.unfinished() == [] and log.for_record("r1") == []


def test_an_answer_the_log_cannot_record_is_unknown(log: CallLog) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        log.close()  # the file goes away between send and completion
        return httpx.Response(200, content=answer(0, {}))

    with pytest.raises(UnknownOutcome) as info:
        _run(_client(log, handler), _settle)
    assert info.value.reason == "log_failed"


def test_sign_in_keeps_the_sign_no(log: CallLog) -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        env = json.loads(request.content)
        sent.append(env)
        if env["infno"] == "9001":
            return httpx.Response(200, content=answer(0, {"signinoutb": {"sign_no": "NEWSIGN", "sign_time": "x"}}))
        return httpx.Response(200, content=answer(0, {}))

    async def flow(client: NhsaClient) -> None:
        await client.sign_in(opter_no="0001", mac="00:11:22:33:44:55", ip="10.0.0.8")
        await client.call("1101", {"mdtrt_cert_type": "02"})

    _run(_client(log, handler), flow)
    assert sent[0]["input"] == {"signIn": {"opter_no": "0001", "mac": "00:11:22:33:44:55", "ip": "10.0.0.8"}}
    assert sent[0]["sign_no"] == "" and sent[1]["sign_no"] == "NEWSIGN"


def test_sign_in_without_a_sign_no_is_unknown(log: CallLog) -> None:
    client = _client(log, lambda r: httpx.Response(200, content=answer(0, {"signinoutb": {}})))
    with pytest.raises(UnknownOutcome, match="sign_no"):
        _run(client, lambda c: c.sign_in(opter_no="1", mac="m", ip="i"))
    assert client.sign_no == "SIGN0001"  # unchanged: the gateway will say when it is refused


@pytest.mark.parametrize(("reply", "reversed_"), [
    (answer(0, {}), True),
    (answer(-1, err_msg="原交易不存在,无需冲正"), True),  # nothing to reverse: definite
    (answer(-1, err_msg="系统繁忙"), False),  # the 2601 itself did nothing: try again
    (answer(-1, err_msg="签到失效"), False),
])
def test_reverse_an_unknown_settlement(log: CallLog, reply: bytes, reversed_: bool) -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        env = json.loads(request.content)
        sent.append(env)
        if env["infno"] == "2102":
            raise httpx.ReadTimeout("lost")
        return httpx.Response(200, content=reply)

    async def flow(client: NhsaClient) -> Any:
        with pytest.raises(UnknownOutcome):
            await _settle(client)
        [lost] = log.unfinished({"2102"})
        return await client.reverse(lost)

    _run(_client(log, handler), flow)
    settle, reversal = sent
    assert reversal["infno"] == "2601" and reversal["insuplc_admdvs"] == "440300"
    assert reversal["input"]["data"] == {"psn_no": PSN_NO, "omsgid": settle["msgid"], "oinfno": "2102"}
    original = log.get(settle["msgid"])
    assert original is not None and (original.state == "reversed") == reversed_
    if reversed_:
        assert original.reversed_by == reversal["msgid"]
        assert log.unfinished({"2102", "2103"}) == []


def test_only_open_calls_are_reversed(log: CallLog) -> None:
    client = _client(log, lambda r: httpx.Response(200, content=answer(0, {})))

    async def flow(c: NhsaClient) -> None:
        await _settle(c)
        [done] = log.for_record("r1")
        with pytest.raises(EnvelopeError, match="is ok"):
            await c.reverse(done)

    _run(client, flow)


# -- real sockets -----------------------------------------------------------------------------------

class _Gateway:
    """A TCP listener that reads one request and then does `what`: "reset" or "hang"."""

    def __init__(self, what: str) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.what = what
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            if self.what == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                return
            self.done.wait(10)  # "hang": answer nothing until the test is over

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.sock.close()


@pytest.mark.parametrize(("what", "reason"), [("reset", "connection_lost"), ("hang", "timeout")])
def test_real_socket_faults(log: CallLog, what: str, reason: str) -> None:
    gateway = _Gateway(what)
    try:
        client = _client(log, url=f"http://127.0.0.1:{gateway.port}/fsi/api", timeout_s=0.5)
        with pytest.raises(UnknownOutcome) as info:
            _run(client, _settle)
    finally:
        gateway.close()
    assert info.value.reason == reason
    assert [c.state for c in log.for_record("r1")] == ["unknown"]


def test_real_connection_refused(log: CallLog) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(UnknownOutcome) as info:
        _run(_client(log, url=f"http://127.0.0.1:{port}/"), _settle)
    assert info.value.reason == "connect_failed"


def test_a_second_without_free_msgids_is_waited_out(tmp_path: Path) -> None:
    """A slot of 3 digits has 9 counters a second: the 10th call of a second waits for the next
    (MsgidExhausted does not leave the client while a second later has counters)."""
    with CallLog(tmp_path / "slot.db", fixmedins_code=CODE, msgid_slot="123") as slot_log:
        client = _client(slot_log, lambda request: httpx.Response(200, content=answer(0, {})))

        async def burst(c: NhsaClient) -> list[Any]:
            return list(await asyncio.gather(*(c.call("1101", {"psn_no": PSN_NO}) for _ in range(12))))

        results = _run(client, burst)
        assert all(isinstance(r, Ok) for r in results)
    conn = sqlite3.connect(tmp_path / "slot.db")
    try:
        msgids = [row[0] for row in conn.execute("SELECT msgid FROM nhsa_calls")]
    finally:
        conn.close()
    counters = [int(m[-4:]) for m in msgids]
    assert len(set(msgids)) == 12 and all(1231 <= c <= 1239 for c in counters)
    assert len({m[12:26] for m in msgids}) >= 2  # the calls past the ninth went to a later second


def test_a_misspelt_call_option_is_refused_before_anything_is_logged() -> None:
    async def go() -> None:
        client = NhsaClient.__new__(NhsaClient)
        with pytest.raises(TypeError, match="record_idd"):
            await client.call_logged("2102", {}, record_idd="x")  # type: ignore[call-arg]

    asyncio.run(go())
