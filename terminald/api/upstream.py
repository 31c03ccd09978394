"""The link to central, for staff: clear a halt once its cause is fixed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from terminald.api.deps import daemon
from terminald.api.problems import problems

router = APIRouter(tags=["upstream"])

# Printable text, no blank at either end: operator and reason go to the journal and the event
# stream as they are (not stripped: a schema-valid value is never refused).
_TEXT = r"^[^\x00-\x20\x7f](?:[^\x00-\x1f\x7f]*[^\x00-\x20\x7f])?$"


class ResumeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operator: str = Field(min_length=1, max_length=64, pattern=_TEXT, description="who resumes (logged)")
    reason: str = Field(min_length=1, max_length=500, pattern=_TEXT, description="why (logged)")
    clear_downtime: StrictBool = Field(
        default=False, description="also drop the downtime window from central in force now"
    )
    restored_checked: StrictBool = Field(
        default=False,
        description="staff checked the pending records of a spool restored from the mirror with central "
                    "(nhsa: alarm nhsa_restored_unverified): they are sent from now on. Without it a resume "
                    "leaves them held (`still_held` in the answer)",
    )


@router.post("/v1/upstream/resume", responses=problems({409: "not_halted", 422: "validation_failed"}))
async def resume(request: Request, body: ResumeIn) -> dict[str, Any]:
    """Clear a halt (the cursor is checked again first) and/or a window from central, and with
    `restored_checked` release the records of a spool restored from the mirror; the upstream
    status afterwards, as in `GET /v1/status`, with `still_held`."""
    d = daemon(request)
    link = await d.uploader.resume(operator=body.operator, reason=body.reason, clear_downtime=body.clear_downtime,
                                   restored_checked=body.restored_checked)
    return {**link, "url_configured": bool(d.cfg.upstream.url)}
