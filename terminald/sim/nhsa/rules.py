"""What the simulated platform decides: the envelope, sign-in, and each transaction's rules.

`Platform.call` handles one request in one SQLite transaction: the call-log row and the call's
effect are committed together, before the answer leaves. A `Rejected` anywhere answers
``infcode -1`` and rolls back every effect of the call (the log row stays). docs/nhsa-simulator.md
lists every rule; the messages a caller may match on are the ``MSG_*`` constants of `settings`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

from terminald.sim.nhsa.persons import Person, PersonTable
from terminald.sim.nhsa.settings import (
    INFNOS,
    MSG_ALREADY_REVERSED,
    MSG_ALREADY_REVOKED,
    MSG_BUSY,
    MSG_FROZEN,
    MSG_MSGID_REUSED,
    MSG_NOT_INSURED,
    MSG_NOTHING_TO_REVERSE,
    MSG_SETTLEMENT_NOT_FOUND,
    MSG_SETTLEMENT_REVERSED,
    MSG_SIGN_IN_EXPIRED,
    MSG_SIGN_NO_MISSING,
    Settings,
    Split,
    split,
)
from terminald.sim.nhsa.store import NhsaStore
from terminald.sim.nhsa.wire import (
    Rejected,
    Yuan,
    decimal_from_wire,
    dumps,
    fen_from_wire,
    msgid_problem,
    parse_date,
    parse_time,
    stamp17,
    wire_time,
    yuan_text,
)

__all__ = ["Gate", "Handled", "Incoming", "Platform"]

_INSU_STAS = {"active": "1", "frozen": "2", "not_insured": "0"}


class Gate(Protocol):
    """The run-time faults the rules consult (the simulator's dice and refusal list)."""

    def busy(self, infno: str) -> bool: ...

    def refusal(self, infno: str, person: Person | None) -> str | None: ...


@dataclass(frozen=True)
class Incoming:
    path: str
    body: bytes
    envelope: dict[str, Any] | None
    parse_error: str | None
    received: datetime
    faults: tuple[str, ...] = ()  # applied before the platform saw the call (latency)


@dataclass
class Outcome:
    infcode: int
    err_msg: str = ""
    output: dict[str, Any] | None = None
    committed: bool = False
    psn_no: str = ""


@dataclass(frozen=True)
class Handled:
    call_id: int
    body: bytes
    infcode: int
    err_msg: str
    committed: bool


def _text(data: dict[str, Any], key: str, what: str, *, required: bool = True, max_len: int = 200) -> str:
    value = data.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str) or len(value) > max_len:
        raise Rejected(f"{what}({key})格式错误")
    if required and not value.strip():
        raise Rejected(f"{what}({key})不能为空")
    return value


def _first_sn(data: dict[str, Any]) -> str:
    details = data.get("drugdetail") or [{}]
    return str(details[0].get("feedetl_sn", ""))


