"""The money check over the simulator's books: what a test of the caller asserts after any fault.

Vocabulary (docs/nhsa-simulator.md): a settlement *stands* from its 2102 until a 2601 reverses
it; it is *revoked* while a standing 2103 points at it. A sale is tied to its settlements by the
settlement's ``sale_id`` (by default the first drugdetail's ``feedetl_sn``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

__all__ = ["money_problems"]


def money_problems(settlements: list[dict[str, Any]], revokes: list[dict[str, Any]],
                   calls: list[dict[str, Any]], expected: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
    """Everything wrong with the books, in words; [] when the money is right.

    Always: each sale id and each feedetl_sn stands at most once; each standing settlement's parts
    are >= 0 and add up to its total; each settlement and revoke has its committed call, reversed
    exactly when that call was; each standing revoke points at a standing settlement.
    With ``expected`` ({sale_id: {"medfee_fen", "business_time", "revoked"}}, every key optional):
    each expected sale stands exactly once, with that total, begntime and every sel_retn_time equal
    to the business time, revoked or not as said; no other sale stands.
    """
    problems: list[str] = []
    standing = [s for s in settlements if s["status"] == "standing"]
    by_sale: dict[str, list[str]] = defaultdict(list)
    by_line: dict[str, list[str]] = defaultdict(list)
    for s in standing:
        by_sale[s["sale_id"]].append(s["setl_id"])
        for line in s["details"]:
            by_line[line["feedetl_sn"]].append(s["setl_id"])
        if min(s["fund_fen"], s["acct_fen"], s["cash_fen"]) < 0 or (
                s["fund_fen"] + s["acct_fen"] + s["cash_fen"] != s["medfee_fen"]):
            problems.append(f"settlement {s['setl_id']}: parts do not add up to {s['medfee_fen']}")
    problems += [f"sale {sale!r} stands {len(ids)} times: {', '.join(ids)}" for sale, ids in by_sale.items()
                 if len(ids) > 1]
    problems += [f"feedetl_sn {sn!r} stands in {len(ids)} settlements: {', '.join(ids)}"
                 for sn, ids in by_line.items() if len(ids) > 1]

    first_call: dict[str, dict[str, Any]] = {}
    for call in calls:
        if call["msgid"] and call["msgid"] not in first_call:
            first_call[call["msgid"]] = call
    for kind, infno, rows in (("settlement", "2102", settlements), ("revoke", "2103", revokes)):
        for row in rows:
            origin = first_call.get(row["msgid"])
            if origin is None or origin["infno"] != infno or not origin["committed"]:
                problems.append(f"{kind} {row['setl_id']} has no committed {infno} call {row['msgid']}")
            elif bool(origin["reversed_by"]) != (row["status"] == "reversed"):
                problems.append(f"{kind} {row['setl_id']}: reversed in the books but not in the call log, or back")

    by_id = {s["setl_id"]: s for s in settlements}
    for r in revokes:
        original = by_id.get(r["original_setl_id"])
        if r["status"] == "standing" and (original is None or original["status"] != "standing"):
            problems.append(f"revoke {r['setl_id']} stands without its settlement {r['original_setl_id']}")

    if expected is not None:
        problems += _against_expected(standing, by_sale, expected)
    return problems


def _against_expected(standing: list[dict[str, Any]], by_sale: Mapping[str, list[str]],
                      expected: Mapping[str, Mapping[str, Any]]) -> list[str]:
    problems: list[str] = []
    by_id = {s["setl_id"]: s for s in standing}
    for sale, want in expected.items():
        ids = by_sale.get(sale, [])
        if len(ids) != 1:
            problems.append(f"sale {sale!r} stands {len(ids)} times, expected once")
            continue
        s = by_id[ids[0]]
        if "medfee_fen" in want and s["medfee_fen"] != want["medfee_fen"]:
            problems.append(f"sale {sale!r}: medfee {s['medfee_fen']} fen, expected {want['medfee_fen']}")
        if "business_time" in want:
            times = {s["begntime"], *(line["sel_retn_time"] for line in s["details"])}
            if times != {want["business_time"]}:
                problems.append(f"sale {sale!r}: begntime/sel_retn_time {sorted(times)}, "
                                f"expected {want['business_time']}")
        if "revoked" in want and bool(s["revoked_by"]) != bool(want["revoked"]):
            problems.append(f"sale {sale!r}: revoked={bool(s['revoked_by'])}, expected {bool(want['revoked'])}")
    problems += [f"sale {sale!r} stands but was not expected" for sale in by_sale if sale not in expected]
    return problems
