"""The simulated platform's settings (regional behaviour), its split rule and its messages.

The ``MSG_*`` texts are the ``err_msg`` of the ``infcode -1`` answers a caller may need to tell
apart (docs/nhsa-simulator.md): transient ones (busy, sign-in expired) and the two definite
answers of a 2601 that reverses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

__all__ = [
    "INFNOS",
    "MSG_ALREADY_REVERSED",
    "MSG_ALREADY_REVOKED",
    "MSG_BUSY",
    "MSG_FROZEN",
    "MSG_GATEWAY_TIMEOUT",
    "MSG_MSGID_REUSED",
    "MSG_NOTHING_TO_REVERSE",
    "MSG_NOT_INSURED",
    "MSG_REFUSED",
    "MSG_SETTLEMENT_NOT_FOUND",
    "MSG_SETTLEMENT_REVERSED",
    "MSG_SIGN_IN_EXPIRED",
    "MSG_SIGN_NO_MISSING",
    "Settings",
    "Split",
    "split",
]

INFNOS = ("9001", "1101", "2101", "2102", "2103", "2601", "3201")

MSG_BUSY = "系统繁忙，请稍后再试"
MSG_GATEWAY_TIMEOUT = "调用医保中心服务超时，交易结果未知"
MSG_SIGN_IN_EXPIRED = "签到失效，请重新签到"
MSG_SIGN_NO_MISSING = "签到编号不能为空，请先签到"
MSG_MSGID_REUSED = "发送方报文ID重复"
MSG_NOTHING_TO_REVERSE = "原交易不存在或未成功，无需冲正"
MSG_ALREADY_REVERSED = "原交易已冲正"
MSG_NOT_INSURED = "参保人未参保，不能享受医保待遇"
MSG_FROZEN = "参保人暂停参保（欠缴医保费），不能享受医保待遇"
MSG_REFUSED = "医保中心拒绝办理该业务"
MSG_SETTLEMENT_NOT_FOUND = "结算信息不存在"
MSG_SETTLEMENT_REVERSED = "该结算已冲正"
MSG_ALREADY_REVOKED = "该结算已撤销"


@dataclass
class Settings:
    """Regional behaviour (a caller's profile has the same questions), changeable at run time."""

    amounts_as: str = "number"  # "number" (12.30) or "string" ("12.30") in answers
    infcode_as_string: bool = False  # "0"/"-1" instead of 0/-1 (seen in public answer samples)
    fund_includes_acct: bool = False  # fund_pay_sumamt includes acct_pay (wire and 3201)
    reversible_infnos: list[str] = field(default_factory=lambda: ["2102", "2103"])
    stmt_date_by: str = "begntime"  # 3201 counts a settlement on its begntime's day, or "setl_time"
    stmt_by_setl_optins: bool = False  # 3201 counts only settlements cleared by data.setl_optins
    deductible_fen: int = 0  # per person and calendar year of begntime; 0 = none
    split: dict[str, list[int]] = field(default_factory=lambda: {"310": [70, 20], "390": [50, 0]})
    require_card_sn: bool = True  # 1101 with mdtrt_cert_type 03 needs card_sn
    refmsgid_echo: bool = False  # inf_refmsgid = the request's msgid (else the platform's own id)

    def update(self, changes: dict[str, Any]) -> None:
        """Validate every change first, then apply them all (ValueError names the bad one)."""
        checked: dict[str, Any] = {}
        unknown = set(changes) - self.names()
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        for key, value in changes.items():
            default = getattr(Settings(), key)
            if key == "amounts_as" and value not in ("number", "string"):
                raise ValueError("amounts_as is 'number' or 'string'")
            if key == "stmt_date_by" and value not in ("begntime", "setl_time"):
                raise ValueError("stmt_date_by is 'begntime' or 'setl_time'")
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be true or false")
            elif isinstance(default, int):
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"{key} must be a non-negative integer")
            elif isinstance(default, list):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"{key} must be a list of strings")
                value = list(value)
            elif isinstance(default, dict):
                value = _split_table(value)
            checked[key] = value
        for key, value in checked.items():
            setattr(self, key, value)

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


def _split_table(value: Any) -> dict[str, list[int]]:
    if not isinstance(value, dict):
        raise ValueError("split is {insutype: [fund_pct, acct_pct]}")
    table: dict[str, list[int]] = {}
    for insutype, pcts in value.items():
        if (not isinstance(pcts, list) or len(pcts) != 2 or not all(type(p) is int and 0 <= p <= 100 for p in pcts)
                or sum(pcts) > 100):
            raise ValueError(f"split[{insutype}] must be [fund_pct, acct_pct], integers, sum <= 100")
        table[str(insutype)] = [int(pcts[0]), int(pcts[1])]
    return table


@dataclass(frozen=True)
class Split:
    """One settlement's parts in fen: they add up to the total exactly."""

    total: int
    deductible: int
    fund: int
    acct: int
    cash: int


def _pct(amount: int, pct: int) -> int:
    """pct % of a non-negative fen amount, rounded half up to the fen."""
    return (amount * pct + 50) // 100


def split(total: int, *, fund_pct: int, acct_pct: int, use_acct: bool, balance: int, deductible_left: int) -> Split:
    """The deterministic split (docs/nhsa-simulator.md, "The split").

    The part below the year's remaining deductible is the patient's; the fund pays fund_pct % of
    the rest; the personal account (when the caller asks for it) pays acct_pct % of the total, at
    most the balance and at most what the fund left; the cash is what remains.
    """
    deductible = max(0, min(total, deductible_left))
    fund = _pct(total - deductible, fund_pct)
    acct = min(max(balance, 0), _pct(total, acct_pct), total - fund) if use_acct else 0
    return Split(total, deductible, fund, acct, total - fund - acct)
