"""`terminald demo`: a whole outage day at one counter, with every simulator.

`play_day` is the frame of every scenario (printer, cards, the daemon, the summary, cleanup);
a `Day` is one scenario: `V1Day` here against our central, `NhsaDay` (demo_nhsa.py, `--protocol
nhsa`) against the national platform's simulator.

The v1 day starts central, a receipt printer and (through pcscd's vpcd driver) card
emulators, runs the real daemon as a child process, and plays: an online
sale; central goes down; offline sales, one refused for a frozen card and one
over the limit; the daemon killed with SIGKILL mid-outage and restarted; a
planned downtime window (停机); recovery and the in-order upload; a record
central rejects, resolved as self-pay; reconciliation. It checks each step,
prints what happened and where the receipt images are, and stops everything
it started.

With `--mirror` (demo_mirror.py) the day's records are also copied to a PostgreSQL primary with
a synchronous standby that the demo starts in its work directory: the mirror's lag in
`/v1/status` after the sales, the primary stopped for a moment during the outage (sales go on,
the lag grows) and the catch-up, the mirror compared with the spool, and IT's fleet table.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from rich.console import Console

from terminald.sim.central import CentralSim
from terminald.sim.counter import TERMINAL, Counter, DemoFailed, expect
from terminald.sim.printer import PrinterSim

if TYPE_CHECKING:
    import httpx

TZ = ZoneInfo("Asia/Shanghai")
# Cards the central simulator treats specially (see terminald/sim/cards/*.toml).
FROZEN_CARD = "F60000987"
NOT_INSURED_CARD = "B20000456"

console = Console(highlight=False)


def line_item(code: str, name: str, qty: float, unit_fen: int) -> dict[str, Any]:
    return {"code": code, "name": name, "qty": qty, "unit_price_fen": unit_fen,
            "amount_fen": round(qty * unit_fen)}


BASKETS = [
    [line_item("XA01", "阿莫西林胶囊 0.25g×24粒", 2, 1250), line_item("XB02", "布洛芬缓释胶囊", 1, 2380)],
    [line_item("XC03", "复方甘草片", 1, 650), line_item("XD04", "板蓝根颗粒 10g×20袋", 1, 1890)],
    [line_item("XE05", "硝苯地平控释片 30mg×7片", 3, 3520)],
    [line_item("XF06", "蒙脱石散", 2, 1160), line_item("XG07", "口服补液盐散(III)", 0.5, 860)],
    [line_item("XH08", "胰岛素注射液 3ml", 1, 6800)],
]


def say(step: str, text: str) -> None:
    console.print(f"[bold cyan]{step}[/] {text}")


@contextlib.contextmanager
def _cards(work: Path) -> Iterator[Callable[[str, Counter], None] | None]:
    """A function that inserts a card and reads it through the daemon, or None without pcscd."""
    from terminald.sim import pcscd

    reason = pcscd.unavailable_reason()
    if reason:
        console.print(f"[yellow]no card reader stack ({reason}): cards are typed in[/]")
        yield None
        return
    try:
        daemon = pcscd.ensure_pcscd(work / "pcscd.log")
    except RuntimeError as exc:
        console.print(f"[yellow]no card reader stack ({exc}): cards are typed in[/]")
        yield None
        return
    from terminald.sim.card import CardEmulator

    current: list[CardEmulator] = []

    def present(name: str, counter: Counter) -> None:
        """Swap the card in slot 0, waiting for pcscd to see each change (a fast swap goes unseen)."""
        if current and current[0].description.name == name:
            return
        for card in current:
            card.remove()
            counter.wait_for("the card to be removed", lambda: not _slot0_has_card(counter), 10)
        current.clear()
        card = CardEmulator(name, slot=0)
        card.insert()
        current.append(card)
        counter.wait_for("the card to be seen", lambda: _slot0_has_card(counter), 10)

    try:
        yield present
    finally:
        for card in current:
            card.remove()
        daemon.stop()


Insert = Callable[[str, Counter], None] | None


class Mirror(Protocol):
    """What a day shows of the PostgreSQL mirror (`--mirror`: demo_mirror.DemoMirror), or nothing."""

    def config(self) -> str:
        """The counter's `[mirror]` table ("" without a mirror)."""

    def show(self, counter: Counter) -> None:
        """The mirror's state in /v1/status after a sale."""

    def sold(self, counter: Counter, r: httpx.Response) -> None:
        """A sale made while the mirror's primary is stopped."""

    def primary_stopped(self, counter: Counter) -> contextlib.AbstractContextManager[None]:
        """PostgreSQL's primary stopped for the body, then back, and the catch-up shown."""

    def finish(self, counter: Counter) -> None:
        """At the end of the day: the mirror compared with the spool, the fleet table."""

    def print_summary(self) -> None: ...

    def stop(self, keep: bool) -> None: ...


