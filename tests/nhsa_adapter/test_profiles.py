"""Regional settings the adapter follows: 2101 first, the account inside fund_pay_sumamt, strings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.nhsa_adapter.helpers import card_of, region_bench, sale

REGION = """
base = "mock"
presettle_first = true
fund_includes_acct = true
amount_as = "string"
reversible_infnos = ["2101", "2102", "2103"]
"""


def test_presettle_first_with_the_account_inside_the_fund(tmp_path: Path, nhsa_sim: Any) -> None:
    nhsa_sim.control(fund_includes_acct=True, amounts_as="string",
                     reversible_infnos=["2101", "2102", "2103"])
    bench = region_bench(tmp_path, nhsa_sim, REGION)
    record = sale(bench.spool, card_of(nhsa_sim.person("A10000123")))
    nhsa_sim.control(fault_infnos=["2101"], next={"drop_after_commit": 1})

    with bench:
        assert bench.drain() == 1
        # The 2601 waits for reversal_delay_s (the gateway may still be at work); then from 1101 again.
        assert [c["infno"] for c in nhsa_sim.calls()] == ["9001", "1101", "2101", "2601", "1101", "2101", "2102"]
        data = nhsa_sim.calls("2102")[0]["request"]["input"]["data"]
        assert data["medfee_sumamt"] == "58.33" and data["drugdetail"][0]["pric"] == "12.50"
        outcome = bench.record(record).outcome or {}
        assert (outcome["fund_paid_fen"], outcome["account_paid_fen"], outcome["cash_paid_fen"]) == (4083, 1167, 583)
        bench.check_money()
