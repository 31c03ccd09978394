"""2601 refused with a message that is not "nothing to reverse": alarm, no retry, the person waits."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from terminald.sim.nhsa.settings import MSG_REFUSED
from terminald.upload.errors import Transient
from terminald.upstream.nhsa.adapter import REVERSAL_REFUSED
from terminald.upstream.nhsa.calllog import CallLog
from terminald.upstream.nhsa.client import NhsaClient, Person
from terminald.upstream.nhsa.envelope import Institution, Operator
from terminald.upstream.nhsa.errors import UnknownOutcome
from terminald.upstream.nhsa.profiles import load_profile
from tests.nhsa_adapter.helpers import CODE, Bench, card_of, drain, run, sale


def test_a_refused_reversal_raises_an_alarm_and_holds_that_person_only(tmp_path: Path, nhsa_sim: Any) -> None:
    bench = Bench(tmp_path, nhsa_sim, concurrency=1)  # one lane: the dropped 2102 is zhang's first
    zhang, zhao = nhsa_sim.person("A10000123"), nhsa_sim.person("D40000321")
    first = sale(bench.spool, card_of(zhang))
    second = sale(bench.spool, card_of(zhang))
    other = sale(bench.spool, card_of(zhao))
    nhsa_sim.control(fault_infnos=["2102"], next={"drop_after_commit": 1}, refuse={"infno": ["2601"], "persons": []})

    async def go() -> None:
        async with bench.opened() as adapter:
            await adapter.sync()
            with pytest.raises(Transient):  # zhang's 2102 without an answer: the link's news
                await adapter.upload()
            assert await adapter.upload() == 1  # zhao's; zhang's wait for the reversal's delay
            assert await adapter.upload() == 0  # the 2601, refused: zhang's wait for staff
            assert REVERSAL_REFUSED in bench.host.alarms
            assert MSG_REFUSED in bench.host.alarms[REVERSAL_REFUSED]
            assert zhang.certno not in bench.host.alarms[REVERSAL_REFUSED]
            assert await adapter.upload() == 0  # still waiting, and no second 2601 sent
            assert len(nhsa_sim.calls("2601")) == 1 and len(nhsa_sim.calls("2102")) == 2
            # Staff checked with the office, which now takes the reversal; uploading resumes.
            nhsa_sim.control(refuse={})
            assert adapter.resume() == [REVERSAL_REFUSED]
            assert REVERSAL_REFUSED not in bench.host.alarms
            assert await drain(adapter) == 2
            assert adapter.resume() == []  # nothing held any more

    try:
        run(go)
        assert [bench.record(r).status for r in (first, second, other)] == ["settled"] * 3
        assert [c["infcode"] for c in nhsa_sim.calls("2601")] == [-1, 0]
        bench.check_money()
    finally:
        bench.close()


def _client(log: CallLog, reply: bytes) -> NhsaClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["infno"] == "2102":
            raise httpx.ReadTimeout("lost")
        return httpx.Response(200, content=reply)

    client = NhsaClient(url="http://gw.test/fsi/api", profile=load_profile("national"),
                        institution=Institution(CODE, "示例大药房", "110105", "YBXT"),
                        operator=Operator("0001", "王药师"), calllog=log, transport=httpx.MockTransport(handler))
    client.sign_no = "SIGN0001"
    return client


@pytest.mark.parametrize(("err_msg", "definite"), [
    ("原交易不存在或未成功，无需冲正", True),
    ("原交易已冲正", True),
    ("人员编号与原交易不符", False),
    ("原结算已撤销，请先冲正撤销交易", False),
    ("交易2102不支持冲正", False),
])
def test_client_reverse_marks_reversed_only_on_a_definite_answer(tmp_path: Path, err_msg: str,
                                                                 definite: bool) -> None:
    reply = json.dumps({"infcode": -1, "err_msg": err_msg, "output": {}}, ensure_ascii=False).encode()

    async def flow(client: NhsaClient, log: CallLog) -> None:
        with pytest.raises(UnknownOutcome):
            await client.call("2102", {"psn_no": "P1"}, psn=Person("P1", "110100"), record_id="r1")
        [lost] = log.unfinished({"2102"})
        await client.reverse(lost)
        await client.aclose()

    with CallLog(tmp_path / "spool.db", fixmedins_code=CODE) as log:
        asyncio.run(flow(_client(log, reply), log))
        [call] = [c for c in log.for_record("r1") if c.infno == "2102"]
        assert (call.state == "reversed") == definite
        assert (log.unfinished({"2102"}) == []) == definite
