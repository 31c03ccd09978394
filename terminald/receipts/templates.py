"""Receipt templates: a Transaction answer in, ESC/POS bytes out.

Each document states the record's real state and amounts, read from the
answer (`model.parse_transaction`), never worked out from the link state:

- ``receipt``, a settlement:
  - settled (online): fund / account / cash split, central reference, 实收 =
    what the patient paid at the counter (the cash part);
  - pending, an outage sale (``offline``, any reason, timeout included): the
    离线 banner (停机 for planned downtime), "keep this receipt", cash due =
    total;
  - pending, not answered yet: "settlement in progress" (the only state that
    says so);
  - settled after an outage: the banner, paid in full = total, the split,
    and the fund's share owed back to the patient (or the hand-over);
  - rejected: self-pay (central's reason), the total to pay, or what was
    already paid at the counter; resolved: "按自费结算" or "已作废";
  - a settlement a revoke cancels (``revoked_by``): says so, with the revoke's
    id shortened;
- ``receipt``, a revoke: pending "撤销待确认", settled "原凭条作废" (both with
  the amount handed back to the patient), rejected "撤销未成功" (the original
  stands, nothing handed back);
- ``notice`` (alias ``settlement_notice``): a settlement central decided
  after the sale: 统筹, 个人账户, 现金 and 应退患者 (or 已退 with when and
  by whom), or the rejection / resolution.

``reprint=True`` adds the "重打 REPRINT" banner. Every value goes through the
encoder's sanitiser; identity data is masked by `parse_transaction`. No line
runs past the paper: a value wider than the paper (a 36-character id at 32
columns) goes under its label, broken at ``-`` where it can; the QR code
always holds the full transaction id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drivers.printers.escpos import EscposWriter, sanitise

from .model import ReceiptData, ReceiptDataError, Settlement, fen, parse_transaction
from .strings import STRINGS

__all__ = ["DOCUMENTS", "document_kind", "render_receipt", "render_test_page", "short_id"]

DOCUMENTS = ("receipt", "notice", "settlement_notice")
SHORT_ID_CHARS = 12


def document_kind(document: str) -> str:
    """The kind a document is counted as (for "reprint"): ``receipt`` or ``notice``."""
    if document not in DOCUMENTS:
        raise ReceiptDataError(f"document must be one of {DOCUMENTS}, not {document!r}")
    return "receipt" if document == "receipt" else "notice"


def short_id(record_id: str) -> str:
    """The tail of an id, for a line that only points at another record.

    Record ids are UUIDv7: the head is the creation time (records made in the
    same minute share it), the tail is random, so the tail tells them apart.
    """
    return record_id if len(record_id) <= SHORT_ID_CHARS + 1 else "…" + record_id[-SHORT_ID_CHARS:]


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


def _chunks(w: EscposWriter, text: str) -> list[str]:
    """`text` in pieces of at most the paper width, broken after the last ``-`` or
    at the last space of a piece when it has one (an id splits between its groups)."""
    out: list[str] = []
    cur, used = "", 0
    for ch in text:
        cw = w.measure(ch)
        if cur and used + cw > w.width:
            cut = max(cur.rfind("-"), cur.rfind(" ")) + 1
            if cut <= 0:
                cut = len(cur)
            out.append(cur[:cut].rstrip())
            cur = cur[cut:].lstrip()
            used = w.measure(cur)
        cur += ch
        used += cw
    if cur:
        out.append(cur)
    return out


def _pair(w: EscposWriter, label: str, value: object) -> None:
    """`label` left, `value` right; a value wider than the paper goes under the
    label in right-aligned pieces, so nothing runs past the edge."""
    text = sanitise(value, single_line=True)
    if w.measure(text) <= w.width:
        w.pair(label, text)
        return
    w.line(sanitise(label, single_line=True), align="left")
    for part in _chunks(w, text):
        # Padded, not right-aligned by command: the stream keeps the same commands for any data.
        w.line(" " * (w.width - w.measure(part)) + part, align="left")


def _strong(w: EscposWriter, label: str, value: object) -> None:
    w.bold(True)
    _pair(w, label, value)
    w.bold(False)


def _note(w: EscposWriter, text: str, *, strong: bool = False) -> None:
    if strong:
        w.bold(True)
    w.line(text, align="left")
    if strong:
        w.bold(False)


def _identity(w: EscposWriter, s: dict[str, str], r: ReceiptData, terminal_id: str) -> None:
    w.rule("=")
    _pair(w, s["terminal"], terminal_id)
    _pair(w, s["tx_id"], r.id)
    if r.seq is not None:
        _pair(w, s["seq"], r.seq)
    _pair(w, s["time"], r.business_time)
    if r.operator:
        _pair(w, s["operator"], r.operator)
    w.rule("-")
    _pair(w, s["name"], r.name)
    _pair(w, s["ssn"], r.ssn)
    _pair(w, s["card"], r.card_number)


def _items(w: EscposWriter, s: dict[str, str], r: ReceiptData) -> None:
    wide = w.columns >= 42
    widths = [w.columns - 24, 6, 9, 9]
    if r.items:  # a revoke has none (its total is its original's, negated): no empty table
        w.rule("-")
        if wide:
            w.row([s["item"], s["qty"], s["price"], s["amount"]], widths, "lrrr")
    for it in r.items:
        if wide:
            w.row([it.name, it.qty, fen(it.unit_price_fen), fen(it.amount_fen)], widths, "lrrr")
        else:
            w.line(it.name, align="left")
            w.row(["", f"{it.qty} x {fen(it.unit_price_fen)}", fen(it.amount_fen)], [2, 18, 12], "lrr")
    w.rule("-")
    _strong(w, s["total"], f"¥{fen(r.total_fen)}")


def _footer(w: EscposWriter, s: dict[str, str], r: ReceiptData) -> None:
    w.rule("=")
    w.align("center")
    w.qr(r.id, module=6 if w.columns >= 42 else 4)
    w.line(s["scan"], align="center")
    w.feed(2)
    w.cut()


# The banner names why the patient paid in full: a planned window, central unreachable, or
# central up but not answering in time (the system was not down: the receipt must not say so).
_BANNERS = {"planned_downtime": "planned_banner", "timeout": "timeout_banner", "backlog": "timeout_banner"}


def _outage_banner(w: EscposWriter, s: dict[str, str], r: ReceiptData) -> None:
    if r.offline:
        _banner(w, s[_BANNERS.get(r.offline_reason, "offline_banner")])


def _settled(r: ReceiptData) -> Settlement:
    if r.settlement is None:
        raise ReceiptDataError("a settled transaction needs its settlement")
    return r.settlement


def _split(w: EscposWriter, s: dict[str, str], r: ReceiptData) -> None:
    st = _settled(r)
    _pair(w, s["fund"], fen(st.fund_paid_fen))
    _pair(w, s["account"], fen(st.account_paid_fen))
    _pair(w, s["cash"], fen(st.cash_paid_fen))
    _pair(w, s["central_ref"], st.central_ref)


def _refund(w: EscposWriter, s: dict[str, str], r: ReceiptData, whole: bool = False) -> None:
    """What an outage sale owes the patient, the fund's share (or, ``whole``, all they paid: the
    sale was voided): still owed, or handed over (when, by whom)."""
    suffix = "_whole" if whole else ""
    if r.refund is not None:
        _strong(w, s["refunded" + suffix], f"¥{fen(r.refund.paid_fen)}")
        _pair(w, s["refunded_at"], r.refund.at)
        if r.refund.operator:
            _pair(w, s["refunded_by"], r.refund.operator)
    else:
        _strong(w, s["refund" + suffix], f"¥{fen(r.refund_owed_fen)}")


def _paid_or_due(w: EscposWriter, s: dict[str, str], r: ReceiptData) -> None:
    """Not covered by the fund: what the patient already paid at the counter (an outage
    sale), or the total still to pay."""
    if r.paid_at_counter_fen is not None:
        _strong(w, s["paid_at_counter"], f"¥{fen(r.paid_at_counter_fen)}")
    else:
        _strong(w, s["cash_due"], f"¥{fen(r.total_fen)}")


def _why(w: EscposWriter, s: dict[str, str], r: ReceiptData) -> None:
    if r.rejection:
        _pair(w, s["reason"], r.rejection)
    if r.resolution_note:
        _pair(w, s["note"], r.resolution_note)


def _revoked_by(w: EscposWriter, s: dict[str, str], r: ReceiptData) -> None:
    if r.revoked_by:
        _note(w, s["revoked_by_line"], strong=True)
        _pair(w, s["revoked_by"], short_id(r.revoked_by))


def _settlement_outcome(w: EscposWriter, s: dict[str, str], r: ReceiptData) -> None:
    if r.status == "settled" and r.offline:
        # Paid in full during the outage; central settled it since: the fund owes its share.
        _note(w, s["settled_later"])
        _strong(w, s["paid_in_full"], f"¥{fen(r.total_fen)}")
        _split(w, s, r)
        _refund(w, s, r)
    elif r.status == "settled":
        _split(w, s, r)
        if r.paid_at_counter_fen is not None:
            _strong(w, s["received"], f"¥{fen(r.paid_at_counter_fen)}")
    elif r.status == "pending" and r.offline:
        _strong(w, s["cash_due"], f"¥{fen(r.total_fen)}")
        _note(w, s["keep"])
    elif r.status == "pending":
        _note(w, s["pending"])
    elif r.status == "rejected":
        _note(w, s["rejected"], strong=True)
        _why(w, s, r)
        _paid_or_due(w, s, r)
    elif r.resolution == "self_pay":
        _note(w, s["resolved_self_pay"], strong=True)
        _why(w, s, r)
        _paid_or_due(w, s, r)
    else:  # resolved as voided: what the patient paid goes back to them
        _note(w, s["resolved_voided"], strong=True)
        _why(w, s, r)
        if r.paid_at_counter_fen is not None:
            _pair(w, s["paid_at_counter"], f"¥{fen(r.paid_at_counter_fen)}")
            _refund(w, s, r, whole=True)


def _revoke_refund(w: EscposWriter, s: dict[str, str], r: ReceiptData) -> None:
    """What goes back to the patient: what they paid for the original (less the fund's share
    already handed back after an outage), or the revoke's amount when the original is not known."""
    if r.original_paid_fen is None:
        amount = abs(r.total_fen)
    else:
        _pair(w, s["original_paid"], fen(r.original_paid_fen))
        if r.original_refunded_fen:
            _pair(w, s["original_refunded"], fen(r.original_refunded_fen))
        amount = r.original_paid_fen - r.original_refunded_fen
    _strong(w, s["revoke_refund"], f"¥{fen(amount)}")


