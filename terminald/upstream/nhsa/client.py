"""One call to the platform, with its call-log row around it: `NhsaClient.call`.

    build the envelope (EnvelopeError: nothing written, nothing sent)
    -> CallLog.begin: the row, committed, state `sent`, a new msgid (a second whose counters
       are used, MsgidExhausted, is waited out: the next second has fresh ones)
    -> POST it (httpx; every httpx error becomes UnknownOutcome here, at the edge)
    -> envelope.parse_answer -> Ok | Refused | UnknownOutcome
    -> CallLog.complete: ok | failed | unknown

A connect failure is an UnknownOutcome like the rest, on purpose: it costs one 2601 answering
"nothing to reverse" after recovery, and never a double settlement. A completion the file
refuses (disk full) turns the answer into an UnknownOutcome: the row stays `sent`, which a
restart would read as unknown too, so the caller reverses and retries either way.

`call(..., accept=)` lets the caller check a success before it is logged `ok`: an answer the
caller cannot trust (a settlement whose parts do not add up) raises UnknownOutcome there and is
logged `unknown`, so it is reversed like a lost answer. The output of an `ok` money call (the
profile's `reversible_infnos`) is kept in the log for a restart to apply.

`reverse(call)` sends the 2601 for a call left `sent` or `unknown` and, on a definite answer,
marks it `reversed`: 0 (reversed), or a -1 the profile lists under
`refusals.nothing_to_reverse` (it never took effect, or is reversed already). Any other -1 is
not definite (a 2601 refused for the wrong person, or "revoke the revoke first"): the call
stays open and the caller decides (the adapter raises an alarm). `sign_in` sends 9001 and
keeps the `sign_no` for the calls after it.
The uploader decides when to call what; this module only speaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import httpx

from terminald.upstream.nhsa import wirejson
from terminald.upstream.nhsa.calllog import Call, CallLog
from terminald.upstream.nhsa.envelope import (
    MAX_ANSWER_BYTES,
    SIGN_IN,
    Answer,
    Institution,
    Ok,
    Operator,
    build_request,
    encode_request,
    parse_answer,
)
from terminald.upstream.nhsa.errors import EnvelopeError, MsgidExhausted, UnknownOutcome
from terminald.upstream.nhsa.msgid import format_msgid, inf_time, msgid_prefix, parse_msgid
from terminald.upstream.nhsa.profiles import Profile

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["NhsaClient", "Person"]

REVERSAL = "2601"
# Seconds a call waits for a free msgid counter (MsgidExhausted) before the error is raised.
MSGID_SECONDS = 3
# Checks a success's output before it is logged `ok`; raises UnknownOutcome to log it `unknown`.
Accept = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class Person:
    """The person a call is about, as 1101 answered; `redact`: their name, card and identity
    numbers, masked out of every message stored or raised."""

    psn_no: str = ""
    insuplc_admdvs: str = ""
    redact: tuple[str, ...] = ()


class CallOptions(TypedDict, total=False):
    """The keywords of one call (`NhsaClient.call`, `NhsaSession.ask` and their `_logged` forms):
    the person it is about (none: `Person()`), the record it is for, who operates it (none: the
    client's operator), and `accept`, a check of a success before it is logged."""

    psn: Person | None
    record_id: str | None
    operator: Operator | None
    accept: Accept | None


class NhsaClient:
    def __init__(
        self,
        *,
        url: str,
        profile: Profile,
        institution: Institution,
        operator: Operator,
        calllog: CallLog,
        timeout_s: float = 10.0,
        verify: Any = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise EnvelopeError("the gateway's URL must be http:// or https://")
        self.profile = profile
        self.institution = institution
        self.operator = operator
        self.calllog = calllog
        self.sign_no = ""
        # time.monotonic() of the last definite answer and of the last call without one (0: none):
        # the idle probe needs no call while the gateway answered lately and nothing failed since.
        self.last_definite = 0.0
        self.last_unknown = 0.0
        self._url = url
        self._timeout_s = timeout_s
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            verify=verify,
            transport=transport,
            headers={"User-Agent": "terminald/upstream-nhsa"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- one call ---------------------------------------------------------------------------------

    def _envelope(self, infno: str, msgid: str, input: Mapping[str, Any], psn: Person,
                  operator: Operator, sign_no: str) -> dict[str, Any]:
        return build_request(
            profile=self.profile, institution=self.institution, operator=operator, infno=infno,
            msgid=msgid, input=input, insuplc_admdvs=psn.insuplc_admdvs, sign_no=sign_no,
        )

    async def call(self, infno: str, input: Mapping[str, Any], **options: Unpack[CallOptions]) -> Answer:
        """Send one call, logged; Ok or Refused, or raise UnknownOutcome (EnvelopeError: not sent).

        `accept(output)`, when given, checks a success before it is logged: UnknownOutcome from
        it logs the call `unknown` and is raised."""
        _, result = await self.call_logged(infno, input, **options)
        return result

    async def call_logged(self, infno: str, input: Mapping[str, Any],
                          **options: Unpack[CallOptions]) -> tuple[str, Answer]:
        """`call`, with the msgid the call was logged under (a settlement names its call by it)."""
        if infno == REVERSAL:
            raise EnvelopeError("a 2601 is sent with reverse(call), which logs what it reverses")
        unknown = set(options) - set(CallOptions.__annotations__)
        if unknown:  # a misspelt keyword must not silently drop the record id or the check
            raise TypeError(f"unknown call option(s): {', '.join(sorted(unknown))}")
        return await self._call(infno, input, options.get("psn") or Person(), options.get("record_id"),
                                options.get("operator") or self.operator, None, options.get("accept"))

    async def _call(
        self, infno: str, input: Mapping[str, Any], psn: Person, record_id: str | None, operator: Operator,
        omsgid: str | None, accept: Accept | None = None,
    ) -> tuple[str, Answer]:
        sign_no = self.sign_no  # one value for the whole call, whatever a concurrent sign-in does
        # A request that cannot be built is refused before it has a row: built with a stand-in
        # msgid, then given the logged one (only msgid and inf_time depend on it).
        probe = format_msgid(msgid_prefix(self.institution.fixmedins_code, datetime.now(UTC), UTC), 1)
        envelope = self._envelope(infno, probe, input, psn, operator, sign_no)
        msgid = await self._begin(infno, record_id, psn, omsgid)
        try:
            body = encode_request(self._readdress(envelope, msgid))
        except EnvelopeError as exc:
            await self._complete(msgid, "failed", f"not sent: {exc}", psn.redact)
            raise
        # Cancelled between here and the completion: the row stays `sent`, read as unknown.
        try:
            status, answer = await self._post(body)
            result = parse_answer(status, answer, msgid=msgid, profile=self.profile, redact=psn.redact)
            if accept is not None and isinstance(result, Ok):
                accept(result.output)
        except UnknownOutcome as exc:
            self.last_unknown = time.monotonic()
            await self._complete(msgid, "unknown", f"{exc.reason}: {exc.detail}", psn.redact)
            raise
        self.last_definite = time.monotonic()
        try:
            if isinstance(result, Ok):
                # A money call's answer is kept: after a crash before its outcome reached the
                # spool, the restart applies it instead of settling again.
                kept = wirejson.dumps(result.output) if infno in self.profile.reversible_infnos else None
                await self.calllog.acomplete(msgid, "ok", inf_refmsgid=result.inf_refmsgid, output=kept)
            else:
                await self.calllog.acomplete(msgid, "failed", inf_refmsgid=result.inf_refmsgid,
                                             err_msg=result.err_msg, redact=psn.redact)
        except Exception as exc:
            raise UnknownOutcome("log_failed", f"the answer to {msgid} was not logged: {type(exc).__name__}") from exc
        return msgid, result

    def _readdress(self, envelope: Mapping[str, Any], msgid: str) -> dict[str, Any]:
        """The envelope built with the stand-in msgid, as `build_request` builds it for `msgid`:
        only msgid and inf_time are made from it, both of fixed length (the profile's limits
        hold as they did for the stand-in), and a field the profile fixes still wins."""
        if parse_msgid(msgid).fixmedins_code != self.institution.fixmedins_code:
            raise EnvelopeError("the msgid was made for another fixmedins_code")
        out = dict(envelope)
        out["msgid"] = msgid
        out["inf_time"] = inf_time(msgid)
        out.update(self.profile.envelope_extra)
        return out

    async def _begin(self, infno: str, record_id: str | None, psn: Person, omsgid: str | None) -> str:
        """The call's row and msgid. A second whose counters are all used (MsgidExhausted, soon
        reached with a small msgid_slot) is waited out: the next second has fresh ones."""
        for attempt in range(MSGID_SECONDS):
            try:
                return await self.calllog.abegin(infno, record_id=record_id, psn_no=psn.psn_no,
                                                 insuplc_admdvs=psn.insuplc_admdvs, omsgid=omsgid)
            except MsgidExhausted:
                if attempt == MSGID_SECONDS - 1:
                    raise
                await asyncio.sleep(1.0 - time.time() % 1.0 + 0.01)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _complete(
        self, msgid: str, state: Literal["failed", "unknown"], err_msg: str, redact: Sequence[str]
    ) -> None:
        # A completion the file refuses leaves the row `sent`: read as unknown all the same.
        with contextlib.suppress(Exception):
            await self.calllog.acomplete(msgid, state, err_msg=err_msg, redact=redact)

    async def reachable(self) -> None:
        """A GET of the gateway's URL, with no call in it: whatever the gateway answers (even
        405 or 404), except a 5xx, shows it takes requests. It creates nothing at the platform
        and no call-log row: the idle probe between business calls. UnknownOutcome otherwise."""
        with self._edge():
            async with self._http.stream("GET", self._url) as response:
                status = response.status_code
        if status >= 500:
            raise UnknownOutcome("http_status", f"the gateway answered HTTP {status}")

    @contextlib.contextmanager
    def _edge(self) -> Iterator[None]:
        """httpx's errors as UnknownOutcome, here at the edge: no answer, whatever the cause."""
        try:
            yield
        except httpx.TimeoutException as exc:
            raise UnknownOutcome("timeout", f"no answer within {self._timeout_s} s") from exc
        except httpx.ConnectError as exc:
            raise UnknownOutcome("connect_failed", f"cannot connect to the gateway: {type(exc).__name__}") from exc
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.CloseError) as exc:
            raise UnknownOutcome("connection_lost", f"connection lost: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise UnknownOutcome("transport", f"HTTP error: {type(exc).__name__}") from exc

    async def _post(self, body: bytes) -> tuple[int, bytes]:
        with self._edge():
            async with self._http.stream(
                "POST", self._url, content=body, headers={"Content-Type": "application/json;charset=utf-8"}
            ) as response:
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > MAX_ANSWER_BYTES:
                        raise UnknownOutcome("too_large", f"answer over {MAX_ANSWER_BYTES} bytes")
                return response.status_code, bytes(data)

    # -- sign-in and reversal ---------------------------------------------------------------------

    async def sign_in(self, *, opter_no: str, mac: str, ip: str) -> Answer:
        """9001; on success the new `sign_no` is kept for every later call (calls already under
        way keep the one they started with)."""
        result = await self.call(SIGN_IN, {"opter_no": opter_no, "mac": mac, "ip": ip})
        if isinstance(result, Ok):
            info = result.output.get("signinoutb")
            sign_no = info.get("sign_no") if isinstance(info, Mapping) else None
            if not isinstance(sign_no, str) or not sign_no:
                raise UnknownOutcome("no_sign_no", "9001 succeeded without signinoutb.sign_no")
            self.sign_no = sign_no
        return result

    async def reverse(self, call: Call, *, redact: tuple[str, ...] = ()) -> Answer:
        """2601 for `call` (left sent or unknown). A definite answer (0, or a -1 the profile lists
        as nothing to reverse) marks it `reversed`; any other -1 does not: a transient or sign-in
        one (try again), or a refusal of the 2601 itself (the call may still stand: the caller
        must not retry it). Raises UnknownOutcome like `call`."""
        if not call.open:
            raise EnvelopeError(f"call {call.msgid} is {call.state}: only sent or unknown calls are reversed")
        psn = Person(call.psn_no, call.insuplc_admdvs, redact)
        by, result = await self._call(
            REVERSAL, {"psn_no": call.psn_no, "omsgid": call.msgid, "oinfno": call.infno},
            psn, call.record_id, self.operator, call.msgid,
        )
        if isinstance(result, Ok) or (result.kind == "rejected" and self.profile.reverses_nothing(result.err_msg)):
            await self.calllog.amark_reversed(call.msgid, by=by)
        return result
