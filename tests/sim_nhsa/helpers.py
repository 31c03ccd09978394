"""A hand-rolled caller of the platform simulator: builds envelopes, posts them with httpx.

Deliberately not terminald's adapter: these tests pin what the simulator does, so the adapter's
own tests (written against the simulator later) cannot hide a simulator bug behind an adapter one.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx

from terminald.sim.nhsa import NhsaSim
from terminald.sim.nhsa.persons import Person
from terminald.sim.nhsa.wire import CST

FIXMEDINS = "P11010500001"
AREA = "110105"
_counter = itertools.count(1)  # shared: two callers in one second never build the same msgid


def new_msgid(fixmedins_code: str = FIXMEDINS) -> str:
    return f"{fixmedins_code}{datetime.now(CST):%Y%m%d%H%M%S}{next(_counter) % 10000:04d}"


def decimal_json(response: httpx.Response) -> dict[str, Any]:
    """The answer, amounts as Decimal (never a float)."""
    body: dict[str, Any] = json.loads(response.content, parse_float=Decimal)
    return body


class Caller:
    """One institution talking to the simulator (sign-in kept, like a real client)."""

    def __init__(self, sim: NhsaSim, fixmedins_code: str = FIXMEDINS, timeout: float = 10.0) -> None:
        self.sim = sim
        self.fixmedins_code = fixmedins_code
        self.http = httpx.Client(base_url=sim.url, timeout=timeout)
        self.sign_no = ""

    def close(self) -> None:
        self.http.close()

    def envelope(self, infno: str, data: dict[str, Any], *, insuplc: str = "", msgid: str | None = None,
                 **overrides: Any) -> dict[str, Any]:
        env: dict[str, Any] = {
            "infno": infno, "msgid": msgid or new_msgid(self.fixmedins_code), "mdtrtarea_admvs": AREA,
            "insuplc_admdvs": insuplc, "recer_sys_code": "TERMD", "dev_no": "", "dev_safe_info": "", "cainfo": "",
            "signtype": "", "infver": "V1.0", "opter_type": "2", "opter": "T0001", "opter_name": "柜台一",
            "inf_time": f"{datetime.now(CST):%Y-%m-%d %H:%M:%S}", "fixmedins_code": self.fixmedins_code,
            "fixmedins_name": "测试大药房", "sign_no": self.sign_no,
            "input": {"signIn": data} if infno == "9001" else {"data": data},
        }
        env.update(overrides)
        return env

    def send(self, env: dict[str, Any]) -> httpx.Response:
        return self.http.post("/fsi/api/rsfComIfsService/callService", json=env)

    def call(self, infno: str, data: dict[str, Any], **kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the envelope sent, the answer) of a call that must get an envelope back."""
        env = self.envelope(infno, data, **kw)
        response = self.send(env)
        assert response.status_code == 200, response.text
        return env, decimal_json(response)

    def sign_in(self) -> str:
        _, answer = self.call("9001", {"opter_no": "T0001", "mac": "00:11:22:33:44:55", "ip": "10.0.0.8"})
        assert answer["infcode"] == 0, answer
        self.sign_no = answer["output"]["signinoutb"]["sign_no"]
        return self.sign_no

    def person_info(self, person: Person, **data: Any) -> dict[str, Any]:
        body = {"mdtrt_cert_type": "03", "mdtrt_cert_no": person.card_number, "card_sn": person.card_sn,
                "begntime": "", "psn_cert_type": "01", "certno": "", "psn_name": ""}
        if not person.card_number:
            body.update(mdtrt_cert_type="02", mdtrt_cert_no=person.certno, card_sn="")
        body.update(data)
        return self.call("1101", body)[1]

    def settle(self, person: Person, lines: list[tuple[str, str]], *, sale_id: str,
               business_time: str = "2026-11-23 10:15:00", infno: str = "2102", acct_used_flag: str = "1",
               **extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        data = sale_data(person, lines, sale_id=sale_id, business_time=business_time,
                         acct_used_flag=acct_used_flag, **extra)
        return self.call(infno, data, insuplc=person.insuplc_admdvs)

    def revoke(self, person: Person, setlinfo: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        data = {"setl_id": setlinfo["setl_id"], "mdtrt_id": setlinfo["mdtrt_id"], "psn_no": person.psn_no}
        return self.call("2103", data, insuplc=person.insuplc_admdvs)

    def reverse(self, person: Person, omsgid: str, oinfno: str = "2102") -> dict[str, Any]:
        data = {"psn_no": person.psn_no, "omsgid": omsgid, "oinfno": oinfno}
        return self.call("2601", data, insuplc=person.insuplc_admdvs)[1]


def sale_data(person: Person, lines: list[tuple[str, str]], *, sale_id: str, business_time: str,
              acct_used_flag: str = "1", **extra: Any) -> dict[str, Any]:
    """2102 data for lines of (count, unit price); feedetl_sn: the sale id, then sale_id.2, .3 …"""
    details = []
    total = Decimal(0)
    for n, (cnt, pric) in enumerate(lines, start=1):
        fee = (Decimal(cnt) * Decimal(pric)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        total += fee
        details.append({
            "feedetl_sn": sale_id if n == 1 else f"{sale_id}.{n}", "med_list_codg": f"XA01AAA000{n}",
            "fixmedins_hilist_id": f"H{n:04d}", "fixmedins_hilist_name": f"药品{n}", "cnt": cnt, "pric": pric,
            "det_item_fee_sumamt": str(fee), "sel_retn_time": business_time, "sel_retn_flag": "0",
        })
    data = {
        "psn_no": person.psn_no, "mdtrt_cert_type": "03" if person.card_number else "02",
        "mdtrt_cert_no": person.card_number or person.certno, "begntime": business_time,
        "medfee_sumamt": str(total), "psn_setlway": "01", "insutype": person.insutype,
        "acct_used_flag": acct_used_flag, "insuplc_admdvs": person.insuplc_admdvs, "drugdetail": details,
    }
    data.update(extra)
    return data
