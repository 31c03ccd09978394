"""From a spool record to receipt bytes or a PNG preview, for one printer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from drivers.printers import PrinterConfig
from drivers.printers.render import render_png
from spool import Record
from terminald.receipts.templates import render_receipt
from terminald.transactions import answer

if TYPE_CHECKING:
    from terminald.daemon import Daemon


def receipt_bytes(d: Daemon, record: Record, printer: PrinterConfig, *, document: str = "receipt",
                  reprint: bool = False) -> bytes:
    return render_receipt(answer(record), document=document, reprint=reprint,
                          institution=d.cfg.terminal.institution_name, terminal_id=d.cfg.terminal.id,
                          columns=printer.columns, chinese=printer.chinese, language=printer.language)


def receipt_png(d: Daemon, record: Record, document: str = "receipt") -> bytes:
    printer = next(iter(d.printers.values())).cfg if d.printers else PrinterConfig(name="preview", uri="memory://")
    return render_png(receipt_bytes(d, record, printer, document=document), columns=printer.columns)
