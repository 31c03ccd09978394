"""Receipt templates: a Transaction answer in, ESC/POS bytes out.

Documents:
- ``receipt``: chosen by the transaction itself: an online settlement (fund
  / account / cash split and central reference), an offline one (banner,
  "keep this receipt", cash due = total), planned downtime ("停机"), a revoke,
  or a rejected one (self-pay);
- ``notice`` (alias ``settlement_notice``): an offline record settled later,
  with the fund and account share to refund to the patient.
``reprint=True`` adds the "重打 REPRINT" banner. Every value goes through the
encoder's sanitiser; identity data is masked by `parse_transaction`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drivers.printers.escpos import EscposWriter

from .model import ReceiptData, ReceiptDataError, fen, parse_transaction
from .strings import STRINGS

__all__ = ["DOCUMENTS", "render_receipt", "render_test_page"]

DOCUMENTS = ("receipt", "notice", "settlement_notice")


def _writer(columns: int, chinese: str, language: str) -> tuple[EscposWriter, dict[str, str]]:
    if language not in STRINGS:
        raise ReceiptDataError(f"language must be one of {sorted(STRINGS)}, not {language!r}")
    w = EscposWriter(columns=columns, chinese=chinese)
    w.init()
    return w, STRINGS[language]


def _header(w: EscposWriter, s: dict[str, str], institution: str, title: str) -> None:
    w.align("center")
    # Double width only when the name still fits on one line.
    if w.measure(institution) * 2 <= w.columns:
        w.size(2, 2)
    else:
        w.size(1, 2)
    w.bold(True)
    w.line(institution)
    w.size(1, 1)
    w.line(title)
    w.bold(False)


def _banner(w: EscposWriter, text: str) -> None:
    w.align("center")
    w.bold(True)
    w.size(1, 2)
    w.line(text)
    w.size(1, 1)
    w.bold(False)


def _identity(w: EscposWriter, s: dict[str, str], r: ReceiptData, terminal_id: str) -> None:
    w.rule("=")
    w.pair(s["terminal"], terminal_id)
    w.pair(s["tx_id"], r.id)
    if r.seq is not None:
        w.pair(s["seq"], r.seq)
    w.pair(s["time"], r.business_time)
    if r.operator:
        w.pair(s["operator"], r.operator)
    w.rule("-")
    w.pair(s["name"], r.name)
    w.pair(s["ssn"], r.ssn)
    w.pair(s["card"], r.card_number)


def _items(w: EscposWriter, s: dict[str, str], r: ReceiptData) -> None:
    w.rule("-")
    wide = w.columns >= 42
    if wide:
        widths = [w.columns - 24, 6, 9, 9]
        w.row([s["item"], s["qty"], s["price"], s["amount"]], widths, "lrrr")
    for it in r.items:
        if wide:
            w.row([it.name, it.qty, fen(it.unit_price_fen), fen(it.amount_fen)], widths, "lrrr")
        else:
            w.line(it.name, align="left")
            w.row(["", f"{it.qty} x {fen(it.unit_price_fen)}", fen(it.amount_fen)], [2, 18, 12], "lrr")
    w.rule("-")
    w.bold(True)
    w.pair(s["total"], f"¥{fen(r.total_fen)}")
    w.bold(False)


def _footer(w: EscposWriter, s: dict[str, str], r: ReceiptData) -> None:
    w.rule("=")
    w.align("center")
    w.qr(r.id, module=6 if w.columns >= 42 else 4)
    w.line(s["scan"], align="center")
    w.feed(2)
    w.cut()


def _receipt(w: EscposWriter, s: dict[str, str], r: ReceiptData, institution: str, terminal_id: str) -> None:
    revoke = r.kind == "revoke"
    _header(w, s, institution, s["title_revoke"] if revoke else s["title"])
    if r.offline:
        _banner(w, s["planned_banner"] if r.offline_reason == "planned_downtime" else s["offline_banner"])
    _identity(w, s, r, terminal_id)
    if revoke and r.original_id:
        w.pair(s["original"], r.original_id)
    _items(w, s, r)
    if revoke:
        w.line(s["revoked"], align="left")
    elif r.offline:
        w.bold(True)
        w.pair(s["cash_due"], f"¥{fen(r.total_fen)}")
        w.bold(False)
        w.line(s["keep"], align="left")
    elif r.status == "rejected":
        w.line(s["rejected"], align="left")
        if r.rejection:
            w.pair(s["reason"], r.rejection)
        w.bold(True)
        w.pair(s["cash_due"], f"¥{fen(r.total_fen)}")
        w.bold(False)
    elif r.settlement is not None:
        st = r.settlement
        w.pair(s["fund"], fen(st.fund_paid_fen))
        w.pair(s["account"], fen(st.account_paid_fen))
        w.bold(True)
        w.pair(s["cash"], f"¥{fen(st.cash_paid_fen)}")
        w.bold(False)
        w.pair(s["central_ref"], st.central_ref)
    else:
        w.line(s["pending"], align="left")


def _notice(w: EscposWriter, s: dict[str, str], r: ReceiptData, institution: str, terminal_id: str) -> None:
    if r.status == "rejected":
        _header(w, s, institution, s["title_notice"])
        _identity(w, s, r, terminal_id)
        w.rule("-")
        w.pair(s["paid_at_counter"], f"¥{fen(r.total_fen)}")
        w.line(s["rejected"], align="left")
        if r.rejection:
            w.pair(s["reason"], r.rejection)
        w.pair(s["refund"], f"¥{fen(0)}")
        w.line(s["no_refund"], align="left")
        return
    if r.settlement is None:
        raise ReceiptDataError("a settlement notice needs a settled (or rejected) transaction")
    st = r.settlement
    _header(w, s, institution, s["title_notice"])
    _identity(w, s, r, terminal_id)
    w.rule("-")
    w.line(s["settled_as"], align="left")
    w.pair(s["total"], fen(r.total_fen))
    w.pair(s["paid_at_counter"], fen(r.total_fen if r.offline else st.cash_paid_fen))
    w.pair(s["fund"], fen(st.fund_paid_fen))
    w.pair(s["account"], fen(st.account_paid_fen))
    w.pair(s["cash"], fen(st.cash_paid_fen))
    w.pair(s["central_ref"], st.central_ref)
    w.bold(True)
    refund = st.fund_paid_fen + st.account_paid_fen if r.offline else 0
    w.pair(s["refund"], f"¥{fen(refund)}")
    w.bold(False)


def render_receipt(
    tx: Mapping[str, Any],
    *,
    document: str = "receipt",
    reprint: bool = False,
    institution: str,
    terminal_id: str,
    columns: int,
    chinese: str,
    language: str,
) -> bytes:
    """ESC/POS bytes of one document for the transaction `tx` (the local
    API's Transaction answer, with `items` and `operator`). Raises
    ReceiptDataError for a malformed transaction or unknown document, and
    PrinterConfigError for bad columns / chinese mode."""
    if document not in DOCUMENTS:
        raise ReceiptDataError(f"document must be one of {DOCUMENTS}, not {document!r}")
    r = parse_transaction(tx)
    w, s = _writer(columns, chinese, language)
    if reprint:
        # Printed first so a reprint can never be mistaken for the original.
        _banner(w, s["reprint"])
    if document == "receipt":
        _receipt(w, s, r, institution, terminal_id)
    else:
        _notice(w, s, r, institution, terminal_id)
    if reprint:
        _banner(w, s["reprint"])
    _footer(w, s, r)
    return w.getvalue()


def render_test_page(
    *, institution: str, terminal_id: str, printer: str, columns: int, chinese: str, language: str = "zh-CN"
) -> bytes:
    """A page that shows whether CJK, ¥, sizes, width and QR print right."""
    w, s = _writer(columns, chinese, language)
    _header(w, s, institution, s["title_test"])
    w.rule("=")
    w.pair(s["terminal"], terminal_id)
    w.pair(s["printer"], printer)
    w.pair("columns / chinese", f"{columns} / {chinese}")
    w.rule("-")
    w.line(s["test_line"], align="left")
    w.line("".join(str(i % 10) for i in range(1, columns + 1)))
    w.line("汉" * (columns // 2))
    w.rule("=")
    w.align("center")
    w.qr(f"terminald test {terminal_id}", module=4)
    w.feed(2)
    w.cut()
    return w.getvalue()
