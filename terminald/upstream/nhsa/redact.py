"""Masking of the platform's messages before they are stored or shown.

An `err_msg` may quote the person: "身份证号110101199003071234的人员已冻结". Full identity
numbers go to central and nowhere else (DESIGN.md, principle 6), so every message is masked
before it reaches the call log, a log line or the record's rejection reason:

- identity numbers (18 characters, the last a digit or X; or 15 digits): 110101********1234;
- any other run of 9 or more letters and digits holding at least 6 digits (card numbers,
  person numbers, phone numbers): first and last two kept, A1*****89;
- the strings the caller knows belong to the person (`known`: name, card number, identity
  number), wherever they appear, masked like the receipts mask them.

Text that is none of these (amounts, dates, 系统繁忙) is kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from terminald.privacy import mask_card, mask_name, mask_ssn

__all__ = ["MAX_MESSAGE", "mask_text"]

MAX_MESSAGE = 500
_ID = re.compile(r"(?<![0-9A-Za-z])(?:[0-9]{17}[0-9Xx]|[0-9]{15})(?![0-9A-Za-z])")
_RUN = re.compile(r"(?<![0-9A-Za-z])[0-9A-Za-z]{9,}(?![0-9A-Za-z])")
_HAN = re.compile(r"^[\u3400-\u9fff·]+$")


def _mask_run(found: re.Match[str]) -> str:
    run = found.group(0)
    if sum(c.isdigit() for c in run) < 6:
        return run
    return mask_card(run)


def mask_text(text: object, known: Iterable[str] = ()) -> str:
    """`text` (any value; None is "") with personal data masked, at most MAX_MESSAGE characters."""
    out = "" if text is None else str(text)
    for value in sorted({k for k in known if k and len(k) >= 2}, key=len, reverse=True):
        if _HAN.match(value):
            out = out.replace(value, mask_name(value))
        elif _ID.fullmatch(value):
            out = out.replace(value, mask_ssn(value))
        else:
            out = out.replace(value, mask_card(value))
    out = _ID.sub(lambda m: mask_ssn(m.group(0)), out)
    out = _RUN.sub(_mask_run, out)
    return out[:MAX_MESSAGE]