class NoMirror:
    """The day without the mirror: every step does nothing."""

    def config(self) -> str:
        return ""

    def show(self, counter: Counter) -> None:
        pass

    def sold(self, counter: Counter, r: httpx.Response) -> None:
        pass

    def primary_stopped(self, counter: Counter) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def finish(self, counter: Counter) -> None:
        pass

    def print_summary(self) -> None:
        pass

    def stop(self, keep: bool) -> None:
        pass


class Day(Protocol):
    """One demo scenario: the upstream it plays against, the day itself, and its summary."""

    receipts_dir: str  # under the temp dir, where the receipt PNGs are kept after the demo

    def start(self, work: Path) -> None:
        """Start the upstream simulator (its state under `work`)."""

    def counter(self, work: Path, printer_uri: str, use_cards: bool) -> Counter:
        """The counter (not started) configured for this upstream."""

    def play(self, counter: Counter, printer: PrinterSim, insert: Insert, mirror: Mirror) -> dict[str, Any]:
        """Play the day, showing `mirror` on the way; the summary's facts (with "receipts": {name: png path})."""

    def print_summary(self, s: dict[str, Any]) -> None:
        """The summary's lines of this scenario (the receipts and the verdict are printed after)."""

    def stop(self) -> None: ...


def play_day(day: Day, keep: bool, mirror: Callable[[Path], Mirror] | None = None) -> int:
    """Start the printer, the cards, `day`'s upstream and (`mirror`: it starts the mirror in the
    work directory) PostgreSQL, run the daemon, play, print, stop it all."""
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="terminald-demo-"))
    printer = PrinterSim()
    counter: Counter | None = None
    part: Mirror = NoMirror()
    try:
        if mirror is not None:
            part = mirror(work)
        day.start(work)
        printer.start()
        with _cards(work) as insert:
            counter = day.counter(work, printer.uri, insert is not None)
            counter.extra_config += part.config()
            counter.start()
            summary = day.play(counter, printer, insert, part)
            part.finish(counter)
        console.rule("summary")
        day.print_summary(summary)
        part.print_summary()
        shown_dir = work / "receipts" if keep else Path(tempfile.gettempdir()) / day.receipts_dir
        console.print("receipts (PNG):")
        for name, path in summary["receipts"].items():
            console.print(f"  {name}: {shown_dir / Path(path).name}")
        if keep:
            console.print(f"state, logs and receipts kept in {work}")
        console.print(f"[bold green]DEMO OK[/] in {round(time.monotonic() - started, 1)} s")
        return 0
    except DemoFailed as exc:
        console.print(f"[bold red]DEMO FAILED:[/] {exc}")
        if counter is not None:
            console.print(f"daemon log: {counter.log_path}")
        keep = True
        return 1
    finally:
        if counter is not None:
            counter.stop()
        printer.stop()
        day.stop()
        part.stop(keep)
        if not keep:
            import shutil

            receipts = work / "receipts"
            if receipts.exists():
                # The receipt images are the demo's product: keep them, drop the rest.
                target = Path(tempfile.gettempdir()) / day.receipts_dir
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(receipts, target)
            shutil.rmtree(work, ignore_errors=True)


