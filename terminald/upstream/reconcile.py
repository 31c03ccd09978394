"""The daily reconciliation's report, whatever the protocol: local totals against central's.

terminald/reports.py reads the spool's totals of a business date (`local`, see `local_totals`)
and hands them to the adapter's `reconcile`, which asks central for its figures and builds the
report here with `compare`. The report (docs/api.md, "Reconciliation"):

    {date, local{count,total_fen,fund_paid_fen,account_paid_fen,by_status}, central{…}|None,
     matches, differences[, note][, error]}

`matches`: central answered and the four COMPARED figures are equal. `differences` (empty when
they match, or when central could not be asked): one `{"figure", "local", "central"}` per figure
that differs, then the local records of that date that can explain it (`{"record_id", "seq",
"kind", "status", "total_fen", "why", "original_id", "revoked_by", "detail"}`, why ∈ pending,
outcome_missing, unknown_status). What those records are depends on what the protocol can tell:
the adapter says it in `explain(uncertain_count, listed)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from spool import Totals

__all__ = ["COMPARED", "WHY", "Explain", "compare", "local_totals"]

# What reconciliation compares: the figures of central's totals, by_status aside.
COMPARED = ("count", "total_fen", "fund_paid_fen", "account_paid_fen")

# (uncertain_count, listed) -> the note under the differences: what the named records are.
Explain = Callable[[int, int], str]

# What a local record named under `differences` may be, for every adapter's report.
WHY = {
    "pending": "pending here: central may hold it already (its answer was not received); "
    "counted at central if accepted there, not here",
    "outcome_missing": "settled here, but its stored settlement has no integer fund/account figures "
    "(counted here as 0)",
    "unknown_status": "a local status central has no word for",
    "revoke_pending": "settled here and counted, but a revoke of it is pending: central may have "
    "revoked it already (its answer was not received)",
}


def local_totals(totals: Totals) -> dict[str, Any]:
    """The spool's totals as an adapter's `reconcile` gets them: the report's local figures, and
    `date`, `uncertain` (the records that can explain a difference) and `uncertain_count`."""
    return {
        "date": totals.date,
        "count": totals.count,
        "total_fen": totals.total_fen,
        "fund_paid_fen": totals.fund_paid_fen,
        "account_paid_fen": totals.account_paid_fen,
        "by_status": dict(totals.by_status),
        "uncertain": list(totals.uncertain),
        "uncertain_count": totals.uncertain_count,
    }


def compare(
    local: dict[str, Any], central: dict[str, Any] | None, error: str | None, explain: Explain | None = None
) -> dict[str, Any]:
    """The report for `local` (as `local_totals` makes it) and central's figures (None when
    central could not be asked; `error` says why)."""
    local_part = {key: local[key] for key in (*COMPARED, "by_status")}
    differences: list[dict[str, Any]] = []
    if central is not None:
        differences = [
            {"figure": key, "local": local_part[key], "central": central[key]}
            for key in COMPARED
            if local_part[key] != central[key]
        ]
    result: dict[str, Any] = {
        "date": local["date"],
        "local": local_part,
        "central": central,
        "matches": central is not None and not differences,
        "differences": differences,
    }
    uncertain: list[dict[str, Any]] = local["uncertain"]
    pending = local["by_status"].get("pending", 0)
    if differences:
        differences += [{**_named(r), "detail": WHY.get(r["why"], r["why"])} for r in uncertain]
        if explain is not None:
            result["note"] = explain(local["uncertain_count"], len(uncertain))
    elif result["matches"] and pending:
        result["note"] = (
            f"matches so far: {pending} record(s) of this date are still pending here (not counted on either "
            "side until central accepts them); reconcile again once they are uploaded"
        )
    if error is not None:
        result["error"] = error
    return result


def _named(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "record_id": record["record_id"],
        "seq": record["seq"],
        "kind": record["kind"],
        "status": record["status"],
        "total_fen": record["total_fen"],
        "why": record["why"],
        "original_id": record.get("original_id"),  # a revoke's original
        "revoked_by": record.get("revoked_by"),  # the revoke cancelling this settlement
    }
