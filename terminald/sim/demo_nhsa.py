"""`terminald demo --protocol nhsa`: the outage day against the national platform's simulator.

The daemon runs with `upstream.protocol = "nhsa"` against `NhsaSim` (terminald/sim/nhsa/), in
this process so the demo can switch its faults and read its books. The day: a sale settled
online (1101, 2102: the platform's split 统筹 / 个人账户 / 现金 on the receipt); the platform goes
down; outage sales kept and paid in cash; the platform comes back with the answer to one 2102
lost after the platform committed it; the backlog is re-entered (补录) in each person's order;
the lost answer is an unknown outcome, reversed by 2601 and the sale sent again with a new
msgid; the platform's books pass the money check; the refunds owed to the outage patients.

What happened to the dropped call is read from what exists, asking nothing of the adapter: the
simulator's call records (which call was dropped) and the daemon's call log (the `nhsa_calls`
table in the spool's file, opened read-only): its state, the 2601 that reversed it, the retry.
`sale_problems` and `calls_by_msgid` are also the benchmark's money check (bench/reentry.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from terminald.sim.counter import Counter, DemoFailed, expect
from terminald.sim.demo import BASKETS, Insert, Mirror, card_for, console, print_outages, say
from terminald.sim.nhsa.checks import money_problems
from terminald.sim.nhsa.server import NhsaSim
from terminald.sim.printer import PrinterSim

__all__ = ["NHSA_CONFIG", "NhsaDay", "calls_by_msgid", "sale_problems", "wire_time"]

# The demo institution: a pharmacy in Beijing Dongcheng (the simulator checks only the formats).
NHSA_CONFIG = (
    '[nhsa]\nfixmedins_code = "P11010100001"\nfixmedins_name = "示例大药房(演示)"\n'
    'mdtrtarea_admvs = "110101"\nrecer_sys_code = "TERMINALD"\n'
)
TZ = ZoneInfo("Asia/Shanghai")  # the platform's wire time, and the demo counter's zone

# The outage sales: (POS order, card, basket), two per person (the emulated cards readable
# without a PSAM): each person's sales must reach the platform in their order (the account
# balance and the deductible depend on it).
OUTAGE_SALES = [
    ("order-2002", "ssc2", BASKETS[1]),
    ("order-2003", "ssc2_t0", BASKETS[2]),
    ("order-2004", "ssc2_t0", BASKETS[3]),
    ("order-2005", "ssc2", BASKETS[4]),
]


def wire_time(iso: str) -> str:
    """A record's business_time (RFC 3339) as the platform's begntime: Beijing time, to the second."""
    return datetime.fromisoformat(iso).astimezone(TZ).strftime("%Y-%m-%d %H:%M:%S")


def calls_by_msgid(spool_db: Path) -> dict[str, dict[str, Any]]:
    """The daemon's call log (`nhsa_calls` in the spool's file), read-only, by msgid."""
    conn = sqlite3.connect(f"file:{spool_db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT * FROM nhsa_calls ORDER BY rowid").fetchall()
    finally:
        conn.close()
    return {row["msgid"]: dict(row) for row in rows}


def sale_problems(records: list[dict[str, Any]], call_log: Mapping[str, Mapping[str, Any]],
                  settlements: list[dict[str, Any]], revokes: list[dict[str, Any]],
                  calls: list[dict[str, Any]]) -> list[str]:
    """The simulator's money check with every local settlement record expected exactly once,
    with its total and business time, and no other sale standing; [] when the money is right.

    A platform settlement is tied to its record through the daemon's call log (its 2102's msgid
    -> record id), so nothing here assumes how the adapter numbers a sale's lines.
    """
    problems = [f"record seq {r['seq']} is {r['status']}" for r in records if r["status"] != "settled"]
    problems += [f"record seq {r['seq']}: the split does not add up to its total" for r in records
                 if r["settlement"] and sum(r["settlement"][k] for k in
                                            ("fund_paid_fen", "account_paid_fen", "cash_paid_fen")) != r["total_fen"]]
    by_id = {r["id"]: r for r in records}
    by_record: dict[str, list[dict[str, Any]]] = {}
    for s in settlements:
        record_id = str((call_log.get(s["msgid"]) or {}).get("record_id") or "")
        if record_id not in by_id:
            problems.append(f"settlement {s['setl_id']} (msgid {s['msgid']}) is no 2102 of a local record")
        by_record.setdefault(record_id, []).append(s)
    expected: dict[str, dict[str, Any]] = {}
    for record in records:
        tried = by_record.get(record["id"], [])
        if not tried:
            problems.append(f"record seq {record['seq']} has no settlement at the platform")
            continue
        # The standing one when there is one; else any, which money_problems reports as not standing.
        for s in [s for s in tried if s["status"] == "standing"] or tried:
            expected[s["sale_id"]] = {"medfee_fen": record["total_fen"],
                                      "business_time": wire_time(record["business_time"])}
    return problems + money_problems(settlements, revokes, calls, expected)


def _daemon_log(path: Path, needles: list[str]) -> list[str]:
    """The daemon's own log lines about the dropped call (level onwards, without the timestamp)."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    found = [line for line in lines if any(n in line for n in needles)]
    return [" ".join(line.split()[2:]) if line[:4].isdigit() else line for line in found]


