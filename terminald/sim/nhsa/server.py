"""The national medical-security platform, simulated: one gateway endpoint over real HTTP.

A raw asyncio + h11 server (the plumbing of the v1 central simulator, `central_http.py`), so
that faults below the platform are real: `down` closes the listening socket, `reset` and
`drop_after_commit` abort the TCP connection with an RST, a garbage body is really sent. The
books are SQLite (`store.py`), committed before any answer leaves; the rules are `rules.py`.

Every ``POST`` to any path but ``/_control…`` is a gateway call (the envelope of
contracts/upstream-nhsa.md). Run-time switches, with ``POST /_control`` (JSON) or `NhsaSim.control`:

    down: bool                  refuse connections (listening socket closed, live ones aborted)
    latency_ms: float           added before every answer
    error_rate: float 0..1      HTTP `error_status` (503) instead of handling the call
    reset_rate: float 0..1      TCP reset after the request is read, nothing handled
    drop_after_commit_rate      handle and commit the call, then reset instead of answering
    garbage_rate: float 0..1    handle and commit, then answer 200 with a body that is not the envelope
    busy_rate: float 0..1       infcode -1 "系统繁忙，请稍后再试", nothing handled
    gateway_timeout_rate        handle and commit, then answer infcode -1 "调用医保中心服务超时…"
                                (a front end's own timeout: a -1 whose outcome is not known)
    fault_infnos: [infno]       the rate faults above (and `next`) hit only these infnos ([] = all)
    refuse: {infno: [...], persons: [...], message}   infcode -1 for matching calls, nothing handled
    + every field of `settings.Settings` (amounts_as, fund_includes_acct, deductible_fen, split, ...)
Actions: seed (fault dice), next {fault: count} (the next calls get that fault, before any dice),
sign_in_expiry (every sign_no given so far expires: the next call answers -1 "签到失效，请重新签到"),
down_for_s (down now, back by itself), frozen / not_insured (set the lists), freeze / unfreeze,
balance_fen {person: fen} (set a current account balance), reset_counters.
Inspection: GET /_control (state), /_control/calls, /_control/settlements, /_control/revokes,
/_control/persons, /_control/check (the money check's problems).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11

from terminald.sim.central_http import abort, json_answer, read_request
from terminald.sim.nhsa.checks import money_problems
from terminald.sim.nhsa.persons import PERSONS_TABLE, Person, load_persons
from terminald.sim.nhsa.rules import Incoming, Platform
from terminald.sim.nhsa.settings import INFNOS, MSG_GATEWAY_TIMEOUT, MSG_REFUSED, Settings
from terminald.sim.nhsa.store import NhsaStore
from terminald.sim.nhsa.wire import parse_body

__all__ = ["DEFAULT_PORT", "Faults", "NhsaSim", "main", "run"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 8650
ONE_SHOT = ("reset", "error", "busy", "drop_after_commit", "garbage", "gateway_timeout")
_ACTIONS = {"seed", "next", "sign_in_expiry", "down_for_s", "frozen", "not_insured", "freeze", "unfreeze",
            "balance_fen", "reset_counters"}
_RATES = ("error_rate", "reset_rate", "drop_after_commit_rate", "garbage_rate", "busy_rate", "gateway_timeout_rate")
GARBAGE = b'{"infcode":0,"inf_refmsgid":"\x00\x1f<html><body>502 Bad Gateway'
_ERROR_PAGE = b"<html><head><title>Service Unavailable</title></head><body>upstream unavailable</body></html>"


@dataclass
class Faults:
    down: bool = False
    latency_ms: float = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    reset_rate: float = 0.0
    drop_after_commit_rate: float = 0.0
    garbage_rate: float = 0.0
    busy_rate: float = 0.0
    gateway_timeout_rate: float = 0.0
    fault_infnos: list[str] = field(default_factory=list)
    refuse: dict[str, Any] = field(default_factory=dict)


class _Reset(Exception):
    """Abort the connection with a TCP reset instead of answering."""


class NhsaSim:
    """The simulator; `start()` runs it in its own thread with its own event loop."""

    def __init__(
        self,
        db_path: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        cards: Iterable[Path] | None = None,
        persons_table: Path = PERSONS_TABLE,
        synthetic_persons: int = 0,
        sale_key: Callable[[dict[str, Any]], str] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = Settings()
        self.settings.update(dict(settings or {}))
        persons = load_persons(cards, persons_table, synthetic_persons)
        self.store = NhsaStore(db_path)
        self.platform = Platform(self.store, persons, self.settings, sale_key)
        self.host = host
        self.port = port
        self.faults = Faults()
        self.pending: Counter[str] = Counter()  # one-shot faults (`next`)
        self.injected: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()  # by infno ("?" when the body has none)
        self._dice = random.Random()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._background: asyncio.Future[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_until_complete(self._serve_until_stopped())
            loop.close()

        self._thread = threading.Thread(target=main, name="nhsa-sim", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout=10)
        self.store.close()

    async def _serve_until_stopped(self) -> None:
        assert self._stopped is not None
        await self._stopped.wait()
        await self._go_down()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _listen(self) -> None:
        if self._stopped is None:
            self._stopped = asyncio.Event()
        self._server = await asyncio.start_server(self._connection, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _go_down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            abort(writer)

    # -- control ----------------------------------------------------------------------------------

    def control(self, **changes: Any) -> dict[str, Any]:
        """Change faults and settings, run actions, from any thread; returns the state after the change."""
        if self._loop is None:
            raise RuntimeError("the simulator is not started")
        future = asyncio.run_coroutine_threadsafe(self._control(changes), self._loop)
        return future.result(timeout=10)

    async def _control(self, changes: dict[str, Any]) -> dict[str, Any]:
        fault_names = {f.name for f in fields(Faults)}
        unknown = set(changes) - fault_names - Settings.names() - _ACTIONS
        if unknown:
            raise ValueError(f"unknown control keys: {sorted(unknown)}")
        new_faults = self._checked_faults({k: v for k, v in changes.items() if k in fault_names})
        lists = {key: self._identifiers(changes[key], key)
                 for key in ("frozen", "not_insured", "freeze", "unfreeze") if key in changes}
        balances = self._balances(changes.get("balance_fen", {}))
        one_shot = self._one_shot(changes.get("next", {}))
        down_for = changes.get("down_for_s", 0)
        if isinstance(down_for, bool) or not isinstance(down_for, int | float) or down_for < 0:
            raise ValueError("down_for_s must be a non-negative number of seconds")
        if "seed" in changes and (isinstance(changes["seed"], bool) or not isinstance(changes["seed"], int)):
            raise ValueError("seed must be an integer")
        self.settings.update({k: v for k, v in changes.items() if k in Settings.names()})  # validates, then applies
        # Everything is valid: apply.
        for key, value in new_faults.items():
            setattr(self.faults, key, value)
        if "seed" in changes:
            self._dice.seed(changes["seed"])
        if changes.get("reset_counters"):
            self.injected.clear()
            self.requests.clear()
        self.pending.update(one_shot)
        for key, identifiers in lists.items():
            name = "frozen" if key in ("frozen", "freeze", "unfreeze") else "not_insured"
            op = {"freeze": "add", "unfreeze": "remove"}.get(key, "set")
            self.platform.set_list(name, [p.key for p in identifiers], op)
        for person, fen in balances:
            self.platform.set_balance(person, fen)
        if changes.get("sign_in_expiry"):
            self.injected["sign_in_expiry"] += self.store.expire_sign_ins()
        if "down_for_s" in changes:
            self.faults.down = True
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, lambda: setattr(self, "_background", asyncio.ensure_future(self._go_down())))
            loop.call_later(0.05 + float(changes["down_for_s"]), self._come_back)
        elif "down" in changes:
            if self.faults.down:
                await self._go_down()
            elif self._server is None:
                await self._listen()
        return self.state()

    def _checked_faults(self, changes: dict[str, Any]) -> dict[str, Any]:
        checked: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "down":
                if not isinstance(value, bool):
                    raise ValueError("down must be true or false")
            elif key == "error_status":
                if not isinstance(value, int) or not 500 <= value <= 599:
                    raise ValueError("error_status must be 500..599")
            elif key == "fault_infnos":
                if not isinstance(value, list) or not set(value) <= set(INFNOS):
                    raise ValueError(f"fault_infnos must be a list of {INFNOS}")
                value = list(value)
            elif key == "refuse":
                value = self._refuse(value)
            else:
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ValueError(f"{key} must be a non-negative number")
                if key in _RATES and value > 1:
                    raise ValueError(f"{key} must be within 0..1")
                value = float(value)
            checked[key] = value
        return checked

    def _refuse(self, value: Any) -> dict[str, Any]:
        if value in (None, {}):
            return {}
        if not isinstance(value, dict) or set(value) - {"infno", "persons", "message"}:
            raise ValueError('refuse is {"infno": [...], "persons": [...], "message": "..."}')
        infnos = value.get("infno", [])
        if not isinstance(infnos, list) or not set(infnos) <= set(INFNOS):
            raise ValueError(f"refuse.infno must be a list of {INFNOS}")
        persons = [p.key for p in self._identifiers(value.get("persons", []), "refuse.persons")]
        if not infnos and not persons:
            raise ValueError("refuse needs infno or persons (or {} to stop refusing)")
        message = value.get("message") or MSG_REFUSED
        if not isinstance(message, str):
            raise ValueError("refuse.message must be a string")
        return {"infno": infnos, "persons": persons, "message": message}

    def _identifiers(self, value: Any, key: str) -> list[Person]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{key} must be a list of card numbers, ID numbers or psn_no")
        return [self.platform.person(v) for v in value]

    def _balances(self, value: Any) -> list[tuple[Person, int]]:
        if not isinstance(value, dict):
            raise ValueError("balance_fen is {person: fen}")
        result = []
        for ident, fen in value.items():
            if not isinstance(fen, int) or isinstance(fen, bool) or fen < 0:
                raise ValueError("balance_fen values must be non-negative integers (fen)")
            result.append((self.platform.person(ident), fen))
        return result

    def _one_shot(self, value: Any) -> Counter[str]:
        if not isinstance(value, dict) or not set(value) <= set(ONE_SHOT):
            raise ValueError(f"next is {{fault: count}}, faults {ONE_SHOT}")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value.values()):
            raise ValueError("next counts must be non-negative integers")
        return Counter(value)

    def _come_back(self) -> None:
        async def up() -> None:
            self.faults.down = False
            if self._server is None:
                await self._listen()

        self._background = asyncio.ensure_future(up())

    def state(self) -> dict[str, Any]:
        return {
            "faults": asdict(self.faults),
            "next": {k: v for k, v in self.pending.items() if v},
            "settings": asdict(self.settings),
            "frozen": self.store.get("frozen", []),
            "not_insured": self.store.get("not_insured", []),
            "injected": dict(self.injected),
            "requests": dict(self.requests),
            "url": self.url,
        }

    # -- inspection (tests, benchmarks, the demo) ---------------------------------------------------

    @property
    def persons(self) -> dict[str, Person]:
        """Every person, by key (card number, or ID number for a person without a card)."""
        return dict(self.platform.persons.persons)

    def person(self, identifier: str) -> Person:
        return self.platform.person(identifier)

    def person_status(self, identifier: str) -> str:
        """"active", "frozen" or "not_insured"."""
        return self.platform.status(self.person(identifier))

    def balance_fen(self, identifier: str) -> int:
        return self.platform.balance(self.person(identifier))

    def calls(self, infno: str | None = None) -> list[dict[str, Any]]:
        """The call log, arrival order: request and answer parsed (amounts as Decimal), fault a list."""
        result = []
        for call in self.store.calls(infno):
            item = dict(call)
            item["request"] = _parsed(call["request"])
            item["answer"] = _parsed(call["answer"]) if call["answer"] is not None else None
            item["committed"] = bool(call["committed"])
            item["fault"] = call["fault"].split(",") if call["fault"] else []
            result.append(item)
        return result

    def settlements(self) -> list[dict[str, Any]]:
        """Every settlement ever committed, with ``status`` ("standing" | "reversed") and ``revoked_by``."""
        return self.store.settlements()

    def standing_settlements(self, *, include_revoked: bool = True) -> list[dict[str, Any]]:
        return [s for s in self.store.settlements() if s["status"] == "standing"
                and (include_revoked or not s["revoked_by"])]

    def revokes(self) -> list[dict[str, Any]]:
        return self.store.revokes()

    def standing_revokes(self) -> list[dict[str, Any]]:
        return [r for r in self.store.revokes() if r["status"] == "standing"]

    def money_problems(self, expected: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
        return money_problems(self.store.settlements(), self.store.revokes(), self.store.calls(), expected)

    def assert_money_consistent(self, expected: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """AssertionError listing every problem `checks.money_problems` finds."""
        problems = self.money_problems(expected)
        if problems:
            raise AssertionError("the platform's books are wrong:\n  " + "\n  ".join(problems))

    # -- the fault dice ---------------------------------------------------------------------------

    def _take(self, name: str, rate: float) -> bool:
        if self.pending[name] > 0:
            self.pending[name] -= 1
        elif not (rate > 0 and self._dice.random() < rate):
            return False
        self.injected[name] += 1
        return True

    def _targeted(self, infno: str) -> bool:
        return not self.faults.fault_infnos or infno in self.faults.fault_infnos

    def busy(self, infno: str) -> bool:
        return self._targeted(infno) and self._take("busy", self.faults.busy_rate)

    def refusal(self, infno: str, person: Person | None) -> str | None:
        refuse = self.faults.refuse
        if not refuse or (refuse["infno"] and infno not in refuse["infno"]):
            return None
        if refuse["persons"] and (person is None or person.key not in refuse["persons"]):
            return None
        self.injected["refuse"] += 1
        return str(refuse["message"])

    # -- HTTP -------------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await read_request(conn, reader)
                if request is None:
                    break
                try:
                    status, headers, body = await self._respond(*request)
                except _Reset:
                    abort(writer)
                    return
                headers = [*headers, ("Content-Length", str(len(body)))]
                writer.write(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
                writer.write(conn.send(h11.Data(data=body)) or b"")
                writer.write(conn.send(h11.EndOfMessage()) or b"")
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    break
                conn.start_next_cycle()
        except (h11.ProtocolError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            abort(writer)
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _respond(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        parts = urlsplit(target)
        if parts.path == "/_control" or parts.path.startswith("/_control/"):
            return await self._control_endpoint(method, parts.path, parse_qs(parts.query), body)
        if method != "POST":
            return json_answer(405, {"error": "method_not_allowed"}, [("Allow", "POST")])
        return await self._gateway(parts.path, body)

    async def _gateway(self, path: str, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        received = datetime.now().astimezone()
        faults = self.faults
        applied: tuple[str, ...] = ()
        if faults.latency_ms:
            self.injected["latency"] += 1
            applied = ("latency",)
            await asyncio.sleep(faults.latency_ms / 1000)
        envelope, problem = parse_body(body)
        raw_infno = envelope.get("infno") if envelope else None
        infno = raw_infno if isinstance(raw_infno, str) else ""
        self.requests[infno or "?"] += 1
        incoming = Incoming(path, body, envelope, problem, received, applied)
        targeted = self._targeted(infno)
        if targeted and self._take("reset", faults.reset_rate):
            self.platform.log_transport_fault(incoming, "reset")
            raise _Reset
        if targeted and self._take("error", faults.error_rate):
            self.platform.log_transport_fault(incoming, "error")
            return faults.error_status, [("Content-Type", "text/html")], _ERROR_PAGE
        post: str | None = None
        if targeted and self._take("drop_after_commit", faults.drop_after_commit_rate):
            post = "drop_after_commit"
        elif targeted and self._take("garbage", faults.garbage_rate):
            post = "garbage"
        elif targeted and self._take("gateway_timeout", faults.gateway_timeout_rate):
            post = "gateway_timeout"
        try:
            handled = self.platform.call(incoming, self, post)
        except Exception:
            log.exception("nhsa simulator: the call could not be handled")
            return 500, [("Content-Type", "text/html")], _ERROR_PAGE
        if post == "drop_after_commit":
            raise _Reset
        if post == "garbage":
            return 200, [("Content-Type", "application/json")], GARBAGE
        content_type = [("Content-Type", "application/json;charset=UTF-8")]
        if post == "gateway_timeout":
            answer = json.loads(handled.body)
            answer.update(infcode="-1" if self.settings.infcode_as_string else -1, err_msg=MSG_GATEWAY_TIMEOUT,
                          output=None)
            return 200, content_type, json.dumps(answer, ensure_ascii=False).encode()
        return 200, content_type, handled.body

    async def _control_endpoint(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if method == "GET":
            views: dict[str, Callable[[], Any]] = {
                "/_control": self.state,
                "/_control/calls": lambda: self.store.calls(query.get("infno", [None])[0]),
                "/_control/settlements": self.settlements,
                "/_control/revokes": self.revokes,
                "/_control/persons": lambda: [{**asdict(p), "status": self.platform.status(p),
                                               "balance_fen": self.platform.balance(p)}
                                              for p in self.platform.persons.persons.values()],
                "/_control/check": lambda: {"problems": self.money_problems()},
            }
            view = views.get(path)
            return json_answer(200, view()) if view else json_answer(404, {"error": "not_found"})
        if method != "POST" or path != "/_control":
            return json_answer(405, {"error": "method_not_allowed"}, [("Allow", "GET, POST")])
        try:
            changes = json.loads(body or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            return json_answer(200, await self._control(changes))
        except (ValueError, TypeError, KeyError) as exc:
            return json_answer(400, {"error": "bad_request", "message": str(exc)})


def _parsed(text: str) -> Any:
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError:
        return text


def run(host: str = "127.0.0.1", port: int = DEFAULT_PORT, db: str | Path = "nhsa.db", *,
        synthetic_persons: int = 0, **controls: Any) -> None:
    """Run the simulator in the foreground until interrupted (`terminald sim nhsa`)."""
    sim = NhsaSim(db, host, port, synthetic_persons=synthetic_persons)
    sim.start()
    if controls:
        sim.control(**controls)
    print(f"nhsa platform simulator on {sim.url} (db {db}); POST {sim.url}/_control to inject faults",
          flush=True)

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="terminald-sim-nhsa", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--db", default="nhsa.db")
    parser.add_argument("--down", action="store_true")
    for name in ("latency_ms", *_RATES):
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=0.0)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--amounts-as", choices=("number", "string"))
    parser.add_argument("--synthetic-persons", type=int, default=0)
    args = vars(parser.parse_args(argv))
    host, port, db = args.pop("host"), args.pop("port"), Path(args.pop("db"))
    db.parent.mkdir(parents=True, exist_ok=True)
    seed, synthetic = args.pop("seed"), args.pop("synthetic_persons")
    controls = {k: v for k, v in args.items() if v not in (None, 0.0, False)}
    run(host, port, db, synthetic_persons=synthetic, **controls, **({} if seed is None else {"seed": seed}))
