"""Receipt rendering: a 30-item Chinese receipt to ESC/POS bytes.

Ours: `render_receipt` (sanitising, GBK runs in FS & / FS ., display-width
layout, native QR). Baseline, same process: python-escpos' `Dummy` printer
given the same receipt text naively (`text()` of the finished lines, `qr()`,
`cut()`), which is what a straightforward integration would do. Prints
milliseconds per receipt (target < 5 ms) and the ratio to the baseline.

    .venv/bin/python bench/receipt.py [--runs 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.printers.decode import decode
from terminald.receipts.templates import render_receipt

DRUGS = [
    "阿莫西林胶囊",
    "布洛芬缓释胶囊 0.3g*20粒",
    "复方甘草片",
    "板蓝根颗粒 10g*20袋",
    "维生素C片",
    "头孢克肟分散片",
]


def transaction() -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for i in range(30):
        qty = 1 + i % 3
        price = 850 + 37 * i
        items.append(
            {
                "code": f"X{i:04d}",
                "name": f"{DRUGS[i % len(DRUGS)]} 第{i + 1}号",
                "qty": qty,
                "unit_price_fen": price,
                "amount_fen": qty * price,
            }
        )
    total = sum(it["amount_fen"] for it in items)
    fund, account = total * 6 // 10, total * 2 // 10
    return {
        "id": "tx-20261123-0042",
        "seq": 42,
        "kind": "settlement",
        "status": "settled",
        "mode": "online",
        "created_at": "2026-11-23T10:15:02+08:00",
        "business_time": "2026-11-23T10:15:00+08:00",
        "total_fen": total,
        "offline": False,
        "settlement": {
            "central_ref": "C2026112300042",
            "fund_paid_fen": fund,
            "account_paid_fen": account,
            "cash_paid_fen": total - fund - account,
        },
        "card": {"card_number": "A12345678", "ssn_masked": "110101********1234", "name_masked": "张*丰"},
        "items": items,
        "operator": {"id": "op7", "name": "王芳"},
    }


def ours(tx: dict[str, Any]) -> bytes:
    return render_receipt(
        tx, institution="示例大药房", terminal_id="T0001", columns=48, chinese="fs", language="zh-CN"
    )


def baseline(text: str, tx_id: str) -> bytes:
    from escpos.printer import Dummy

    p = Dummy()
    p.text(text + "\n")
    p.qr(tx_id, native=True)
    p.cut()
    out: bytes = p.output
    return out


def timed(fn: Callable[[], bytes], runs: int) -> tuple[float, bytes]:
    out = fn()  # warm-up: imports, caches
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()
    tx = transaction()
    text = "\n".join(ln for ln in decode(ours(tx)).text(48).splitlines() if not ln.lstrip().startswith("[QR"))
    ms, data = timed(lambda: ours(tx), args.runs)
    base_ms, base = timed(lambda: baseline(text, tx["id"]), args.runs)
    yen4 = base.count("¥".encode("gb18030"))
    runs = data.count(b"\x1c&")
    ours_yen4 = data.count("¥".encode("gb18030"))
    print(f"ours:     {ms:.3f} ms/receipt, {len(data)} bytes, FS & runs {runs}, 4-byte yen {ours_yen4}")
    print(
        f"baseline: {base_ms:.3f} ms/receipt, {len(base)} bytes (python-escpos Dummy, naive), "
        f"4-byte yen {yen4}, no Chinese mode, no sanitising"
    )
    print(
        f"RESULT ms_per_receipt={ms:.3f} baseline_ms={base_ms:.3f} ratio={ms / base_ms:.2f} "
        f"bytes={len(data)} items=30 target_ms=5 under_target={int(ms < 5)}"
    )


if __name__ == "__main__":
    main()
