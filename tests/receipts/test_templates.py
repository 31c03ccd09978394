"""Template content rules: masking, wording per document, bad input."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.errors import PrinterConfigError
from drivers.printers.decode import TextLine, decode
from terminald.receipts.model import ReceiptDataError, fen, parse_transaction
from terminald.receipts.strings import EN, STRINGS, ZH
from terminald.receipts.templates import render_receipt, render_test_page, short_id

from .samples import DOCUMENTS, REFUND, REVOKE_ID, SALE_ID, SETTLEMENT, STATES, outage, revoke, tx


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


# -- each document states the record's real state and amounts ----------------------------


def lines(t: dict[str, Any], columns: int = 48, **kwargs: Any) -> list[str]:
    return text(t, columns, **kwargs).splitlines()


def line(t: dict[str, Any], start: str, columns: int = 48, **kwargs: Any) -> str:
    found = [ln for ln in lines(t, columns, **kwargs) if ln.startswith(start)]
    assert len(found) == 1, (start, found)
    return found[0]


def render_state(name: str, columns: int = 48) -> bytes:
    t, kw = DOCUMENTS[name]
    args: dict[str, Any] = {"language": "zh-CN", **kw}
    return render_receipt(t, institution="示例大药房", terminal_id="T0001", columns=columns, chinese="fs", **args)


def decoded_line(data: bytes, start: str) -> TextLine:
    found = [i for i in decode(data).items if isinstance(i, TextLine) and i.text.startswith(start)]
    assert len(found) == 1, (start, [i.text for i in found])
    return found[0]


@pytest.mark.parametrize("columns", [32, 42, 48])
def test_decoder_reads_the_cash_due_of_a_timeout_sale(columns: int) -> None:
    """A sale spooled online that central did not answer in time (mode "online", offline true):
    the printer gets the banner and, in bold, the whole amount to collect."""
    data = render_state("pending_timeout", columns)
    due = decoded_line(data, "现金应付")
    assert due.text.endswith("¥37.80") and all(span.bold for span in due.spans if span.text.strip())
    texts = [i.text for i in decode(data).items if isinstance(i, TextLine)]
    assert "离线交易 OFFLINE — 中心未应答" in texts and ZH["keep"] in texts
    assert ZH["pending"] not in texts


@pytest.mark.parametrize("columns", [32, 42, 48])
@pytest.mark.parametrize("name", ["settled_after_outage_notice", "notice"])
def test_decoder_reads_the_refund_owed_on_a_notice(name: str, columns: int) -> None:
    """The issue's demo: a sale made as central went down (timeout) then settled; its notice
    must say the fund's share is owed, not ¥0.00."""
    owed = decoded_line(render_state(name, columns), "应退患者")
    assert owed.text.endswith("¥32.80") and all(span.bold for span in owed.spans if span.text.strip())


def test_no_state_but_an_unanswered_sale_says_still_processing() -> None:
    for name in STATES:
        out = text(*DOCUMENTS[name][:1], **DOCUMENTS[name][1])
        assert (ZH["pending"] in out) == (name == "pending"), name
        assert (EN["pending"] in text(*DOCUMENTS[name][:1], **{**DOCUMENTS[name][1], "language": "en"})) == (
            name == "pending"
        ), name