class V1Day:
    """The outage day against our own central (`upstream.protocol = "v1"`)."""

    receipts_dir = "terminald-demo-receipts"

    def __init__(self) -> None:
        self.central: CentralSim | None = None

    def start(self, work: Path) -> None:
        self.central = CentralSim(work / "central.db")
        self.central.start()
        self.central.control(freeze=[FROZEN_CARD], not_insured=[NOT_INSURED_CARD])

    def counter(self, work: Path, printer_uri: str, use_cards: bool) -> Counter:
        assert self.central is not None
        return Counter(work, self.central.url, printer_uri, use_cards=use_cards)

    def play(self, counter: Counter, printer: PrinterSim, insert: Insert, mirror: Mirror) -> dict[str, Any]:
        assert self.central is not None
        return _play(counter, self.central, printer, insert, mirror)

    def print_summary(self, s: dict[str, Any]) -> None:
        _print_summary(s)

    def stop(self) -> None:
        if self.central is not None:
            self.central.stop()


def _slot0_has_card(counter: Counter) -> bool:
    readers = counter.api().get("/v1/devices").json()["readers"]
    return any(r["name"].endswith("00 00") and r["card_present"] for r in readers)


def card_for(insert: Callable[[str, Counter], None] | None, counter: Counter, name: str) -> dict[str, Any]:
    """Insert and read a card (through pcscd) or, without a reader stack, type its data in."""
    from terminald.sim.card import load_card

    if insert is None:
        desc = load_card(name)
        f = desc.fields
        return {"card": {"card_number": f["card_number"], "ssn": f["ssn"], "name": f["name"],
                         "issuer_code": f.get("issuer_code", "")}}
    insert(name, counter)
    r = counter.api().post("/v1/card/read", json={"timeout_s": 10})
    read = expect(r, 200, f"read the {name} card")
    return {"card_read_id": read["card_read_id"]}