def _revoke_outcome(w: EscposWriter, s: dict[str, str], r: ReceiptData) -> None:
    if r.status == "pending":
        _note(w, s["revoke_pending"], strong=True)
        _revoke_refund(w, s, r)
        if r.offline:
            _note(w, s["keep"])
    elif r.status == "settled":
        _note(w, s["revoked"], strong=True)
        if r.settlement is not None and r.settlement.central_ref:
            _pair(w, s["central_ref"], r.settlement.central_ref)
        _revoke_refund(w, s, r)
    else:  # rejected (or a rejected revoke staff resolved): the original stands
        _note(w, s["revoke_rejected"], strong=True)
        _why(w, s, r)
        _strong(w, s["revoke_refund"], s["no_revoke_refund"])


def _receipt(w: EscposWriter, s: dict[str, str], r: ReceiptData, institution: str, terminal_id: str) -> None:
    revoke = r.kind == "revoke"
    _header(w, s, institution, s["title_revoke"] if revoke else s["title"])
    _outage_banner(w, s, r)
    _identity(w, s, r, terminal_id)
    if revoke and r.original_id:
        _pair(w, s["original"], r.original_id)
    _items(w, s, r)
    if revoke:
        _revoke_outcome(w, s, r)
    else:
        _settlement_outcome(w, s, r)
    _revoked_by(w, s, r)


