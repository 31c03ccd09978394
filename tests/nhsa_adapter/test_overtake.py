"""A 2601 must not overtake the call it reverses (reversal_delay_s).

The 2102 times out at our client while the gateway still works on it. A 2601 sent at once
arrives first, is answered "原交易不存在或未成功，无需冲正", the 2102 commits late, and the record's
next 2102 makes a second standing settlement. The 2601 waits for the profile's delay instead.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from tests.nhsa_adapter.helpers import Bench, card_of, sale

LATE_S = 0.3  # the gateway commits this long after our client gave up (below mock's 1 s delay)


class SlowGateway(httpx.AsyncBaseTransport):
    """The first 2102 reaches the platform only LATE_S after the client's timeout."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.late: asyncio.Task[None] | None = None
        self.gave_up_at = 0.0
        self.reversal_at = 0.0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        envelope = json.loads(body)
        if envelope["infno"] == "2102" and self.late is None:
            async def later() -> None:
                await asyncio.sleep(LATE_S)
                again = httpx.Request("POST", request.url, content=body, headers=request.headers)
                await (await self.inner.handle_async_request(again)).aread()

            self.late = asyncio.create_task(later())
            self.gave_up_at = time.monotonic()
            raise httpx.ReadTimeout("the client gave up", request=request)
        if envelope["infno"] == "2601" and not self.reversal_at:
            self.reversal_at = time.monotonic()
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        return httpx.Response(response.status_code, content=content, headers={"content-type": "application/json"})

    async def aclose(self) -> None:
        if self.late is not None:
            await self.late
        await self.inner.aclose()


def test_a_2601_waits_for_a_slow_2102_and_the_sale_stands_once(bench: Bench) -> None:
    record = sale(bench.spool, card_of(bench.sim.person("A10000123")))
    gateway = SlowGateway()

    assert bench.drain(gateway, sync=True) == 1
    assert bench.record(record).status == "settled"
    assert gateway.reversal_at - gateway.gave_up_at >= 1.0  # the mock profile's reversal_delay_s
    [reversal] = bench.sim.calls("2601")
    assert reversal["infcode"] == 0  # it found the late 2102 committed, and reversed it
    assert len(bench.sim.standing_settlements()) == 1
    bench.check_money()
