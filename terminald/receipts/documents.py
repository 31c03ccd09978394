"""From a spool record to receipt bytes or a PNG preview, for one printer.

These read the spool (a revoke's original): call them off the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from drivers.printers import PrinterConfig
from drivers.printers.render import render_png
from spool import Record
from terminald.receipts.templates import render_receipt
from terminald.transactions import answer

if TYPE_CHECKING:
    from terminald.daemon import Daemon


def receipt_tx(d: Daemon, record: Record) -> dict[str, Any]:
    """The Transaction answer a document is printed from. A revoke also carries
    `original`: what its original's answer says the patient paid at the counter and
    was handed back, so the revoke states the amount returned to the patient."""
    tx = answer(record, tz=d.cfg.terminal.timezone)  # times printed in the terminal's zone
    original_id = tx.get("original_id")
    if record.kind == "revoke" and original_id and d.spool is not None:
        original = d.spool.get(original_id)
        if original is not None:
            facts = answer(original, tz=d.cfg.terminal.timezone)
            tx["original"] = {"paid_at_counter_fen": facts["paid_at_counter_fen"], "refund": facts["refund"]}
    return tx


def renderer(d: Daemon, tx: dict[str, Any], printer: PrinterConfig, document: str = "receipt"
             ) -> Callable[[bool], bytes]:
    """`reprint -> bytes` for one document of `tx` on `printer` (no I/O: safe to call
    under the print queue's lock)."""
    def render(reprint: bool) -> bytes:
        return render_receipt(tx, document=document, reprint=reprint,
                              institution=d.cfg.terminal.institution_name, terminal_id=d.cfg.terminal.id,
                              columns=printer.columns, chinese=printer.chinese, language=printer.language)
    return render


def receipt_bytes(d: Daemon, record: Record, printer: PrinterConfig, *, document: str = "receipt",
                  reprint: bool = False) -> bytes:
    return renderer(d, receipt_tx(d, record), printer, document)(reprint)


def receipt_png(d: Daemon, record: Record, document: str = "receipt") -> bytes:
    printer = next(iter(d.printers.values())).cfg if d.printers else PrinterConfig(name="preview", uri="memory://")
    return render_png(receipt_bytes(d, record, printer, document=document), columns=printer.columns)