def _notice(w: EscposWriter, s: dict[str, str], r: ReceiptData, institution: str, terminal_id: str) -> None:
    if r.kind != "settlement":
        raise ReceiptDataError("a settlement notice is for a settlement, not a revoke")
    if r.status == "pending":
        raise ReceiptDataError("a settlement notice needs a settled (or rejected) transaction")
    _header(w, s, institution, s["title_notice"])
    _identity(w, s, r, terminal_id)
    w.rule("-")
    if r.status == "settled":
        _settled(r)
        _note(w, s["settled_as"])
        _pair(w, s["total"], fen(r.total_fen))
        if r.paid_at_counter_fen is not None:
            _pair(w, s["paid_at_counter"], fen(r.paid_at_counter_fen))
        _split(w, s, r)
        _refund(w, s, r)
    else:
        if r.paid_at_counter_fen is not None:
            _pair(w, s["paid_at_counter"], f"¥{fen(r.paid_at_counter_fen)}")
        if r.resolution == "voided":
            _note(w, s["resolved_voided"], strong=True)
            _why(w, s, r)
            if r.paid_at_counter_fen is not None:
                _refund(w, s, r, whole=True)
        else:
            _note(w, s["resolved_self_pay" if r.resolution == "self_pay" else "rejected"], strong=True)
            _why(w, s, r)
            _strong(w, s["refund"], f"¥{fen(r.refund_owed_fen)}")
            _note(w, s["no_refund"])
    _revoked_by(w, s, r)


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
    API's Transaction answer, with `items` and `operator`; a revoke may carry
    `original`, the original's answer, for the amount handed back). Raises
    ReceiptDataError for a malformed transaction or unknown document, and
    PrinterConfigError for bad columns / chinese mode."""
    kind = document_kind(document)
    r = parse_transaction(tx)
    w, s = _writer(columns, chinese, language)
    if reprint:
        # Printed first so a reprint can never be mistaken for the original.
        _banner(w, s["reprint"])
    if kind == "receipt":
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
    _pair(w, s["terminal"], terminal_id)
    _pair(w, s["printer"], printer)
    _pair(w, "columns / chinese", f"{columns} / {chinese}")
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