def test_resolved_records_print_their_resolution() -> None:
    self_pay = text(DOCUMENTS["resolved_self_pay"][0])
    assert "医保未结算，已按自费结算" in self_pay and "参保人欠费冻结" in self_pay
    assert line(DOCUMENTS["resolved_self_pay"][0], "现金应付").endswith("¥37.80")
    assert line(DOCUMENTS["resolved_self_pay"][0], "备注").endswith("患者同意自费")
    voided = text(DOCUMENTS["resolved_voided"][0])
    assert "本交易已作废" in voided and "现金应付" not in voided and "按自费" not in voided
    # Resolved after an outage: what the patient already paid, not a second "cash due".
    paid = outage(status="resolved", rejection={"code": "x", "message": "拒付"},
                  resolution={"resolution": "self_pay", "note": None, "at": "2026-11-24T09:00:00+08:00"})
    assert line(paid, "当时现金已付").endswith("¥37.80") and "现金应付" not in text(paid)
    # Voided after an outage: all the patient paid is owed back, until handed over.
    voided_outage = outage(status="resolved", rejection={"code": "x", "message": "拒付"}, refund_owed_fen=3780,
                           resolution={"resolution": "voided", "note": None, "at": "2026-11-24T09:00:00+08:00"})
    assert line(voided_outage, "当时现金已付").endswith("¥37.80")
    assert line(voided_outage, "应退患者(已付全额)").endswith("¥37.80") and "统筹+个人账户" not in text(voided_outage)
    handed = {**voided_outage, "refund_owed_fen": 0, "refund": {
        "paid_fen": 3780, "operator": {"id": "op7", "name": "王芳"}, "at": "2026-11-25T09:00:00+08:00"}}
    assert line(handed, "已退患者(已付全额)").endswith("¥37.80") and "应退患者" not in text(handed)
    for document in ("receipt", "notice"):
        assert "应退患者(已付全额)" in text(voided_outage, document=document)
    with pytest.raises(ReceiptDataError):
        text(tx(status="resolved", resolution={"resolution": "lost"}))
    with pytest.raises(ReceiptDataError):
        text(tx(status="resolved", resolution=None))


def test_revoke_states() -> None:
    settled = text(DOCUMENTS["revoke"][0])
    assert "原凭条作废" in settled and line(DOCUMENTS["revoke"][0], "退还患者").endswith("¥5.00")
    pending = text(DOCUMENTS["revoke_pending"][0])
    assert "撤销待确认" in pending and "原凭条作废" not in pending
    assert line(DOCUMENTS["revoke_pending"][0], "退还患者").endswith("¥5.00")
    rejected = text(DOCUMENTS["revoke_rejected"][0])
    assert "撤销未成功，原交易仍有效" in rejected and "原凭条作废" not in rejected
    assert "原结算已超过可撤销期限" in rejected and "¥" not in line(DOCUMENTS["revoke_rejected"][0], "退还患者")
    en = text(DOCUMENTS["revoke_rejected"][0], language="en")
    assert "Revoke failed" in en and "void" not in en


def test_revoke_hands_back_what_the_patient_paid_for_the_original() -> None:
    # An outage original: the patient paid the whole amount.
    assert line(revoke(original={"paid_at_counter_fen": 3780, "refund": None}), "退还患者").endswith("¥37.80")
    # ... and already got the fund's share back: only the rest goes back now.
    handed = revoke(original={"paid_at_counter_fen": 3780, "refund": REFUND})
    assert line(handed, "原交易已退统筹部分").endswith("32.80")
    assert line(handed, "退还患者").endswith("¥5.00")
    # The original's answer not at hand (or undecided): the revoke's own amount.
    assert line(revoke(original=None), "退还患者").endswith("¥37.80")
    assert line(revoke(original={"paid_at_counter_fen": None}), "退还患者").endswith("¥37.80")
    assert "原交易患者已付" not in text(revoke(original=None))


def test_a_revoked_settlement_says_by_which_revoke() -> None:
    out = lines(DOCUMENTS["revoked_original"][0], 32)
    assert "本交易已撤销" in out
    assert line(DOCUMENTS["revoked_original"][0], "撤销交易号", 32).endswith("…" + REVOKE_ID[-12:])
    assert short_id(REVOKE_ID) == "…5c6d7e8f9a0b" and short_id("tx-1") == "tx-1"
    assert "本交易已撤销" not in text(tx())
    # On its notice too (an outage sale revoked owes nothing: the answer says 0).
    notice = outage(status="settled", settlement=SETTLEMENT, revoked_by=REVOKE_ID, refund_owed_fen=0)
    assert "本交易已撤销" in text(notice, document="notice")
    assert line(notice, "应退患者", document="notice").endswith("¥0.00")


