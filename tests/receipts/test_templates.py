"""Template content rules: masking, wording per document, bad input."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.errors import PrinterConfigError
from drivers.printers.decode import decode
from terminald.receipts.model import ReceiptDataError, fen, parse_transaction
from terminald.receipts.templates import render_receipt, render_test_page

from .samples import DOCUMENTS, tx


def text(t: dict[str, Any], columns: int = 48, **kwargs: Any) -> str:
    args: dict[str, Any] = {
        "institution": "示例大药房",
        "terminal_id": "T0001",
        "columns": columns,
        "chinese": "fs",
        "language": "zh-CN",
        **kwargs,
    }
    return decode(render_receipt(t, **args)).text(columns)


def test_full_identity_data_is_masked() -> None:
    t = tx(card={"card_number": "A12345678", "ssn": "110101199003071234", "name": "张三丰"})
    out = text(t)
    assert "110101199003071234" not in out and "110101********1234" in out
    assert "张三丰" not in out and "张*丰" in out
    assert "A12345678" not in out and "A1*****78" in out
    assert "张*" in text(tx(card={"name": "张三"}))


def test_offline_receipt_wording_and_cash_due() -> None:
    t, _ = DOCUMENTS["offline"]
    out = text(t)
    assert "离线交易 OFFLINE — 系统停机期间" in out
    assert "请保留此凭条，系统恢复后补录结算" in out
    assert next(ln for ln in out.splitlines() if ln.startswith("现金应付")).endswith("¥37.80")
    assert "统筹支付" not in out


def test_planned_downtime_says_tingji() -> None:
    assert "停机" in text(DOCUMENTS["planned"][0])
    assert "停机" in text(DOCUMENTS["planned"][0], language="en")


def test_reprint_is_marked_twice_and_original_is_not() -> None:
    assert text(tx(), reprint=True).count("重打 REPRINT") == 2
    assert "REPRINT" not in text(tx())


def test_notice_refunds_the_fund_and_account_share() -> None:
    out = text(*DOCUMENTS["notice"][:1], document="notice")
    refund = [ln for ln in out.splitlines() if ln.startswith("应退患者")]
    assert len(refund) == 1 and refund[0].endswith("¥32.80")
    with pytest.raises(ReceiptDataError):
        text(DOCUMENTS["offline"][0], document="notice")


def test_english() -> None:
    out = text(tx(), language="en")
    assert "Medical insurance receipt" in out and "Fund paid" in out


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"id": ""}, ReceiptDataError),
        ({"total_fen": 12.5}, ReceiptDataError),
        ({"total_fen": True}, ReceiptDataError),
        ({"seq": "7"}, ReceiptDataError),
        ({"items": "pills"}, ReceiptDataError),
        ({"items": [42]}, ReceiptDataError),
        ({"card": "A123"}, ReceiptDataError),
        ({"settlement": {"central_ref": "x"}}, ReceiptDataError),
        ({"business_time": "yesterday"}, ReceiptDataError),
        ({"business_time": None, "created_at": None}, ReceiptDataError),
    ],
)
def test_bad_transactions_get_a_typed_error(change: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        text(tx(**change))


def test_bad_arguments() -> None:
    with pytest.raises(ReceiptDataError):
        text(tx(), document="invoice")
    with pytest.raises(ReceiptDataError):
        text(tx(), language="fr")
    with pytest.raises(PrinterConfigError):
        text(tx(), columns=40)
    with pytest.raises(ReceiptDataError):
        render_receipt([], institution="x", terminal_id="x", columns=32, chinese="fs", language="en")  # type: ignore[arg-type]


def test_model_values() -> None:
    r = parse_transaction(tx(items=[{"name": "药", "qty": "0.250", "unit_price_fen": 100, "amount_fen": 25}]))
    assert r.items[0].qty == "0.25" and r.business_time == "2026-11-23 10:15:00"
    assert [fen(x) for x in (0, 5, 100, 12345, -3780)] == ["0.00", "0.05", "1.00", "123.45", "-37.80"]


@pytest.mark.parametrize("columns", [32, 42, 48])
def test_test_page(columns: int) -> None:
    data = render_test_page(
        institution="示例大药房", terminal_id="T0001", printer="receipt", columns=columns, chinese="fs"
    )
    lines = decode(data).text(columns).splitlines()
    assert "汉" * (columns // 2) in lines