class Platform:
    """The rules, over the books (`NhsaStore`) and the persons (`PersonTable`)."""

    def __init__(self, store: NhsaStore, persons: PersonTable, settings: Settings,
                 sale_key: Callable[[dict[str, Any]], str] | None = None) -> None:
        self.store = store
        self.persons = persons
        self.settings = settings
        self.sale_key = sale_key or _first_sn
        with store.transaction():
            if store.get("frozen") is None:
                store.put("frozen", [self.person(i).key for i in persons.frozen])
            if store.get("not_insured") is None:
                store.put("not_insured", [self.person(i).key for i in persons.not_insured])

    # -- persons -------------------------------------------------------------------------------------

    def person(self, identifier: str) -> Person:
        found = self.persons.find(identifier)
        if found is None:
            raise ValueError(f"no such person: {identifier!r} (card number, ID number or psn_no)")
        return found

    def status(self, person: Person) -> str:
        if person.key in self.store.get("not_insured", []):
            return "not_insured"
        if person.key in self.store.get("frozen", []):
            return "frozen"
        return "active"

    def balance(self, person: Person) -> int:
        opening = self.store.get("balances", {}).get(person.key, person.opening_balance_fen)
        return int(opening) - self.store.acct_charged(person.key)

    def set_balance(self, person: Person, fen: int) -> None:
        """Make the person's current balance `fen` (the opening balance moves)."""
        with self.store.transaction():
            balances = self.store.get("balances", {})
            balances[person.key] = fen + self.store.acct_charged(person.key)
            self.store.put("balances", balances)

    def set_list(self, name: str, identifiers: list[str], op: str = "set") -> None:
        keys = [self.person(i).key for i in identifiers]
        with self.store.transaction():
            current: list[str] = self.store.get(name, [])
            if op == "set":
                current = sorted(set(keys))
            elif op == "add":
                current = sorted(set(current) | set(keys))
            else:
                current = sorted(set(current) - set(keys))
            self.store.put(name, current)

    # -- one call ------------------------------------------------------------------------------------

    def log_transport_fault(self, incoming: Incoming, fault: str) -> None:
        """A call that a fault below the platform ate (reset, HTTP 5xx): logged, nothing handled."""
        env = incoming.envelope or {}
        with self.store.transaction():
            call_id = self.store.open_call(wire_time(incoming.received), incoming.path, _str_or_none(env.get("msgid")),
                                           _str_or_none(env.get("infno")), _str_or_none(env.get("fixmedins_code")),
                                           _request_text(incoming.body))
            self.store.close_call(call_id, answer=None, infcode=None, err_msg="", committed=False,
                                  fault=",".join([*incoming.faults, fault]), psn_no=_psn_no_of(env))

    def call(self, incoming: Incoming, gate: Gate, post_fault: str | None = None) -> Handled:
        """Handle one call; `post_fault` (drop_after_commit, garbage, gateway_timeout) is only
        logged here: the server applies it to the answer after the commit."""
        env = incoming.envelope or {}
        with self.store.transaction():
            call_id = self.store.open_call(wire_time(incoming.received), incoming.path, _str_or_none(env.get("msgid")),
                                           _str_or_none(env.get("infno")), _str_or_none(env.get("fixmedins_code")),
                                           _request_text(incoming.body))
            faults: list[str] = list(incoming.faults)
            try:
                with self.store.transaction():  # a savepoint: a refusal undoes the call's effects
                    outcome = self._handle(incoming, call_id, gate)
            except Rejected as exc:
                outcome = Outcome(-1, exc.err_msg, None, psn_no=_psn_no_of(env))
                if exc.fault:
                    faults.append(exc.fault)
            if post_fault:
                faults.append(post_fault)
            body = self._answer(outcome, env, call_id, incoming.received)
            self.store.close_call(call_id, answer=body.decode("utf-8"), infcode=outcome.infcode,
                                  err_msg=outcome.err_msg, committed=outcome.committed, fault=",".join(faults),
                                  psn_no=outcome.psn_no)
        return Handled(call_id, body, outcome.infcode, outcome.err_msg, outcome.committed)

    def _answer(self, outcome: Outcome, env: dict[str, Any], call_id: int, received: datetime) -> bytes:
        now = datetime.now().astimezone()
        area = env.get("mdtrtarea_admvs")
        area = area if isinstance(area, str) and len(area) == 6 and area.isdigit() else "000000"
        infcode: int | str = str(outcome.infcode) if self.settings.infcode_as_string else outcome.infcode
        answer = {
            "infcode": infcode,
            "inf_refmsgid": (str(env.get("msgid", "")) if self.settings.refmsgid_echo
                             else f"{area}{stamp17(now)[:14]}{call_id:010d}"),
            "refmsg_time": stamp17(received),
            "respond_time": stamp17(now),
            "err_msg": outcome.err_msg,
            "warn_msg": "",
            "signtype": "",
            "cainfo": "",
            "output": outcome.output if outcome.infcode == 0 else None,
        }
        return dumps(answer, amounts_as=self.settings.amounts_as)

    def _handle(self, incoming: Incoming, call_id: int, gate: Gate) -> Outcome:
        env = incoming.envelope
        if env is None:
            raise Rejected(incoming.parse_error or "报文格式错误")
        msgid = env.get("msgid")
        if isinstance(msgid, str) and self.store.msgid_seen_before(msgid, call_id):
            raise Rejected(MSG_MSGID_REUSED)
        infno, data = self._check_envelope(env)
        if infno != "9001":
            self._check_sign_in(env)
        if gate.busy(infno):
            raise Rejected(MSG_BUSY, "busy")
        person = self._person_of(infno, data)
        refusal = gate.refusal(infno, person)
        if refusal is not None:
            raise Rejected(refusal, "refuse")
        handler = {
            "9001": self._sign_in, "1101": self._person_info, "2101": self._pre_settle, "2102": self._settle,
            "2103": self._revoke, "2601": self._reverse, "3201": self._reconcile,
        }[infno]
        outcome = handler(env, data, call_id, incoming.received)
        outcome.psn_no = outcome.psn_no or (person.psn_no if person else "")
        return outcome

    # -- the envelope ----------------------------------------------------------------------------------

    def _check_envelope(self, env: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        infno = env.get("infno")
        if not isinstance(infno, str) or infno not in INFNOS:
            raise Rejected(f"交易编号[{str(infno)[:8]}]不存在或未开通")
        code = _text(env, "fixmedins_code", "定点医药机构编号", max_len=12)
        if len(code) != 12:
            raise Rejected("定点医药机构编号(fixmedins_code)应为12位")
        _text(env, "fixmedins_name", "定点医药机构名称")
        problem = msgid_problem(env.get("msgid"), code)
        if problem:
            raise Rejected(problem)
        area = _text(env, "mdtrtarea_admvs", "就医地医保区划", max_len=6)
        if len(area) != 6 or not area.isdigit():
            raise Rejected("就医地医保区划(mdtrtarea_admvs)应为6位数字")
        insuplc = _text(env, "insuplc_admdvs", "参保地医保区划", required=False, max_len=6)
        if insuplc and (len(insuplc) != 6 or not insuplc.isdigit()):
            raise Rejected("参保地医保区划(insuplc_admdvs)应为6位数字")
        _text(env, "recer_sys_code", "接收方系统代码", max_len=10)
        _text(env, "infver", "接口版本号", max_len=6)
        if env.get("opter_type") not in ("1", "2", "3"):
            raise Rejected("经办人类别(opter_type)应为1、2或3")
        _text(env, "opter", "经办人", max_len=30)
        _text(env, "opter_name", "经办人姓名", max_len=50)
        parse_time(env.get("inf_time"), "交易时间(inf_time)")
        for key in ("sign_no", "signtype", "dev_no", "dev_safe_info", "cainfo"):
            _text(env, key, key, required=False, max_len=2000)
        payload = env.get("input")
        inner = "signIn" if infno == "9001" else "data"
        data = payload.get(inner) if isinstance(payload, dict) else None
        if not isinstance(data, dict):
            raise Rejected(f'交易输入(input)应为{{"{inner}": {{...}}}}')
        return infno, data

    def _check_sign_in(self, env: dict[str, Any]) -> None:
        sign_no = env.get("sign_no") or ""
        if not sign_no:
            raise Rejected(MSG_SIGN_NO_MISSING)
        found = self.store.sign_in(sign_no)
        if found is None or found[0] != env["fixmedins_code"]:
            raise Rejected(MSG_SIGN_IN_EXPIRED)
        if found[1]:
            raise Rejected(MSG_SIGN_IN_EXPIRED, "sign_in_expired")

    def _person_of(self, infno: str, data: dict[str, Any]) -> Person | None:
        """The call's person, for refusals by person (None when the call names none or an unknown one)."""
        if infno == "1101":
            for key in ("mdtrt_cert_no", "certno"):
                value = data.get(key)
                if isinstance(value, str) and value and (found := self.persons.find(value)):
                    return found
            return None
        psn_no = data.get("psn_no")
        return self.persons.find(psn_no) if isinstance(psn_no, str) and psn_no else None

    def _insured_person(self, env: dict[str, Any], data: dict[str, Any]) -> Person:
        """The person of a call that names psn_no; the envelope must carry their insured area."""
        psn_no = _text(data, "psn_no", "人员编号", max_len=30)
        person = self.persons.find(psn_no)
        if person is None or person.psn_no != psn_no:
            raise Rejected(f"人员编号{psn_no}不存在")
        if env.get("insuplc_admdvs") != person.insuplc_admdvs:
            raise Rejected("参保地医保区划(insuplc_admdvs)与人员参保地不符")
        return person

    # -- 9001 and 1101 -------------------------------------------------------------------------------

    def _sign_in(self, env: dict[str, Any], data: dict[str, Any], call_id: int, now: datetime) -> Outcome:
        opter_no = _text(data, "opter_no", "操作员编号", max_len=20)
        _text(data, "mac", "签到MAC地址", required=False)
        _text(data, "ip", "签到IP地址", required=False)
        sign_no = f"{stamp17(now)[:14]}{call_id:016d}"
        self.store.add_sign_in(sign_no, env["fixmedins_code"], opter_no, wire_time(now))
        return Outcome(0, output={"signinoutb": {"sign_time": wire_time(now), "sign_no": sign_no}}, committed=True)

    def _person_info(self, env: dict[str, Any], data: dict[str, Any], call_id: int, now: datetime) -> Outcome:
        cert_type = _text(data, "mdtrt_cert_type", "就诊凭证类型", max_len=3)
        cert_no = _text(data, "mdtrt_cert_no", "就诊凭证编号", max_len=50)
        certno = _text(data, "certno", "证件号码", required=False, max_len=50)
        if cert_type == "03":
            person = self.persons.find(cert_no)
            if person is None or person.card_number != cert_no.upper():
                raise Rejected("未查询到该社会保障卡的参保人员信息")
            card_sn = _text(data, "card_sn", "卡识别码", required=self.settings.require_card_sn, max_len=32)
            if card_sn and card_sn.upper() != person.card_sn:
                raise Rejected("卡识别码与社会保障卡号不符")
        elif cert_type == "02":
            person = self.persons.find(cert_no)
            if person is None or person.certno != cert_no.upper():
                raise Rejected("未查询到该身份证号的参保人员信息")
        elif cert_type == "01":
            # The e-voucher token cannot be checked here: the person is the one whose ID is in certno.
            person = self.persons.find(certno) if certno else None
            if person is None or person.certno != certno.upper():
                raise Rejected("电子凭证无效或已过期")
        else:
            raise Rejected("就诊凭证类型(mdtrt_cert_type)应为01、02或03")
        if certno and certno.upper() != person.certno:
            raise Rejected("证件号码与就诊凭证不符")
        name = _text(data, "psn_name", "人员姓名", required=False, max_len=50)
        if name and name != person.name:
            raise Rejected("人员姓名与就诊凭证不符")
        begntime = _text(data, "begntime", "开始时间", required=False, max_len=19)
        if begntime:
            parse_time(begntime, "开始时间(begntime)")
        status = self.status(person)
        at = begntime[:10] if begntime else wire_time(now)[:10]
        output = {
            "baseinfo": {
                "psn_no": person.psn_no, "psn_cert_type": "01", "certno": person.certno, "psn_name": person.name,
                "gend": person.gend, "naty": person.naty, "brdy": person.brdy, "age": _age(person.brdy, at),
            },
            "insuinfo": [{
                "balc": Yuan(self.balance(person)), "insutype": person.insutype, "psn_type": person.psn_type,
                "psn_insu_stas": _INSU_STAS[status], "psn_insu_date": "2010-01-01",
                "paus_insu_date": wire_time(now)[:10] if status == "frozen" else "", "cvlserv_flag": "0",
                "insuplc_admdvs": person.insuplc_admdvs, "emp_name": "",
            }],
            "idetinfo": [],
        }
        return Outcome(0, output=output, psn_no=person.psn_no)

    # -- 2101 / 2102 ----------------------------------------------------------------------------------

    def _quote(self, env: dict[str, Any], data: dict[str, Any]) -> tuple[Person, Split, list[dict[str, Any]], str]:
        person = self._insured_person(env, data)
        area = _text(data, "insuplc_admdvs", "参保地医保区划", required=False, max_len=6)
        if area and area != person.insuplc_admdvs:
            raise Rejected("参保地医保区划(insuplc_admdvs)与人员参保地不符")
        cert_type = _text(data, "mdtrt_cert_type", "就诊凭证类型", max_len=3)
        cert_no = _text(data, "mdtrt_cert_no", "就诊凭证编号", max_len=50)
        if (cert_type == "03" and cert_no.upper() != person.card_number) or (
                cert_type == "02" and cert_no.upper() != person.certno) or cert_type not in ("01", "02", "03"):
            raise Rejected("就诊凭证与人员编号不符")
        insutype = _text(data, "insutype", "险种类型", max_len=6)
        if insutype != person.insutype:
            raise Rejected(f"险种类型{insutype}与人员参保信息不符")
        status = self.status(person)
        if status == "not_insured":
            raise Rejected(MSG_NOT_INSURED)
        if status == "frozen":
            raise Rejected(MSG_FROZEN)
        begntime = parse_time(data.get("begntime"), "开始时间(begntime)")
        total = fen_from_wire(data.get("medfee_sumamt"), "医疗费总额(medfee_sumamt)")
        if total <= 0:
            raise Rejected("医疗费总额(medfee_sumamt)应大于0")
        use_acct = data.get("acct_used_flag")
        if use_acct not in ("0", "1"):
            raise Rejected("个人账户使用标志(acct_used_flag)应为0或1")
        _text(data, "psn_setlway", "个人结算方式", max_len=6)
        details = self._details(data.get("drugdetail"))
        if sum(d["det_item_fee_fen"] for d in details) != total:
            raise Rejected("医疗费总额(medfee_sumamt)与费用明细合计不符")
        fund_pct, acct_pct = self.settings.split.get(insutype, [0, 0])
        left = self.settings.deductible_fen - self.store.deductible_used(person.key, begntime[:4])
        parts = split(total, fund_pct=fund_pct, acct_pct=acct_pct, use_acct=use_acct == "1",
                      balance=self.balance(person), deductible_left=left)
        return person, parts, details, begntime

    def _details(self, raw: Any) -> list[dict[str, Any]]:
        if not isinstance(raw, list) or not raw or len(raw) > 500:
            raise Rejected("费用明细(drugdetail)应为1至500条")
        details: list[dict[str, Any]] = []
        seen: set[str] = set()
        for line in raw:
            if not isinstance(line, dict):
                raise Rejected("费用明细(drugdetail)格式错误")
            sn = _text(line, "feedetl_sn", "费用明细流水号", max_len=30)
            if sn in seen:
                raise Rejected(f"费用明细流水号{sn}重复")
            seen.add(sn)
            cnt = decimal_from_wire(line.get("cnt"), f"明细{sn}数量(cnt)")
            pric = decimal_from_wire(line.get("pric"), f"明细{sn}单价(pric)")
            fee = fen_from_wire(line.get("det_item_fee_sumamt"), f"明细{sn}金额(det_item_fee_sumamt)")
            if cnt <= 0 or pric < 0:
                raise Rejected(f"明细{sn}数量应大于0、单价不能为负")
            if int((cnt * pric).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) * 100) != fee:
                raise Rejected(f"明细{sn}金额与数量×单价不符")
            flag = line.get("sel_retn_flag", "0")
            if flag not in ("0", "1"):
                raise Rejected(f"明细{sn}销售/退货标志(sel_retn_flag)应为0或1")
            details.append({
                "feedetl_sn": sn,
                "med_list_codg": _text(line, "med_list_codg", "医疗目录编码", max_len=50),
                "fixmedins_hilist_id": _text(line, "fixmedins_hilist_id", "机构目录编码", required=False, max_len=30),
                "fixmedins_hilist_name": _text(line, "fixmedins_hilist_name", "机构目录名称", required=False),
                "cnt": str(cnt), "pric": str(pric), "det_item_fee_fen": fee,
                "sel_retn_time": parse_time(line.get("sel_retn_time"), f"明细{sn}销售/退货时间(sel_retn_time)"),
                "sel_retn_flag": flag,
            })
        return details

    def _setlinfo(self, person: Person, parts: Split, setl_id: str, mdtrt_id: str, balc: int, now: datetime,
                  msgid: str) -> dict[str, Any]:
        fund_wire = parts.fund + parts.acct if self.settings.fund_includes_acct else parts.fund
        return {
            "setl_id": setl_id, "mdtrt_id": mdtrt_id, "psn_no": person.psn_no, "psn_name": person.name,
            "psn_cert_type": "01", "certno": person.certno, "insutype": person.insutype,
            "psn_type": person.psn_type, "setl_time": wire_time(now), "medins_setl_id": msgid,
            "clr_optins": person.insuplc_admdvs,
            "medfee_sumamt": Yuan(parts.total), "act_pay_dedc": Yuan(parts.deductible),
            "hifp_pay": Yuan(parts.fund), "fund_pay_sumamt": Yuan(fund_wire), "acct_pay": Yuan(parts.acct),
            "psn_part_amt": Yuan(parts.acct + parts.cash), "psn_cash_pay": Yuan(parts.cash), "balc": Yuan(balc),
        }

    def _pre_settle(self, env: dict[str, Any], data: dict[str, Any], call_id: int, now: datetime) -> Outcome:
        person, parts, _, _ = self._quote(env, data)
        balc = self.balance(person) - parts.acct
        return Outcome(0, output={"setlinfo": self._setlinfo(person, parts, "", "", balc, now, env["msgid"])},
                       psn_no=person.psn_no)

    def _settle(self, env: dict[str, Any], data: dict[str, Any], call_id: int, now: datetime) -> Outcome:
        person, parts, details, begntime = self._quote(env, data)
        setl_id, mdtrt_id = f"30{call_id:010d}", f"31{call_id:010d}"
        balc = self.balance(person) - parts.acct
        self.store.add_settlement({
            "setl_id": setl_id, "mdtrt_id": mdtrt_id, "call_id": call_id, "msgid": env["msgid"],
            "fixmedins_code": env["fixmedins_code"], "psn_no": person.psn_no, "person": person.key,
            "insutype": person.insutype, "clr_optins": person.insuplc_admdvs, "begntime": begntime,
            "setl_time": wire_time(now), "sale_id": self.sale_key(data), "medfee_fen": parts.total,
            "fund_fen": parts.fund, "acct_fen": parts.acct, "cash_fen": parts.cash, "ded_fen": parts.deductible,
            "balc_fen": balc, "details": details,
        })
        setlinfo = self._setlinfo(person, parts, setl_id, mdtrt_id, balc, now, env["msgid"])
        setldetail = [{"fund_pay_type": "310100" if person.insutype == "310" else "390100",
                       "fund_payamt": Yuan(parts.fund)}] if parts.fund else []
        return Outcome(0, output={"setlinfo": setlinfo, "setldetail": setldetail}, committed=True,
                       psn_no=person.psn_no)

    # -- 2103 and 2601 --------------------------------------------------------------------------------

    def _revoke(self, env: dict[str, Any], data: dict[str, Any], call_id: int, now: datetime) -> Outcome:
        setl_id = _text(data, "setl_id", "结算ID", max_len=30)
        mdtrt_id = _text(data, "mdtrt_id", "就诊ID", max_len=30)
        person = self._insured_person(env, data)
        original = self.store.settlement(setl_id)
        if original is None or original["fixmedins_code"] != env["fixmedins_code"]:
            raise Rejected(MSG_SETTLEMENT_NOT_FOUND)
        if original["mdtrt_id"] != mdtrt_id or original["psn_no"] != person.psn_no:
            raise Rejected("就诊ID或人员编号与原结算不符")
        if original["reversed_by"]:
            raise Rejected(MSG_SETTLEMENT_REVERSED)
        if original["revoked_by"]:
            raise Rejected(MSG_ALREADY_REVOKED)
        revoke_id = f"32{call_id:010d}"
        self.store.add_revoke({
            "setl_id": revoke_id, "original_setl_id": setl_id, "call_id": call_id, "msgid": env["msgid"],
            "fixmedins_code": env["fixmedins_code"], "psn_no": person.psn_no, "revoked_at": wire_time(now),
        })
        parts = Split(-original["medfee_fen"], -original["ded_fen"], -original["fund_fen"], -original["acct_fen"],
                      -original["cash_fen"])
        setlinfo = self._setlinfo(person, parts, revoke_id, mdtrt_id, self.balance(person), now, env["msgid"])
        return Outcome(0, output={"setlinfo": setlinfo}, committed=True, psn_no=person.psn_no)

    def _reverse(self, env: dict[str, Any], data: dict[str, Any], call_id: int, now: datetime) -> Outcome:
        omsgid = _text(data, "omsgid", "原发送方报文ID", max_len=30)
        oinfno = _text(data, "oinfno", "原交易编号", max_len=4)
        person = self._insured_person(env, data)
        if oinfno not in self.settings.reversible_infnos:
            raise Rejected(f"交易{oinfno}不支持冲正")
        original = self.store.first_call(omsgid)
        if original is None or original["fixmedins_code"] != env["fixmedins_code"]:
            raise Rejected(MSG_NOTHING_TO_REVERSE)
        if original["infno"] != oinfno:
            raise Rejected("原交易编号(oinfno)与原报文不符")
        if original["psn_no"] and original["psn_no"] != person.psn_no:
            raise Rejected("人员编号与原交易不符")
        if original["reversed_by"]:
            raise Rejected(MSG_ALREADY_REVERSED)
        if not original["committed"]:
            raise Rejected(MSG_NOTHING_TO_REVERSE)
        if oinfno == "2102":
            settlement = self.store.settlement_by_msgid(omsgid)
            assert settlement is not None
            if settlement["revoked_by"]:
                raise Rejected("原结算已撤销，请先冲正撤销交易")
            self.store.reverse_settlement(settlement["setl_id"], env["msgid"])
        elif oinfno == "2103":
            revoke = self.store.revoke_by_msgid(omsgid)
            assert revoke is not None
            self.store.reverse_revoke(revoke["setl_id"], env["msgid"])
        self.store.mark_call_reversed(original["id"], env["msgid"])
        return Outcome(0, output={}, committed=True, psn_no=person.psn_no)

    # -- 3201 ----------------------------------------------------------------------------------------

    def _reconcile(self, env: dict[str, Any], data: dict[str, Any], call_id: int, now: datetime) -> Outcome:
        insutype = _text(data, "insutype", "险种", max_len=6)
        _text(data, "clr_type", "清算类别", max_len=6)
        optins = _text(data, "setl_optins", "结算经办机构", max_len=6)
        begin = parse_date(data.get("stmt_begndate"), "对账开始日期(stmt_begndate)")
        end = parse_date(data.get("stmt_enddate"), "对账结束日期(stmt_enddate)")
        if begin > end:
            raise Rejected("对账开始日期晚于结束日期")
        theirs_med = fen_from_wire(data.get("medfee_sumamt"), "医疗费总额(medfee_sumamt)", signed=True)
        theirs_fund = fen_from_wire(data.get("fund_pay_sumamt"), "基金支付总额(fund_pay_sumamt)", signed=True)
        theirs_acct = fen_from_wire(data.get("acct_pay"), "个人账户支付金额(acct_pay)", signed=True)
        raw_cnt = data.get("fixmedins_setl_cnt")
        if isinstance(raw_cnt, str) and raw_cnt.isdigit():
            raw_cnt = int(raw_cnt)
        if not isinstance(raw_cnt, int) or isinstance(raw_cnt, bool) or raw_cnt < 0:
            raise Rejected("定点医药机构结算笔数(fixmedins_setl_cnt)格式错误")
        count, med, fund, acct = self.store.totals(
            env["fixmedins_code"], insutype, begin, end, by=self.settings.stmt_date_by,
            setl_optins=optins if self.settings.stmt_by_setl_optins else None)
        if self.settings.fund_includes_acct:
            fund += acct
        rows = (
            ("结算笔数", str(raw_cnt), str(count)),
            ("医疗费总额", yuan_text(theirs_med), yuan_text(med)),
            ("基金支付总额", yuan_text(theirs_fund), yuan_text(fund)),
            ("个人账户支付金额", yuan_text(theirs_acct), yuan_text(acct)),
        )
        differences = [f"{label}：机构{mine}，中心{ours}" for label, mine, ours in rows if mine != ours]
        stmtinfo = {
            "setl_optins": optins,
            "stmt_rslt": "1" if differences else "0",
            "stmt_rslt_dscr": "对账不平：" + "；".join(differences) if differences else "对账平衡",
        }
        return Outcome(0, output={"stmtinfo": stmtinfo})


def _age(brdy: str, on: str) -> int:
    if len(brdy) != 10:
        return 0
    years = int(on[:4]) - int(brdy[:4])
    return years - (1 if on[5:10] < brdy[5:10] else 0)


def _str_or_none(value: Any) -> str | None:
    return value[:100] if isinstance(value, str) else None


def _psn_no_of(env: dict[str, Any]) -> str:
    payload = env.get("input")
    data = payload.get("data") if isinstance(payload, dict) else None
    value = data.get("psn_no") if isinstance(data, dict) else None
    return value[:30] if isinstance(value, str) else ""


def _request_text(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")
