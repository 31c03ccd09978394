"""The offline policy: what a counter may settle while central cannot decide.

Online, central decides every settlement. Not online, the counter takes the
risk, within the limits the insurance office sets (`[offline]`): a frozen
card, an over-limit amount, a typed-in card or an expired one is refused here
with a stable code, before anything is written. The limit on the total
pending offline is the spool's to enforce (`AppendRequest.offline_limit_fen`):
it is decided inside the commit, where concurrent sales cannot both slip under it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from terminald.config import OfflineConfig
from terminald.errors import PolicyDenied


@dataclass(frozen=True)
class Candidate:
    card_number: str
    total_fen: int
    card_present: bool
    expires_on: str | None  # YYYY-MM-DD from the card, when it was read


def check_offline(
    candidate: Candidate,
    cfg: OfflineConfig,
    *,
    is_frozen: Callable[[str], bool],
    today: date,
) -> None:
    """Raise PolicyDenied when the settlement may not be taken offline (the total limit aside)."""
    if is_frozen(candidate.card_number):
        raise PolicyDenied("card_frozen", "this card is on the frozen list last received from central")
    if cfg.require_card_present and not candidate.card_present:
        raise PolicyDenied("card_not_present",
                           "offline settlements need the card read on this terminal (card_read_id)")
    if candidate.expires_on and candidate.expires_on < today.isoformat():
        raise PolicyDenied("card_expired", f"the card expired on {candidate.expires_on}")
    if candidate.total_fen > cfg.max_tx_fen:
        raise PolicyDenied("offline_limit_exceeded",
                           f"offline settlements are limited to {cfg.max_tx_fen} fen each",
                           limit_fen=cfg.max_tx_fen)
