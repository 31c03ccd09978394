"""The calls as the adapter makes them: signed in, reversed when unknown, errors translated.

One `Session` per adapter, shared by every lane (person) running at once:

    ensure_signed_in()   9001 before the first call (profile `requires_sign_in`)
    ask(...)             one call; a -1 the profile calls `sign_in` signs in again (once per
                         stale sign_no, whatever the number of lanes that saw it) and repeats
                         the call; a transient -1 raises PlatformBusy. Ok and Refused are
                         returned; UnknownOutcome is raised for the caller to decide
    reverse(call)        2601 until it is definite. Not before the profile's
                         `reversal_delay_s` has passed since the call's last time in the log
                         (its completion, else its sending), unless nothing can still be at
                         work at the gateway (a connect failure, a whole answer): ReversalNotDue
                         until then. A refusal of the 2601 itself raises ReversalRefused (alarm
                         `reversal_refused`); a 2601 that cannot be built or logged RecordStuck;
                         no answer or a busy platform a Transient (the uploader backs off)

Every definite answer tells the host the platform is reachable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from terminald.upstream.nhsa.calllog import Call
from terminald.upstream.nhsa.client import CallOptions, NhsaClient
from terminald.upstream.nhsa.edge import (
    NO_DELAY,
    PlatformBusy,
    RecordStuck,
    ReversalNotDue,
    ReversalRefused,
    SignInRefused,
    transient_of,
)
from terminald.upstream.nhsa.envelope import Answer, Ok, Refused
from terminald.upstream.nhsa.errors import CallLogError, EnvelopeError, UnknownOutcome
from terminald.upstream.nhsa.profiles import Profile

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from terminald.upstream.adapters import UpstreamHost

__all__ = ["SIGN_IN_ATTEMPTS", "Session", "reversal_due"]

log = logging.getLogger("terminald.upstream.nhsa")

# A call refused for its sign_no this many times in a row, each after a fresh sign-in: the
# gateway does not take our sign-ins; back off instead of looping.
SIGN_IN_ATTEMPTS = 3


def reversal_due(call: Call, delay_s: float) -> float:
    """When (time.time()) the 2601 of `call` (open) may be sent: `delay_s` after the call's last
    time in the log, from the log itself so that a restart waits as long as the run before it."""
    reason = call.err_msg.split(":", 1)[0].strip() if call.state == "unknown" else ""
    if reason in NO_DELAY or delay_s <= 0:
        return 0.0
    stamp = call.completed_at or call.sent_at
    try:
        since = datetime.fromisoformat(stamp).timestamp()
    except (TypeError, ValueError):
        return time.time() + delay_s  # an unreadable time: the whole delay from now
    return since + delay_s


class Session:
    def __init__(self, client: NhsaClient, host: UpstreamHost, *, opter_no: str, mac: str = "", ip: str = "") -> None:
        self.client = client
        self.host = host
        self._signin = (opter_no, mac, ip)
        self._lock = asyncio.Lock()

    @property
    def profile(self) -> Profile:
        return self.client.profile

    def _definite(self, answer: Answer) -> Answer:
        self.host.reached()
        return answer

    async def sign_in(self, stale: str | None = None) -> None:
        """9001, unless another lane already replaced `stale` (None: sign in regardless)."""
        async with self._lock:
            if stale is not None and self.client.sign_no != stale:
                return
            opter_no, mac, ip = self._signin
            try:
                answer = await self.client.sign_in(opter_no=opter_no, mac=mac, ip=ip)
            except UnknownOutcome as exc:
                raise transient_of(exc, "9001 sign-in") from exc
            self._definite(answer)
            if isinstance(answer, Refused):
                if answer.kind == "rejected":
                    raise SignInRefused(answer.err_msg)
                raise PlatformBusy(f"9001 sign-in: {answer.err_msg}")

    async def ensure_signed_in(self) -> None:
        if self.profile.requires_sign_in and not self.client.sign_no:
            await self.sign_in(stale="")

    async def _signed(self, send: Callable[[], Awaitable[Answer]], what: str) -> Answer:
        for _ in range(SIGN_IN_ATTEMPTS):
            await self.ensure_signed_in()
            used = self.client.sign_no
            answer = self._definite(await send())
            if isinstance(answer, Refused) and answer.kind == "sign_in":
                log.info("%s: the sign-in is no longer accepted; signing in again", what)
                await self.sign_in(stale=used)
                continue
            return answer
        raise PlatformBusy(f"{what}: refused for its sign-in {SIGN_IN_ATTEMPTS} times after signing in again")

    async def ask(self, infno: str, input: Mapping[str, Any], **options: Unpack[CallOptions]) -> Answer:
        """One call (see the module's docstring). Raises UnknownOutcome, PlatformBusy, or the
        sign-in's errors."""
        answer, _ = await self.ask_logged(infno, input, **options)
        return answer

    async def ask_logged(self, infno: str, input: Mapping[str, Any],
                         **options: Unpack[CallOptions]) -> tuple[Answer, str]:
        """`ask`, with the msgid of the call that gave the answer (the last one sent)."""
        sent: list[str] = []

        async def send() -> Answer:
            msgid, answer = await self.client.call_logged(infno, input, **options)
            sent.append(msgid)
            return answer

        answer = await self._signed(send, infno)
        if isinstance(answer, Refused) and answer.kind == "transient":
            raise PlatformBusy(f"{infno}: {answer.err_msg}")
        return answer, sent[-1]

    async def reverse(self, call: Call, redact: tuple[str, ...] = ()) -> None:
        """Reverse `call` (left sent or unknown) with 2601 until the platform answers definitely."""
        what = f"2601 of {call.infno} {call.msgid}"
        due = reversal_due(call, float(self.profile.reversal_delay_s))
        if due > time.time():
            raise ReversalNotDue(call, due)

        def send() -> Awaitable[Answer]:
            return self.client.reverse(call, redact=redact)

        try:
            answer = await self._signed(send, what)
        except UnknownOutcome as exc:
            raise transient_of(exc, what) from exc
        except (EnvelopeError, CallLogError) as exc:
            # Nothing reversed: the call may stand, so its record must not be sent again.
            raise RecordStuck(f"{what} cannot be sent: {exc.detail}") from exc
        if isinstance(answer, Ok):
            log.info("%s: reversed", what)
            return
        if answer.kind == "transient":
            raise PlatformBusy(f"{what}: {answer.err_msg}")
        if self.profile.reverses_nothing(answer.err_msg):
            log.info("%s: nothing to reverse (%s)", what, answer.err_msg)
            return
        raise ReversalRefused(call, answer.err_msg)
