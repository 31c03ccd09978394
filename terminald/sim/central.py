"""The central medical-insurance system, simulated: upstream protocol v1 over real HTTP.

A raw asyncio + h11 server, so that faults below HTTP are real: `down` closes
the listening socket (connections are refused), `reset` and
`drop_after_commit` abort the TCP connection with an RST (SO_LINGER 0), and a
garbage body is really sent as bytes on the wire. Central's books live in
SQLite (`central_store.py`); a batch is committed before any answer is sent.

Faults, switchable at runtime with `POST /_control` (JSON) or `CentralSim.control`:

    down: bool                  refuse connections (listening socket closed, live ones aborted)
    latency_ms: float           added before every answer
    error_rate: float 0..1      503 instead of handling the request
    reset_rate: float 0..1      TCP reset after the request is read, nothing handled
    drop_after_commit_rate      handle and commit a batch, then reset instead of answering
    garbage_rate: float 0..1    handle (and commit), then answer 200 with a body that is not JSON
    throttle_rate: float 0..1   429 with `Retry-After: retry_after_s`
    bad_split: bool             answer each settlement with parts that do not add up (books stay right)
    extra_fields: bool          add undocumented fields to every result, settlement and reason
    fork_cursor: bool           answer `cursor` with another last_hash (central's books tell another history)
    seed: int                   seed the fault dice (reproducible runs)
Actions (one-shot): down_for_s (go down, come back by itself: the way to do it over HTTP,
since a down simulator cannot hear `{"down": false}`), freeze / unfreeze / not_insured
(card lists), downtime (notice windows),
regress {terminal_id, count} (forget the last records: a cursor regression),
tamper {terminal_id} (central's last hash changes: the next batch is chain_broken).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import threading
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11

from terminald.sim.central_http import abort, json_answer, read_request
from terminald.sim.central_store import BadBatch, BatchError, CentralStore

__all__ = ["CentralSim", "Faults", "run"]

_ACTIONS = {"freeze", "unfreeze", "not_insured", "downtime", "regress", "tamper", "down_for_s"}


@dataclass
class Faults:
    down: bool = False
    latency_ms: float = 0.0
    error_rate: float = 0.0
    reset_rate: float = 0.0
    drop_after_commit_rate: float = 0.0
    garbage_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after_s: int = 1
    bad_split: bool = False
    extra_fields: bool = False
    fork_cursor: bool = False


class _Reset(Exception):
    """Abort the connection with a TCP reset instead of answering."""


class CentralSim:
    """The simulator; `start()` runs it in its own thread with its own event loop."""

    def __init__(
        self, db_path: str | Path, host: str = "127.0.0.1", port: int = 0, *, token: str | None = None
    ) -> None:
        self.store = CentralStore(db_path)
        self.host = host
        self.port = port
        self.token = token
        self.faults = Faults()
        self.injected: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.targets: deque[str] = deque(maxlen=1000)  # recent request targets, for tests
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

        self._thread = threading.Thread(target=main, name="central-sim", daemon=True)
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
        # Connections still open (keep-alive) are cancelled so the loop closes cleanly.
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
        """Change faults / run actions from any thread; returns the state after the change."""
        if self._loop is None:
            raise RuntimeError("the simulator is not started")
        future = asyncio.run_coroutine_threadsafe(self._control(changes), self._loop)
        return future.result(timeout=10)

    async def _control(self, changes: dict[str, Any]) -> dict[str, Any]:
        known = {f.name: f.type for f in fields(Faults)}
        unknown = set(changes) - set(known) - _ACTIONS - {"seed", "reset_counters"}
        if unknown:
            raise ValueError(f"unknown control keys: {sorted(unknown)}")
        for key, value in changes.items():
            if key in known:
                setattr(self.faults, key, type(getattr(Faults(), key))(value))
        if "seed" in changes:
            self._dice.seed(changes["seed"])
        if changes.get("reset_counters"):
            self.injected.clear()
            self.requests.clear()
        self.store.freeze(changes.get("freeze", []))
        self.store.unfreeze(changes.get("unfreeze", []))
        if "not_insured" in changes:
            self.store.set_not_insured(changes["not_insured"])
        if "downtime" in changes:
            self.store.set_downtime(changes["downtime"])
        if "regress" in changes:
            self.store.regress(changes["regress"]["terminal_id"], int(changes["regress"]["count"]))
        if "tamper" in changes:
            self.store.tamper_last_hash(changes["tamper"]["terminal_id"])
        if "down_for_s" in changes:
            # Shortly after answering, so that the HTTP caller still gets its reply.
            self.faults.down = True
            loop = asyncio.get_running_loop()
            loop.call_later(
                0.05, lambda: setattr(self, "_background", asyncio.ensure_future(self._go_down()))
            )
            loop.call_later(0.05 + float(changes["down_for_s"]), self._come_back)
        elif "down" in changes:
            if self.faults.down:
                await self._go_down()
            elif self._server is None:
                await self._listen()
        return self.state()

    def _come_back(self) -> None:
        async def up() -> None:
            self.faults.down = False
            if self._server is None:
                await self._listen()

        self._spawn(up)

    def _spawn(self, coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._background = asyncio.ensure_future(coro())  # a reference keeps the task alive

    def state(self) -> dict[str, Any]:
        return {
            "faults": asdict(self.faults),
            "injected": dict(self.injected),
            "requests": dict(self.requests),
            "url": self.url,
        }

    def records(self, terminal_id: str) -> list[dict[str, Any]]:
        """What central stored for the terminal, in seq order (wire record + central's decision)."""
        return self.store.records(terminal_id)

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
            # Shutdown: the connection just ends (asyncio would log a cancelled handler as an error).
            abort(writer)
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _respond(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        parts = urlsplit(target)
        path = parts.path
        if path == "/_control":
            return await self._control_endpoint(method, body)
        self.requests[path.rsplit("/", 1)[-1]] += 1
        self.targets.append(f"{method} {target}")
        faults = self.faults
        if faults.latency_ms:
            self.injected["latency"] += 1
            await asyncio.sleep(faults.latency_ms / 1000)
        if self._roll(faults.reset_rate, "reset"):
            raise _Reset
        if self._roll(faults.throttle_rate, "throttle"):
            return json_answer(
                429, {"error": "too_many_requests"}, [("Retry-After", str(faults.retry_after_s))]
            )
        if self._roll(faults.error_rate, "error"):
            return json_answer(503, {"error": "unavailable"})
        status, answer, extra = self._route(method, path, parse_qs(parts.query), headers, body)
        answer = self._distort(path, answer)
        if (
            method == "POST"
            and status == 200
            and self._roll(faults.drop_after_commit_rate, "drop_after_commit")
        ):
            raise _Reset
        if self._roll(faults.garbage_rate, "garbage"):
            return 200, [("Content-Type", "application/json")], b'{"results": [{"seq": \x00garbage<html>'
        return json_answer(status, answer, extra)

    def _distort(self, path: str, answer: Any) -> Any:
        """What the answer-changing faults do to an answer (central's books stay as they are)."""
        faults = self.faults
        if not isinstance(answer, dict):
            return answer
        if faults.fork_cursor and path.endswith("/cursor"):
            self.injected["fork_cursor"] += 1
            answer = {**answer, "last_hash": "e" * 64}
        results = answer.get("results")
        if (faults.bad_split or faults.extra_fields) and path.endswith("/records") and isinstance(results, list):
            answer = {**answer, "results": [self._distort_result(r) for r in results]}
        return answer

    def _distort_result(self, result: dict[str, Any]) -> dict[str, Any]:
        result = dict(result)
        if self.faults.bad_split and isinstance(result.get("settlement"), dict):
            self.injected["bad_split"] += 1
            settlement = result["settlement"]
            result["settlement"] = {**settlement, "cash_paid_fen": settlement["cash_paid_fen"] + 1}
        if self.faults.extra_fields:
            self.injected["extra_fields"] += 1
            for key in ("settlement", "reason"):
                if isinstance(result.get(key), dict):
                    result[key] = {**result[key], "patient_phone": "13800138000", "internal_note": "<b>x</b>"}
            result["debug_trace"] = {"node": "central-7"}
        return result

    def _roll(self, rate: float, name: str) -> bool:
        if rate > 0 and self._dice.random() < rate:
            self.injected[name] += 1
            return True
        return False

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, list[tuple[str, str]]]:
        if path == "/v1/health" and method == "GET":
            return 200, {"status": "ok"}, []
        segments = path.strip("/").split("/")
        if len(segments) != 4 or segments[:2] != ["v1", "terminals"]:
            return 404, {"error": "not_found"}, []
        tid, call = segments[2], segments[3]
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "unauthorized"}, [("WWW-Authenticate", "Bearer")]
        if headers.get("x-terminal-id") != tid:
            return 403, {"error": "terminal_mismatch"}, []
        if call == "cursor" and method == "GET":
            return 200, self.store.cursor(tid), []
        if call == "records" and method == "POST":
            try:
                return 200, self.store.apply_batch(tid, json.loads(body)), []
            except BatchError as exc:
                return exc.status, exc.body, []
            except (BadBatch, ValueError) as exc:
                return 400, {"error": "bad_request", "message": str(exc)}, []
        if call == "notices" and method == "GET":
            since = query.get("frozen_since", [""])[0]
            return 200, self.store.notices(int(since) if since.isdigit() else None), []
        if call == "totals" and method == "GET":
            date = query.get("date", [""])[0]
            if len(date) != 10:
                return 400, {"error": "bad_request", "message": "date=YYYY-MM-DD is required"}, []
            return 200, self.store.totals(tid, date), []
        return 404, {"error": "not_found"}, []

    async def _control_endpoint(self, method: str, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        if method == "GET":
            return json_answer(200, self.state())
        try:
            changes = json.loads(body or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            return json_answer(200, await self._control(changes))
        except (ValueError, TypeError, KeyError) as exc:
            return json_answer(400, {"error": "bad_request", "message": str(exc)})


def run(
    host: str = "127.0.0.1",
    port: int = 8640,
    db: str | Path = "central.db",
    *,
    token: str | None = None,
    **faults: Any,
) -> None:
    """Run the simulator in the foreground until interrupted (`terminald sim central`)."""
    sim = CentralSim(db, host, port, token=token)
    sim.start()
    if faults:
        sim.control(**faults)
    print(f"central simulator on {sim.url} (db {db}); POST {sim.url}/_control to inject faults", flush=True)

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
    parser = argparse.ArgumentParser(prog="terminald-sim-central", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8640)
    parser.add_argument("--db", default="central.db")
    parser.add_argument("--token")
    for f in fields(Faults):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(getattr(Faults(), f.name), bool):
            parser.add_argument(flag, action="store_true")
        else:
            parser.add_argument(flag, type=type(getattr(Faults(), f.name)), default=getattr(Faults(), f.name))
    args = vars(parser.parse_args(argv))
    host, port, db, token = args.pop("host"), args.pop("port"), args.pop("db"), args.pop("token")
    run(host, port, db, token=token, **{k: v for k, v in args.items() if v != getattr(Faults(), k)})


if __name__ == "__main__":
    main()