def test_money_facts_are_read_not_worked_out() -> None:
    # "offline" is the answer's, not the mode's: a timeout sale was spooled in mode "online"...
    assert "离线交易" in text(outage("timeout"))
    # ... and a sale central answered in time is no outage sale, whatever the mode says.
    assert "离线交易" not in text(tx(mode="offline", offline=False, offline_reason=None))
    assert "离线交易" not in text(tx(status="pending", mode="offline", offline=False, settlement=None,
                                     paid_at_counter_fen=None))
    # What the patient paid and what is owed back are printed as stated.
    assert line(tx(paid_at_counter_fen=123), "实收").endswith("¥1.23")
    assert "实收" not in text(tx(paid_at_counter_fen=None))
    owed = outage(status="settled", settlement=SETTLEMENT, refund_owed_fen=1000)
    assert line(owed, "应退患者", document="notice").endswith("¥10.00")
    assert line(owed, "应退患者").endswith("¥10.00")
    assert line(owed, "已全额付款").endswith("¥37.80")
    with pytest.raises(ReceiptDataError):
        text(tx(offline="yes"))
    with pytest.raises(ReceiptDataError):
        text(tx(paid_at_counter_fen="5.00"))
    with pytest.raises(ReceiptDataError):
        text(tx(status="lost"))


def test_notice_after_the_refund_was_handed_over() -> None:
    t, kw = DOCUMENTS["notice_refunded"]
    assert line(t, "已退患者", **kw).endswith("¥32.80")
    assert line(t, "退款时间", **kw).endswith("2026-11-25 09:30:12")
    assert line(t, "经办人", **kw).endswith("李娜")
    assert not [ln for ln in lines(t, **kw) if ln.startswith("应退患者")]
    with pytest.raises(ReceiptDataError):
        text(outage(status="settled", settlement=SETTLEMENT, refund={**REFUND, "paid_fen": "32.80"}),
             document="notice")


def test_notice_of_a_rejected_outage_sale_and_what_a_notice_refuses() -> None:
    t, kw = DOCUMENTS["rejected_after_outage_notice"]
    assert line(t, "当时现金已付", **kw).endswith("¥37.80")
    assert line(t, "应退患者", **kw).endswith("¥0.00") and "无退款，按自费处理" in text(t, **kw)
    with pytest.raises(ReceiptDataError):
        text(revoke(), document="notice")
    with pytest.raises(ReceiptDataError):
        text(outage(), document="settlement_notice")
    with pytest.raises(ReceiptDataError):  # settled, but the settlement is missing
        text(tx(settlement=None), document="notice")


@pytest.mark.parametrize("columns", [32, 42, 48])
def test_long_values_never_run_past_the_paper(columns: int) -> None:
    long_reason = "参保人账户状态异常，请到参保地经办机构核实后再办理结算业务"
    t = tx(status="rejected", settlement=None, paid_at_counter_fen=None,
           rejection={"code": "x", "message": long_reason}, operator={"id": "op7", "name": "W" * 50},
           id="A" * 80, revoked_by="B" * 40)
    doc = decode(render_receipt(t, institution="示例大药房", terminal_id="T" * 60, columns=columns, chinese="fs",
                                language="zh-CN"))
    printed = [i for i in doc.items if isinstance(i, TextLine)]
    assert all(i.cols <= columns for i in printed), [i.text for i in printed if i.cols > columns]
    joined = "".join(i.text.strip() for i in printed)
    assert long_reason in joined and "A" * 80 in joined and "T" * 60 in joined


def test_a_uuid_breaks_between_its_groups_at_32_columns() -> None:
    out = lines(tx(), 32)
    at = out.index("交易号")
    assert [ln.strip() for ln in out[at + 1 : at + 3]] == [SALE_ID[:24], SALE_ID[24:]]


def test_both_languages_have_every_text() -> None:
    assert set(STRINGS) == {"zh-CN", "en"}
    assert ZH.keys() == EN.keys()
    assert all(v.strip() for v in (*ZH.values(), *EN.values()))
