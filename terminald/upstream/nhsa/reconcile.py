"""Daily reconciliation with the national platform: 3201 (对总账) per insurance type.

    reconcile_day(client, profile, date, local, sign_in=session.ensure_signed_in) -> report

The platform reconciles one business day per insurance type (`insutype`), clearing type
(`clr_type`) and clearing agency (`setl_optins`). `local_groups` reads the spool's file
(read-only, the call log's file) and sums the settled records of `date` per group; the
insurance type and the insured area come from each settlement's stored answer
(`outcome["nhsa"]["insutype"]`, `["clr_optins"]` or `["insuplc_admdvs"]`), else from the
profile's defaults. The day is the terminal's (`terminal.timezone`), the zone 2102's `begntime`
was sent in, whatever offset the POS gave the business time. Every type the profile lists in
`reconcile_insutypes` is reconciled even with nothing local, so settlements central holds and
this spool does not still show.

How a revoke counts is the profile's `reconcile_revokes`:

    in_force   a sale of the day counts unless a settled revoke cancels it (whatever the
               revoke's date); revokes are not counted (the platform's "settlements in force")
    net        every settled record of the day counts once, a revoke with its negative
               amounts on its own day (the figures of protocol v1's reconciliation)

Each group is one 3201: count = `fixmedins_setl_cnt`, `medfee_sumamt`, `fund_pay_sumamt`
(with or without the account, `Profile.fund_pay_sumamt`), `acct_pay`, in 2-decimal yuan;
`stmt_begndate` = `stmt_enddate` = the day. The report has the shape of protocol v1's
(reports.py; docs/api.md, "Reconciliation") plus `stmt_rslt`, `stmt_rslt_dscr` and one row per
group (`insutypes`). A -1 answer is reported as refused with its (masked) message; an answer
that is not definite is an `error`. 3201 changes nothing at central: nothing is reversed, the
day can simply be reconciled again. A failed sign-in sends no 3201, and a timeout or refused
connection sends no further one (the report's `error`, never a raise): a dead gateway costs one
`upstream.timeout_s` or two, not one per group.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date as _date
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from spool.errors import InvalidRequest
from spool.store import connect
from terminald.upload.errors import UpstreamError
from terminald.upstream.nhsa.amounts import to_wire
from terminald.upstream.nhsa.client import NhsaClient
from terminald.upstream.nhsa.envelope import Ok
from terminald.upstream.nhsa.errors import NhsaError, UnknownOutcome
from terminald.upstream.nhsa.profiles import Profile
from terminald.upstream.nhsa.redact import mask_text
from terminald.upstream.reconcile import WHY

__all__ = ["RECONCILE", "Group", "local_groups", "reconcile_day"]

RECONCILE = "3201"
_NAMED_MAX = 1000


@dataclass
class Group:
    """The local side of one 3201: settled records of the day of one insurance type and
    clearing agency, in fen (`fund_fen`: the funds' share, without the personal account)."""

    insutype: str
    setl_optins: str
    count: int = 0
    medfee_fen: int = 0
    fund_fen: int = 0
    acct_fen: int = 0
    # Settled records counted here that a pending revoke may have cancelled at central.
    revoke_pending: list[dict[str, Any]] = field(default_factory=list)

    def add(self, medfee: int, fund: int, acct: int, count: int = 1) -> None:
        self.count += count
        self.medfee_fen += medfee
        self.fund_fen += fund
        self.acct_fen += acct


def _json(text: object) -> dict[str, Any]:
    if not isinstance(text, str):
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _nhsa_part(outcome: dict[str, Any]) -> dict[str, Any]:
    part = outcome.get("nhsa")
    return part if isinstance(part, dict) else {}


def _text(part: dict[str, Any], *keys: str) -> str:
    for key in keys:
        value = part.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _days_around(date: str) -> tuple[str, str, str]:
    day = _date.fromisoformat(date)
    return ((day - timedelta(days=1)).isoformat(), date, (day + timedelta(days=1)).isoformat())


def _on_day(business_time: object, date: str, tz: tzinfo) -> bool:
    """Whether `business_time` falls on `date` in the terminal's zone `tz`: the zone 2102's
    begntime is sent in, so the day the platform books the sale on."""
    if not isinstance(business_time, str):
        return False
    try:
        moment = datetime.fromisoformat(business_time.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    if moment.tzinfo is None:
        return business_time[:10] == date
    return moment.astimezone(tz).date().isoformat() == date


def local_groups(path: str | Path, date: str, profile: Profile, *, mdtrtarea_admvs: str,
                 tz: tzinfo | str = "Asia/Shanghai") -> list[Group]:
    """The settled records of business day `date` in the spool file `path` (read-only), summed
    per (insutype, setl_optins) as the profile reconciles them; one group for each of the
    profile's `reconcile_insutypes` at least. The day is the terminal's (`tz`,
    `terminal.timezone`), as 2102's begntime was sent: a record's stored business_date is the
    date in the POS's own offset, which may be the day before or after. Runs SQLite: call it in
    a thread."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    days = _days_around(date)
    default_type = profile.reconcile_insutypes[0]
    per_area = profile.reconcile_setl_optins == "insuplc"
    groups: dict[tuple[str, str], Group] = {
        (t, mdtrtarea_admvs): Group(t, mdtrtarea_admvs) for t in profile.reconcile_insutypes
    }

    def group_of(*parts: dict[str, Any]) -> Group:
        insutype = next((t for t in (_text(p, "insutype") for p in parts) if t), default_type)
        optins = mdtrtarea_admvs
        if per_area:
            optins = next((a for a in (_text(p, "clr_optins", "insuplc_admdvs") for p in parts) if a),
                          mdtrtarea_admvs)
        return groups.setdefault((insutype, optins), Group(insutype, optins))

    conn = connect(path, readonly=True)
    try:
        conn.execute("BEGIN")
        try:
            if profile.reconcile_revokes == "in_force":
                rows = conn.execute(
                    "SELECT s.seq, s.record_id, s.kind, s.status, s.total_fen, s.outcome,"
                    " (SELECT r.record_id FROM records r WHERE r.original_seq = s.seq AND r.status = 'pending'"
                    "  ORDER BY r.seq LIMIT 1), s.business_time"
                    " FROM records s WHERE s.business_date IN (?, ?, ?) AND s.status = 'settled'"
                    " AND s.kind = 'settlement'"
                    " AND NOT EXISTS (SELECT 1 FROM records r WHERE r.original_seq = s.seq AND r.status = 'settled')"
                    " ORDER BY s.seq",
                    days,
                ).fetchall()
                for seq, record_id, kind, status, total, outcome_text, pending_revoke, when in rows:
                    if not _on_day(when, date, zone):
                        continue
                    outcome = _json(outcome_text)
                    group = group_of(_nhsa_part(outcome))
                    group.add(_int(total), _int(outcome.get("fund_paid_fen")), _int(outcome.get("account_paid_fen")))
                    if pending_revoke is not None and len(group.revoke_pending) < _NAMED_MAX:
                        group.revoke_pending.append({
                            "record_id": record_id, "seq": seq, "kind": kind, "status": status,
                            "total_fen": total, "why": "revoke_pending", "original_id": None,
                            "revoked_by": pending_revoke,
                        })
            else:
                rows = conn.execute(
                    "SELECT r.total_fen, r.outcome, o.outcome, r.business_time FROM records r"
                    " LEFT JOIN records o ON o.seq = r.original_seq"
                    " WHERE r.business_date IN (?, ?, ?) AND r.status = 'settled' ORDER BY r.seq",
                    days,
                ).fetchall()
                for total, outcome_text, original_text, when in rows:
                    if not _on_day(when, date, zone):
                        continue
                    outcome = _json(outcome_text)
                    group = group_of(_nhsa_part(outcome), _nhsa_part(_json(original_text)))
                    group.add(_int(total), _int(outcome.get("fund_paid_fen")), _int(outcome.get("account_paid_fen")))
        finally:
            conn.execute("COMMIT")
    finally:
        conn.close()
    return sorted(groups.values(), key=lambda g: (g.insutype, g.setl_optins))


def _input(profile: Profile, date: str, group: Group) -> dict[str, Any]:
    def wire(fen: int) -> Any:
        return to_wire(fen, profile.amount_as)

    return {
        "insutype": group.insutype,
        "clr_type": profile.reconcile_clr_type,
        "setl_optins": group.setl_optins,
        "stmt_begndate": date,
        "stmt_enddate": date,
        "medfee_sumamt": wire(group.medfee_fen),
        "fund_pay_sumamt": wire(profile.fund_pay_sumamt(group.fund_fen, group.acct_fen)),
        "acct_pay": wire(group.acct_fen),
        "fixmedins_setl_cnt": group.count,
    }


def _figures(group: Group) -> dict[str, int]:
    return {"count": group.count, "total_fen": group.medfee_fen, "fund_paid_fen": group.fund_fen,
            "account_paid_fen": group.acct_fen}


def _row(profile: Profile, date: str, group: Group) -> tuple[dict[str, Any], dict[str, Any]]:
    """The 3201 input of a group and its report row, not answered yet."""
    data = _input(profile, date, group)
    row: dict[str, Any] = {
        "insutype": group.insutype, "clr_type": data["clr_type"], "setl_optins": group.setl_optins,
        "local": _figures(group),
        "sent": {k: str(v) if k != "fixmedins_setl_cnt" else v for k, v in data.items()
                 if k in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "fixmedins_setl_cnt")},
        "matches": None, "stmt_rslt": None, "stmt_rslt_dscr": None,
    }
    return data, row


# No definite answer because the gateway cannot be reached or does not answer in time: the other
# groups' 3201s would only wait as long, so they are not sent.
_GONE = ("timeout", "connect_failed")


async def _one(client: NhsaClient, profile: Profile, date: str, group: Group) -> tuple[dict[str, Any], bool]:
    """One 3201 and its row: `matches` True/False, or None with `refused` or `error`; and whether
    the gateway is gone (`_GONE`)."""
    data, row = _row(profile, date, group)
    try:
        answer = await client.call(RECONCILE, data)
    except UnknownOutcome as exc:
        row["error"] = (f"no definite answer to 3201 ({exc.reason}); 3201 changes nothing at central, "
                        "so nothing is reversed: reconcile again")
        return row, exc.reason in _GONE
    except NhsaError as exc:
        row["error"] = f"3201 not sent: {exc.detail}"
        return row, False
    if not isinstance(answer, Ok):
        row["refused"] = answer.err_msg  # masked by the envelope's parser
        row["refused_kind"] = answer.kind
        return row, False
    info = answer.output.get("stmtinfo")
    stmt_rslt = info.get("stmt_rslt") if isinstance(info, dict) else None
    if not isinstance(stmt_rslt, str | int) or isinstance(stmt_rslt, bool) or str(stmt_rslt) == "":
        row["error"] = "3201 answered without stmtinfo.stmt_rslt: central's verdict is not known"
        return row, False
    row["stmt_rslt"] = str(stmt_rslt)
    row["stmt_rslt_dscr"] = mask_text(info.get("stmt_rslt_dscr")) if isinstance(info, dict) else ""
    row["matches"] = profile.is_match(stmt_rslt)
    return row, False


async def _ask(client: NhsaClient, profile: Profile, date: str, groups: list[Group]) -> list[dict[str, Any]]:
    """A 3201 per group, one after the other; none more once the gateway is gone (each would wait
    upstream.timeout_s for nothing)."""
    rows: list[dict[str, Any]] = []
    gone: dict[str, Any] | None = None
    for group in groups:
        if gone is not None:
            rows.append({**_row(profile, date, group)[1],
                         "error": f"3201 not sent: the gateway gave no answer to the one of insutype "
                                  f"{gone['insutype']} ({gone['error'].split(';')[0]}): reconcile again"})
            continue
        row, unreachable = await _one(client, profile, date, group)
        rows.append(row)
        if unreachable:
            gone = row
    return rows


def _label(row: dict[str, Any]) -> str:
    return f"3201 insutype {row['insutype']} clr_type {row['clr_type']} setl_optins {row['setl_optins']}"


def _sent_text(row: dict[str, Any]) -> str:
    s = row["sent"]
    return (f"count {s['fixmedins_setl_cnt']}, medfee {s['medfee_sumamt']}, fund {s['fund_pay_sumamt']}, "
            f"account {s['acct_pay']}")


def _named(item: dict[str, Any]) -> dict[str, Any]:
    why = str(item.get("why", ""))
    return {
        "record_id": item.get("record_id"), "seq": item.get("seq"), "kind": item.get("kind"),
        "status": item.get("status"), "total_fen": item.get("total_fen"), "why": why,
        "original_id": item.get("original_id"), "revoked_by": item.get("revoked_by"),
        "detail": item.get("detail") or WHY.get(why, why),
    }


def _check_date(date: str) -> str:
    try:
        if not isinstance(date, str) or len(date) != 10:
            raise ValueError(date)
        return _date.fromisoformat(date).isoformat()
    except ValueError as exc:
        raise InvalidRequest(f"business_date must be YYYY-MM-DD, got {date!r}") from exc


async def reconcile_day(client: NhsaClient, profile: Profile, date: str, local: dict[str, Any], *,
                        sign_in: Callable[[], Awaitable[None]] | None = None) -> dict[str, Any]:
    """3201 for business day `date`, one per insurance type (and clearing agency), with the
    spool's totals; the report of reports.py's shape plus `stmt_rslt`, `stmt_rslt_dscr` and
    `insutypes` (one row per 3201).

    ``{date, local{count,total_fen,fund_paid_fen,account_paid_fen,by_status}, central{…}|None,
    matches, differences, stmt_rslt, stmt_rslt_dscr, insutypes[...][, note][, error]}``.
    `local` is reports.py's local side of the day: its `by_status` is shown and its named
    records (`uncertain`, `uncertain_count`) explain a difference; the figures sent are read
    from the spool per insurance type (`local_groups`).

    `sign_in`: 9001 before the first 3201 (the adapter's session). When it fails (the platform
    down, slow past upstream.timeout_s, refusing the sign-in) no 3201 is sent: every row and the
    report carry that `error`, `central` is None."""
    date = _check_date(date)
    groups = await asyncio.to_thread(
        local_groups, client.calllog.path, date, profile, mdtrtarea_admvs=client.institution.mdtrtarea_admvs,
        tz=client.calllog.tz,
    )
    unasked = await _sign_in(sign_in)
    if unasked is not None:
        rows = [{**_row(profile, date, group)[1], "error": unasked} for group in groups]
    else:
        rows = await _ask(client, profile, date, groups)
    by_status = dict(local.get("by_status") or {})
    local_part = {
        "count": sum(g.count for g in groups), "total_fen": sum(g.medfee_fen for g in groups),
        "fund_paid_fen": sum(g.fund_fen for g in groups), "account_paid_fen": sum(g.acct_fen for g in groups),
        "by_status": by_status,
    }
    answered = all(r["matches"] is not None for r in rows)
    matched = answered and all(r["matches"] for r in rows)
    central_part: dict[str, Any] | None = None
    if answered:
        # 3201 answers a verdict, not central's figures: they are known only where it matches.
        known = {k: (local_part[k] if matched else None) for k in ("count", "total_fen", "fund_paid_fen",
                                                                    "account_paid_fen")}
        verdicts = {"match": sum(1 for r in rows if r["matches"]), "mismatch": sum(1 for r in rows if not r["matches"])}
        central_part = {**known, "by_status": verdicts}
    differences: list[dict[str, Any]] = [
        {"figure": _label(r), "local": _sent_text(r), "central": r["stmt_rslt_dscr"] or f"stmt_rslt {r['stmt_rslt']}"}
        for r in rows if r["matches"] is False
    ]
    first_off = next((r for r in rows if r["matches"] is False), None)
    shown = first_off or next((r for r in rows if r["stmt_rslt"] is not None), None)
    result: dict[str, Any] = {
        "date": date,
        "local": local_part,
        "central": central_part,
        "matches": matched,
        "differences": differences,
        "stmt_rslt": shown["stmt_rslt"] if shown else None,
        "stmt_rslt_dscr": ("；".join(
            f"{r['insutype']}: {r['stmt_rslt_dscr']}" for r in rows if r["stmt_rslt"] is not None
        ) or None) if len(rows) > 1 else (shown["stmt_rslt_dscr"] if shown else None),
        "insutypes": rows,
    }
    if differences:
        named = [_named(item) for item in local.get("uncertain") or ()]
        named += [_named(item) for g in groups for item in g.revoke_pending]
        differences += named[:_NAMED_MAX]
        total = int(local.get("uncertain_count") or 0) + sum(len(g.revoke_pending) for g in groups)
        result["note"] = _note(total, min(len(named), _NAMED_MAX))
    elif matched and by_status.get("pending"):
        result["note"] = (
            f"matches so far: {by_status['pending']} record(s) of this date are still pending here (not counted "
            "on either side until central settles them); reconcile again once they are uploaded"
        )
    problems = [f"{_label(r)}: refused by central: {r['refused']}" for r in rows if "refused" in r]
    problems += [f"{_label(r)}: {r['error']}" for r in rows if "error" in r]
    if unasked is not None:
        result["error"] = unasked
    elif problems:
        result["error"] = "; ".join(problems)
    return result


async def _sign_in(sign_in: Callable[[], Awaitable[None]] | None) -> str | None:
    """None when signed in (or nothing to do), else why the platform could not be asked."""
    if sign_in is None:
        return None
    try:
        await sign_in()
    except (UpstreamError, NhsaError) as exc:
        return (f"the platform could not be asked: 9001 sign-in failed ({exc.detail}); no 3201 was sent: "
                "reconcile again once it answers")
    return None


def _note(count: int, listed: int) -> str:
    if count == 0:
        return (
            "3201 answers a verdict per insurance type, not central's records, and no local record of this date "
            "is pending or lacks its settlement: central's books hold settlements or amounts this spool does not "
            "(records pruned here past retention are no longer counted)"
        )
    more = f" (the first {listed} of {count})" if listed < count else ""
    return (
        "3201 answers a verdict per insurance type, not central's records: the records named are the local "
        f"records of this date whose money central may count otherwise{more}, not a record-by-record comparison"
    )