def _yuan(fen: int) -> str:
    return f"{fen / 100:.2f}"


def _split(settlement: Mapping[str, Any]) -> str:
    return (f"统筹 {_yuan(settlement['fund_paid_fen'])} / 个人账户 {_yuan(settlement['account_paid_fen'])} / "
            f"现金 {_yuan(settlement['cash_paid_fen'])}")


def _short(msgid: str) -> str:
    """A msgid as the screen shows it: institution code … time and counter (30 characters in all)."""
    return f"{msgid[:12]}·{msgid[12:26]}·{msgid[26:]}"


class NhsaDay:
    """The outage day against the national platform (`upstream.protocol = "nhsa"`)."""

    receipts_dir = "terminald-demo-nhsa-receipts"

    def __init__(self) -> None:
        self.sim: NhsaSim | None = None

    def start(self, work: Path) -> None:
        self.sim = NhsaSim(work / "nhsa.db")
        self.sim.start()

    def counter(self, work: Path, printer_uri: str, use_cards: bool) -> Counter:
        assert self.sim is not None
        return Counter(work, self.sim.url, printer_uri, use_cards=use_cards, protocol="nhsa",
                       extra_config=NHSA_CONFIG)

    def stop(self) -> None:
        if self.sim is not None:
            self.sim.stop()

    def play(self, counter: Counter, printer: PrinterSim, insert: Insert, mirror: Mirror) -> dict[str, Any]:
        assert self.sim is not None
        sim = self.sim
        s: dict[str, Any] = {"receipts": {}}

        say("08:30", "the counter opens; the national platform (国家医保信息平台) is up")
        r = counter.sell("order-2001", BASKETS[0], card_for(insert, counter, "ssc2"))
        online = expect(r, 201, "online sale")
        if online["status"] != "settled":
            raise DemoFailed(f"online sale: the platform answered {online['status']}: {online.get('rejection')}")
        counter.print_receipt(online["id"])
        s["receipts"]["online"] = counter.save_png(online["id"], "1-online")
        split = _split(online["settlement"])
        paper = "\n".join(printer.jobs_text(columns=42))
        if "统筹支付" not in paper or _yuan(online["settlement"]["fund_paid_fen"]) not in paper:
            raise DemoFailed("the receipt does not print the platform's fund share")
        say("", f"settled online (9001 sign-in, 1101 person, 2102 settlement): {split} yuan, "
                "the platform's own split, printed on the receipt")
        mirror.show(counter)

        say("10:05", "the platform stops answering (the front-end machine's link is down)")
        sim.control(down=True)
        outage: list[dict[str, Any]] = []
        order, card, basket = OUTAGE_SALES[0]
        r = counter.sell(order, basket, card_for(insert, counter, card), wait=2)
        outage.append(expect(r, 202, f"outage sale {order}"))
        counter.wait_for("the daemon to notice the outage", lambda: counter.status()["mode"] == "offline")
        say("", f"{order}: kept as pending ({outage[0]['offline_reason']}); mode is now OFFLINE")
        mirror.show(counter)
        with mirror.primary_stopped(counter):
            for order, card, basket in OUTAGE_SALES[1:]:
                r = counter.sell(order, basket, card_for(insert, counter, card), wait=3)
                outage.append(expect(r, 202, f"outage sale {order}"))
                mirror.sold(counter, r)
        counter.print_receipt(outage[1]["id"])
        s["receipts"]["outage"] = counter.save_png(outage[1]["id"], "2-outage")
        say("", f"{len(outage)} outage sales held in the spool, paid in cash, receipts marked 离线交易; "
                "two per card")

        say("14:00", "the platform is back; the answer to one 2102 will be lost after the platform committed it")
        sim.control(next={"drop_after_commit": 1}, fault_infnos=["2102"])
        sim.control(down=False)
        counter.wait_for("the backlog to be re-entered", lambda: counter.status()["spool"]["pending"] == 0, 120)
        records = counter.api().get("/v1/transactions", params={"limit": 500}).json()["items"]
        by_id = {t["id"]: t for t in records}
        log = calls_by_msgid(counter.state / "spool.db")
        s["dropped"] = self._show_dropped(sim, counter, log, by_id)
        s["order"] = self._show_order(sim, log, by_id)

        problems = sale_problems(records, log, sim.settlements(), sim.revokes(), sim.store.calls())
        if problems:
            raise DemoFailed("the platform's books are wrong: " + "; ".join(problems))
        standing = sim.standing_settlements()
        s["money"] = {"records": len(records), "standing": len(standing),
                      "reversed": len(sim.settlements()) - len(standing)}
        say("", f"money check on the platform's books: {len(records)} sales, {len(standing)} settlements "
                f"standing, each sale exactly once, with the spool's totals and business times "
                f"({s['money']['reversed']} reversed by 2601)")

        notice_of = by_id[outage[0]["id"]]
        counter.print_receipt(notice_of["id"], document="notice")
        s["receipts"]["notice"] = counter.save_png(notice_of["id"], "3-settlement-notice", document="notice")
        followups = expect(counter.api().get("/v1/followups"), 200, "follow-up list")
        refunds = [i for i in followups["items"] if i["reason"] == "refund"]
        owed_ids = {i["id"] for i in refunds}
        missing = [t["meta"].get("pos_order_id") for t in outage
                   if by_id[t["id"]]["refund_owed_fen"] > 0 and t["id"] not in owed_ids]
        if not refunds or missing:
            raise DemoFailed(f"the follow-up list misses refunds owed: {missing or followups}")
        for t in outage:
            rec = by_id[t["id"]]
            say("", f"{rec['meta'].get('pos_order_id')} (seq {rec['seq']}): paid "
                    f"{_yuan(rec['paid_at_counter_fen'])} in cash; the platform settled {_split(rec['settlement'])}: "
                    f"{_yuan(rec['refund_owed_fen'])} yuan owed back to the patient")
        s["refunds"] = {"count": len(refunds), "owed_fen": sum(i["owed_fen"] for i in refunds)}
        say("", f"follow-up list: {len(refunds)} refund(s), {_yuan(s['refunds']['owed_fen'])} yuan to hand back; "
                "the settlement notice of order-2002 is printed")
        s["status"] = counter.status()
        s["outages"] = expect(counter.api().get("/v1/outages"), 200, "outage log")
        return s

    def _show_dropped(self, sim: NhsaSim, counter: Counter, log: Mapping[str, Mapping[str, Any]],
                      by_id: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """The 2102 whose answer was dropped, its 2601 and the retry, as the two books tell it."""
        dropped = [c for c in sim.calls("2102") if "drop_after_commit" in c["fault"]]
        if len(dropped) != 1:
            raise DemoFailed(f"expected one 2102 answer dropped, the platform dropped {len(dropped)}")
        first = dropped[0]
        msgid = first["msgid"]
        ours = log.get(msgid)
        if ours is None:
            raise DemoFailed(f"the dropped 2102 {msgid} is not in the daemon's call log")
        record = by_id.get(str(ours["record_id"]))
        if record is None:
            raise DemoFailed(f"the dropped 2102 {msgid} names no local record")
        lost_setl = ((first["answer"] or {}).get("output") or {}).get("setlinfo", {}).get("setl_id", "?")
        why = str(ours["err_msg"] or "no answer").split(":")[0]
        say("", f"2102 {_short(msgid)} for {record['meta'].get('pos_order_id')} (seq {record['seq']}): the "
                f"platform committed it (setl_id {lost_setl}); its answer was lost ({why}): outcome unknown")
        reversal = next((c for c in log.values() if c["infno"] == "2601" and c["omsgid"] == msgid), None)
        if ours["state"] != "reversed" or reversal is None or ours["reversed_by"] != reversal["msgid"]:
            raise DemoFailed(f"the dropped 2102 is {ours['state']} in the call log, not reversed by a 2601")
        platform_2601 = next((c for c in sim.calls("2601") if c["msgid"] == reversal["msgid"]), None)
        answered = "nothing" if platform_2601 is None else (
            "0 (reversed)" if platform_2601["infcode"] == 0 else f"-1 {platform_2601['err_msg']}")
        say("", f"2601 {_short(reversal['msgid'])} with omsgid {_short(msgid)}: the automatic reversal; the "
                f"platform answered {answered}; the call log marks the 2102 reversed")
        retries = [c for c in log.values() if c["infno"] == "2102" and c["record_id"] == ours["record_id"]
                   and c["msgid"] != msgid]
        settled = [c for c in retries if c["state"] == "ok"]
        if len(settled) != 1:
            raise DemoFailed(f"expected one retried 2102 settled for seq {record['seq']}: {retries}")
        retry = settled[0]
        setl = (record.get("settlement") or {}).get("nhsa", {}).get("setl_id") or record["settlement"].get(
            "central_ref", "?")
        say("", f"2102 again with a new msgid {_short(retry['msgid'])}: settled once (setl_id {setl}), "
                f"{_split(record['settlement'])}; the lost settlement {lost_setl} no longer stands")
        for line in _daemon_log(counter.log_path, [msgid, f"seq {record['seq']}: 2102"]):
            say("", f"[dim]daemon log:[/] {line}")
        return {"msgid": msgid, "reversal": reversal["msgid"], "retry": retry["msgid"], "seq": record["seq"],
                "lost_setl_id": lost_setl, "setl_id": setl}

    def _show_order(self, sim: NhsaSim, log: Mapping[str, Mapping[str, Any]],
                    by_id: Mapping[str, Mapping[str, Any]]) -> dict[str, list[int]]:
        """Each person's standing settlements in the platform's order, as local seqs: increasing."""
        order: dict[str, list[int]] = {}
        for st in sim.standing_settlements():
            record = by_id.get(str((log.get(st["msgid"]) or {}).get("record_id")))
            if record is None:
                raise DemoFailed(f"settlement {st['setl_id']} is no local record's")
            if st["begntime"] != wire_time(record["business_time"]):
                raise DemoFailed(f"seq {record['seq']}: begntime {st['begntime']}, the sale was at "
                                 f"{record['business_time']}")
            order.setdefault(record["card"]["card_number"], []).append(record["seq"])
        for card, seqs in order.items():
            if seqs != sorted(seqs):
                raise DemoFailed(f"card {card}: settled out of order, seq {seqs}")
        shown = "; ".join(f"card {card}: seq {', '.join(map(str, seqs))}" for card, seqs in order.items())
        say("", f"re-entered in each person's order, begntime = the time of the sale: {shown}")
        return order

    def print_summary(self, s: dict[str, Any]) -> None:
        status = s["status"]
        console.print(f"mode: {status['mode']}; pending {status['spool']['pending']}; settled "
                      f"{status['spool']['settled_total']}; last seq {status['spool']['last_seq']}")
        m = s["money"]
        console.print(f"platform: {m['records']} sales, each settled exactly once ({m['reversed']} reversed)")
        console.print("money check on the platform's books: passed")
        d = s["dropped"]
        console.print(f"dropped 2102 answer (seq {d['seq']}): unknown, reversed, retried once")
        console.print(f"  2102 {d['msgid']}: answer lost")
        console.print(f"  2601 {d['reversal']}: reversed it")
        console.print(f"  2102 {d['retry']}: settled")
        for card, seqs in s["order"].items():
            console.print(f"card {card}: settled in seq order {', '.join(map(str, seqs))}")
        console.print(f"refunds owed to outage patients: {s['refunds']['count']}, "
                      f"{_yuan(s['refunds']['owed_fen'])} yuan")
        print_outages(s["outages"])