def _play(counter: Counter, central: CentralSim, printer: PrinterSim,
          insert: Callable[[str, Counter], None] | None, mirror: Mirror) -> dict[str, Any]:
    s: dict[str, Any] = {"receipts": {}, "refused": []}
    tx: dict[str, dict[str, Any]] = {}

    say("08:30", "the counter opens; central is up")
    card = card_for(insert, counter, "ssc2")
    r = counter.sell("order-1001", BASKETS[0], card)
    tx["online"] = expect(r, 201, "online sale")
    if tx["online"]["status"] != "settled":
        raise DemoFailed(f"online sale: central answered {tx['online']['status']}")
    counter.print_receipt(tx["online"]["id"])
    s["receipts"]["online"] = counter.save_png(tx["online"]["id"], "1-online")
    st = tx["online"]["settlement"]
    say("", f"online sale settled: fund {st['fund_paid_fen'] / 100:.2f}, account "
             f"{st['account_paid_fen'] / 100:.2f}, cash {st['cash_paid_fen'] / 100:.2f} yuan; receipt printed")
    mirror.show(counter)

    say("10:05", "central stops answering (network fault)")
    central.control(down=True)
    r = counter.sell("order-1002", BASKETS[1], card_for(insert, counter, "ssc2"), wait=2)
    tx["first_offline"] = expect(r, 202, "sale while central is down")
    counter.wait_for("the daemon to notice the outage", lambda: counter.status()["mode"] == "offline")
    say("", f"sale kept as pending ({tx['first_offline']['offline_reason']}); mode is now OFFLINE")

    mirror.show(counter)

    card = card_for(insert, counter, "ssc2_t0")
    with mirror.primary_stopped(counter):
        r = counter.sell("order-1003", BASKETS[2], card)
        tx["offline"] = expect(r, 202, "offline sale")
        counter.print_receipt(tx["offline"]["id"])
        s["receipts"]["offline"] = counter.save_png(tx["offline"]["id"], "2-offline")
        say("", "offline sale: patient pays cash, receipt marked 离线交易 and kept")
        mirror.sold(counter, r)

        r = counter.sell("order-1004", BASKETS[3], card_for(insert, counter, "frozen"))
        problem = expect(r, 403, "frozen card refused")
        if problem["code"] != "card_frozen":
            raise DemoFailed(f"frozen card: expected card_frozen, got {problem['code']}")
        s["refused"].append("card_frozen")
        big = [line_item("XZ99", "注射用重组人生长激素", 10, 26000)]
        r = counter.sell("order-1005", big, card_for(insert, counter, "ssc2"))
        problem = expect(r, 403, "over-limit sale refused")
        if problem["code"] != "offline_limit_exceeded":
            raise DemoFailed(f"over limit: expected offline_limit_exceeded, got {problem['code']}")
        s["refused"].append("offline_limit_exceeded")
        say("", "refused by the offline policy: a frozen card, and a sale over the offline limit")

    say("12:00", "the counter PC loses power (kill -9), comes back with the planned 停机 window configured")
    counter.kill9()
    now = datetime.now(TZ)
    window = (now - timedelta(seconds=1), now + timedelta(seconds=6))
    counter.start(downtime=window)
    r = counter.sell("order-1003", BASKETS[2], card)  # the POS retries its last sale after the crash
    replay = expect(r, 200, "replay after the crash")
    if replay["id"] != tx["offline"]["id"]:
        raise DemoFailed("the replayed sale got a new id: a duplicate")
    say("", f"nothing lost: {counter.status()['spool']['pending']} pending after the restart; "
             "the POS's retry returns the same record")

    counter.wait_for("planned downtime mode", lambda: counter.status()["mode"] == "planned_downtime", 10)
    r = counter.sell("order-1006", BASKETS[4], card_for(insert, counter, "ssc2"))
    tx["planned"] = expect(r, 202, "sale during planned downtime")
    if tx["planned"]["offline_reason"] != "planned_downtime":
        raise DemoFailed(f"planned downtime sale: offline_reason {tx['planned']['offline_reason']}")
    counter.print_receipt(tx["planned"]["id"])
    s["receipts"]["planned"] = counter.save_png(tx["planned"]["id"], "3-planned-downtime")
    say("", "sale during the planned window: receipt marked 停机")

    say("14:00", "central is back; the window ends; the backlog uploads in order")
    central.control(down=False)
    counter.wait_for("the backlog to drain", lambda: counter.status()["spool"]["pending"] == 0, 40)
    local = counter.api().get("/v1/transactions", params={"limit": 500}).json()["items"]
    stored = central.records(TERMINAL)
    local_seqs = [t["seq"] for t in local]
    central_seqs = [int(r.get("seq", r.get("record", {}).get("seq", 0))) for r in stored]
    if local_seqs != central_seqs:
        raise DemoFailed(f"central holds seqs {central_seqs}, the spool {local_seqs}")
    s["uploaded"] = len(stored)
    rejected = counter.api().get(f"/v1/transactions/{tx['offline']['id']}").json()
    if rejected["status"] != "rejected":
        raise DemoFailed(f"the not-insured sale came back {rejected['status']}")
    say("", f"{len(stored)} records at central, seq {central_seqs[0]}..{central_seqs[-1]}, each once; "
             f"one rejected: {rejected['rejection']['code']}")

    r = counter.api().post(f"/v1/transactions/{tx['offline']['id']}/resolve",
                           json={"resolution": "self_pay", "note": "患者未参保, 按自费处理"})
    expect(r, 200, "resolve the rejection")
    settled_later = counter.api().get(f"/v1/transactions/{tx['first_offline']['id']}").json()
    counter.print_receipt(settled_later["id"], document="notice")
    s["receipts"]["notice"] = counter.save_png(settled_later["id"], "4-settlement-notice", document="notice")
    owed = settled_later["refund_owed_fen"]
    split = settled_later["settlement"]
    if not settled_later["offline"] or owed != split["fund_paid_fen"] + split["account_paid_fen"] or owed <= 0:
        raise DemoFailed(f"the sale answered 202 should owe the fund's share back: {settled_later}")
    say("", f"staff resolved the rejection as self-pay; the settlement notice tells the patient of "
             f"order-1002 (paid {settled_later['paid_at_counter_fen'] / 100:.2f} in full) that "
             f"{owed / 100:.2f} yuan is owed back")

    followups = expect(counter.api().get("/v1/followups"), 200, "follow-up list")
    owed_ids = [i["id"] for i in followups["items"] if i["reason"] == "refund"]
    if settled_later["id"] not in owed_ids or tx["planned"]["id"] not in owed_ids:
        raise DemoFailed(f"the follow-up list misses a refund owed: {followups}")
    for item in followups["items"]:
        say("", f"follow up: seq {item['seq']} {item['reason']} {item['owed_fen'] / 100:.2f} yuan "
                 f"by {item['deadline']}, card {item['card']['card_number']}")
    r = counter.api().post(f"/v1/transactions/{settled_later['id']}/refund",
                           json={"paid_fen": owed, "operator": {"id": "op7", "name": "王芳"}})
    expect(r, 200, "record the refund handed over")
    left = expect(counter.api().get("/v1/followups"), 200, "follow-up list after the refund")
    if settled_later["id"] in [i["id"] for i in left["items"]]:
        raise DemoFailed("a refund handed over is still listed as owed")
    s["followups"] = {"before": followups["count"], "after": left["count"], "refunded_fen": owed,
                      "still_owed_fen": left["owed_fen"]}
    say("", f"the patient of order-1002 comes back: {owed / 100:.2f} yuan handed over and recorded; "
             f"{left['count']} follow-up(s) left, {left['owed_fen'] / 100:.2f} yuan still owed")

    date = datetime.now(TZ).date().isoformat()
    rec = expect(counter.api().get("/v1/reconciliation", params={"date": date}), 200, "reconciliation")
    if not rec["matches"]:
        raise DemoFailed(f"reconciliation does not match: {rec}")
    outages = expect(counter.api().get("/v1/outages"), 200, "outage log")
    s.update(reconciliation=rec, outages=outages, status=counter.status(),
             printed_lines=len(printer.jobs_text(columns=42)))
    printer_png = counter.work / "receipts" / "printer-paper.png"
    printer_png.write_bytes(printer.png(columns=42))
    s["receipts"]["paper"] = printer_png
    say("18:00", f"reconciliation for {date}: local {rec['local']['count']} records "
                  f"{rec['local']['total_fen'] / 100:.2f} yuan = central: matches")
    return s


def _print_summary(s: dict[str, Any]) -> None:
    status = s["status"]
    console.print(f"mode: {status['mode']}; pending {status['spool']['pending']}; settled "
                  f"{status['spool']['settled_total']}; last seq {status['spool']['last_seq']}")
    console.print(f"uploaded to central: {s['uploaded']} records, in order, each once")
    console.print(f"refused offline: {', '.join(s['refused'])}")
    f = s["followups"]
    console.print(f"follow-ups: {f['before']} listed; refund of {f['refunded_fen'] / 100:.2f} yuan handed over; "
                  f"{f['after']} left ({f['still_owed_fen'] / 100:.2f} yuan still owed)")
    print_outages(s["outages"])
    rec = s["reconciliation"]
    console.print(f"reconciliation {rec['date']}: local {rec['local']} central {rec['central']} "
                  f"matches={rec['matches']}")


def print_outages(outages: list[dict[str, Any]]) -> None:
    for o in outages:
        console.print(f"outage: {o['started_at']} → {o['ended_at'] or 'now'} ({o['duration_s']:.0f} s, "
                      f"{'planned' if o['planned'] else 'unplanned'}: {o['cause']})")
