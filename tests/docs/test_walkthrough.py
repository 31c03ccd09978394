"""docs/api.md is what a POS integrator reads, alone: it must say what the code does.

- The walk-through of a counter day (docs/walkthrough/counter_day.py with httpx, counter_day.sh
  with curl and jq) runs as written, step by step, against a real daemon and the central
  simulator; the test takes central down and brings it back between the steps, as the doc says,
  and checks each step's outcome in the script's output and in the daemon. The doc quotes both
  files verbatim and whole.
- Generated from the code, so the doc cannot drift: every route the app serves is in the
  endpoint table (and nothing else is); every error `code` the code can emit is documented, each
  problem code with its status; every event name with every field of its payload; every
  configuration key in docs/config.md (the offline policy's in docs/api.md too); no path to a
  file outside the repository.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast, get_args

import httpx
import pytest
from pydantic import BaseModel

from drivers.errors import DriverError
from spool.errors import SpoolError
from terminald.api import problems
from terminald.app import create_app
from terminald.config import Config
from terminald.daemon import Daemon
from terminald.errors import ConfigError, TerminaldError
from terminald.security import PUBLIC_PATHS, PUBLIC_PREFIXES, status_token_may
from terminald.sim.central import CentralSim
from terminald.upload.errors import UpstreamError
from terminald.upstream.adapters import ADAPTERS
from tests.fixtures.daemon import DaemonProcess
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
API_MD = ROOT / "docs" / "api.md"
CONFIG_MD = ROOT / "docs" / "config.md"
WALKTHROUGH = ROOT / "docs" / "walkthrough"
PY_SCRIPT = WALKTHROUGH / "counter_day.py"
SH_SCRIPT = WALKTHROUGH / "counter_day.sh"

# The daemon of the walk-through: central configured; typed cards are allowed offline (CI has no
# card reader: the doc says so); the card stack finds no pcscd, so a read answers no_reader at once.
WALKTHROUGH_CONFIG = """\
[terminal]
id = "T0001"
[upstream]
url = "{url}"
[offline]
require_card_present = false
"""
NO_PCSCD = {"PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"}
STEP_TIMEOUT_S = 240
# The outage sale is answered "at once": well under upstream.wait_s (5 s), which a POS would
# otherwise wait out for every sale.
AT_ONCE_S = 2.5


def doc() -> str:
    return API_MD.read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The text under `heading` (a markdown heading line) up to the next heading of its level or above."""
    lines = text.splitlines()
    [start] = [i for i, line in enumerate(lines) if line.strip() == heading]
    level = len(heading) - len(heading.lstrip("#"))
    end = next((i for i in range(start + 1, len(lines))
                if len(lines[i]) - len(lines[i].lstrip("#")) in range(1, level + 1)
                and lines[i].lstrip("#").startswith(" ")), len(lines))
    return "\n".join(lines[start + 1:end])


def first_table(text: str) -> list[list[str]]:
    """The rows (cells stripped) of the first markdown table in `text`, without header and rule."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    assert len(rows) > 2, "no table found"
    return rows[2:]


def ticked(text: str) -> list[str]:
    """What `text` writes as code: `this`, never across a line (so a ``` fence pairs with nothing)."""
    return re.findall(r"`([^`\n]+)`", text)


# -- the walk-through runs, as written ------------------------------------------------------------
def quoted_blocks(name: str) -> list[str]:
    """The code blocks the doc marks as quotes of docs/walkthrough/`name`, in order."""
    found = re.findall(r"<!-- quote: docs/walkthrough/" + re.escape(name) + r" -->\n```[a-z]*\n(.*?)```",
                       doc(), flags=re.S)
    assert found, f"docs/api.md quotes nothing of docs/walkthrough/{name}"
    return cast(list[str], found)


@pytest.mark.parametrize("script", [PY_SCRIPT, SH_SCRIPT], ids=lambda p: p.name)
def test_the_doc_quotes_the_walkthrough_verbatim_and_whole(script: Path) -> None:
    """The quoted pieces, in order, are the file: split only where it has two blank lines."""
    pieces = [block.strip("\n") for block in quoted_blocks(script.name)]
    assert "\n\n\n".join(pieces) + "\n" == script.read_text(encoding="utf-8")


def yuan(fen: int) -> str:
    return f"{'-' if fen < 0 else ''}{abs(fen) // 100}.{abs(fen) % 100:02d}"


class Counter:
    """One walk-through script, run one step at a time against the daemon `d`."""

    def __init__(self, script: Path, d: DaemonProcess) -> None:
        if script.suffix == ".sh":
            missing = [tool for tool in ("bash", "curl", "jq") if shutil.which(tool) is None]
            if missing:
                pytest.fail(f"the curl walk-through needs {', '.join(missing)} (apt-get install {' '.join(missing)})")
            self.command = ["bash", str(script)]
        else:
            self.command = [sys.executable, str(script)]
        # Only the base URL and the token are given: the rest is the script as the doc shows it.
        self.env = {**os.environ, "TERMINALD_URL": d.url, "TERMINALD_TOKEN": d.token}
        self.cwd = d.workdir

    def step(self, name: str) -> list[str]:
        done = subprocess.run([*self.command, name], env=self.env, cwd=self.cwd, capture_output=True,
                              text=True, timeout=STEP_TIMEOUT_S, check=False)
        assert done.returncode == 0, f"step {name}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout.splitlines()


def sale_of(api: httpx.Client, order: str) -> dict[str, Any]:
    """The one settlement of a POS order (a second one would be a double sale)."""
    items = api.get("/v1/transactions", params={"pos_order_id": order}).json()["items"]
    sales = [t for t in items if t["kind"] == "settlement"]
    assert len(sales) == 1, sales
    return cast(dict[str, Any], sales[0])


def receipts_printed(d: DaemonProcess) -> int:
    """Documents the default printer (previews in the state directory) has printed."""
    return len(list((d.state_dir / "receipts").glob("*.png")))


@pytest.fixture
def counter_day(daemon_proc: Callable[..., DaemonProcess], central_sim: CentralSim) -> Iterator[DaemonProcess]:
    yield daemon_proc(config=WALKTHROUGH_CONFIG.format(url=central_sim.url), env=NO_PCSCD)


@pytest.mark.parametrize("script", [PY_SCRIPT, SH_SCRIPT], ids=["python-httpx", "curl"])
def test_the_walkthrough_runs_a_whole_counter_day(script: Path, counter_day: DaemonProcess,
                                                   central_sim: CentralSim) -> None:
    d = counter_day
    pos = Counter(script, d)
    api = d.client()

    # Morning: the terminal answers, online, nothing pending; the OpenAPI document is fetched.
    paths = len(api.get("/openapi.json").json()["paths"])
    assert pos.step("open") == ["health: ok", "terminal T0001: online, 0 pending", f"openapi 3.1.0: {paths} paths"]

    # Central up: a typed card (no reader: no_reader at once), 201 settled, the receipt printed.
    out = pos.step("sale_online")
    sale1 = sale_of(api, "A-1001")
    s = sale1["settlement"]
    assert out == ["card: no_reader, typed in",
                   f"A-1001: 201 settled: fund {yuan(s['fund_paid_fen'])} + account {yuan(s['account_paid_fen'])}, "
                   f"patient pays {yuan(s['cash_paid_fen'])}",
                   "A-1001-receipt: receipt done"]
    assert sale1["status"] == "settled" and sale1["offline"] is False and sale1["card_present"] is False
    assert sale1["paid_at_counter_fen"] == s["cash_paid_fen"] and sale1["idempotency_key"] == "A-1001"
    assert sale1["meta"] == {"pos_order_id": "A-1001"} and sale1["total_fen"] == 2500
    assert receipts_printed(d) == 1
    assert len(central_sim.records("T0001")) == 1

    # Central down: 202 at once (not after wait_s), an outage sale; the retry is 200, the same sale.
    central_sim.control(down=True)
    out = pos.step("sale_outage")
    sale2 = sale_of(api, "A-1002")  # recorded once, though sent twice
    assert out[0] == "card: no_reader, typed in"
    first = re.fullmatch(r"A-1002: 202 pending \(offline: upstream_unreachable\) in (\d+\.\d+) s: "
                         r"patient pays 23\.00 in full and keeps the receipt", out[1])
    assert first, out
    assert float(first[1]) < AT_ONCE_S, f"the outage sale waited {first[1]} s"
    assert re.fullmatch(r"A-1002: 200 pending \(offline: upstream_unreachable\) in \d+\.\d+ s: "
                        r"patient pays 23\.00 in full and keeps the receipt", out[2]), out
    assert out[3:] == ["A-1002-receipt: receipt done"]
    assert sale2["status"] == "pending" and sale2["offline"] is True
    assert sale2["offline_reason"] == "upstream_unreachable"
    assert sale2["paid_at_counter_fen"] == sale2["total_fen"] == 2300  # 0.5 × 999 = 499.5 → 500, + 1800
    assert receipts_printed(d) == 2  # the same receipt key twice would still be one

    # Still down: the revoke of A-1001 is recorded (pending) and its receipt printed.
    out = pos.step("revoke")
    revoke = api.get(f"/v1/transactions/{sale_of(api, 'A-1001')['revoked_by']}").json()
    assert out == [f"A-1001-revoke: 202 pending: hand back {yuan(sale1['paid_at_counter_fen'])}",
                   "A-1001-revoke-receipt: receipt done"]
    assert revoke["kind"] == "revoke" and revoke["original_id"] == sale1["id"] and revoke["total_fen"] == -2500
    assert revoke["status"] == "pending" and revoke["idempotency_key"] == "A-1001-revoke"
    assert receipts_printed(d) == 3
    assert len(central_sim.records("T0001")) == 1  # nothing reached central while it was down

    # Central back: the backlog is uploaded in order; the outage sale settles; the notice prints.
    central_sim.control(down=False)
    out = pos.step("settled")
    sale2 = sale_of(api, "A-1002")
    owed = sale2["settlement"]["fund_paid_fen"] + sale2["settlement"]["account_paid_fen"]
    assert owed > 0 and sale2["refund_owed_fen"] == owed
    assert out == [f"A-1002: settled after the outage: refund owed {yuan(owed)}", "A-1002-notice: notice done"]
    assert receipts_printed(d) == 4

    # Follow-ups: the refund owed for A-1002 (the revoked A-1001 owes nothing).
    listed = api.get("/v1/followups").json()
    [item] = listed["items"]
    assert item["id"] == sale2["id"] and item["reason"] == "refund" and item["owed_fen"] == owed
    assert pos.step("followups") == [
        f"followup: refund A-1002: {yuan(owed)} by {item['deadline']} (card {item['card']['card_number']}, "
        "not overdue)",
        f"followups: 1, owed {yuan(owed)}"]

    # The refund is recorded once: nothing is owed any more, no follow-up is left.
    assert pos.step("refund") == [f"A-1002: refunded {yuan(owed)}, owed now 0.00; followups: 0"]
    sale2 = sale_of(api, "A-1002")
    assert sale2["refund_owed_fen"] == 0 and sale2["refund"]["paid_fen"] == owed
    assert api.get("/v1/followups").json()["count"] == 0

    # Evening: central holds the three records (in seq order) and the figures match.
    wait_until_uploaded(api)
    assert [r["record"]["seq"] if "record" in r else r["seq"] for r in central_sim.records("T0001")] == [1, 2, 3]
    day = sale1["business_time"][:10]
    rec = api.get("/v1/reconciliation", params={"date": day}).json()
    assert rec["matches"] is True and rec["local"]["count"] == 3 and rec["local"]["total_fen"] == 2300
    assert pos.step("reconcile") == [
        f"reconciliation {day}: matches: 3 records, net 23.00, fund {yuan(rec['local']['fund_paid_fen'])}"]

    # The day as events, from the first stored one.
    out = pos.step("events")
    events = [re.fullmatch(r"event (\d+) ([a-z_.]+)", line) for line in out]
    assert all(events), out
    ids = [int(m[1]) for m in events if m]
    names = [m[2] for m in events if m]
    assert ids == sorted(set(ids)), "event ids go up"
    assert {"upstream.online", "upstream.offline", "spool.backlog", "transaction.refunded"} <= set(names)
    assert names.count("transaction.settled") == 3  # A-1001, then A-1002 and the revoke after the outage
    assert names.index("upstream.offline") < names.index("transaction.refunded")


def wait_until_uploaded(api: httpx.Client) -> None:
    # The revoke settles in the same batch as A-1002, or just after: reconciliation counts settled only.
    wait_for(lambda: api.get("/v1/status").json()["spool"]["pending"] == 0, 60, "an empty backlog")


# -- the endpoint table lists what the app serves ---------------------------------------------------
def served_routes() -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, path parameters written `{}`."""
    app = create_app(cast(Daemon, object()))  # routes only: the daemon is never started
    found: set[tuple[str, str]] = set()

    def add(path: str, methods: set[str] | None) -> None:
        for method in methods or ():
            if method != "HEAD":
                found.add((method, re.sub(r"\{[^}]*\}", "{}", path)))

    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:  # FastAPI >= 0.165: an included router
            for context in contexts():
                add(context.path, set(context.methods or ()))
        else:
            add(cast(Any, route).path, getattr(route, "methods", None))
    assert ("POST", "/v1/transactions") in found and ("GET", "/openapi.json") in found
    return found


def documented_routes() -> dict[tuple[str, str], str]:
    """{(method, path): the token column} of the endpoint table."""
    found = {}
    for row in first_table(section(doc(), "## Endpoints")):
        m = re.fullmatch(r"`(GET|POST|PUT|PATCH|DELETE) (/\S*)`", row[0])
        assert m, f"endpoint table row without `METHOD /path`: {row}"
        found[(m[1], re.sub(r"\{[^}]*\}", "{}", m[2]))] = row[1]
    return found


def who_may(method: str, path: str) -> str:
    """The token column as access control decides it (terminald/security.py)."""
    concrete = path.replace("{}", "x")
    if concrete in PUBLIC_PATHS or concrete.startswith(PUBLIC_PREFIXES):
        return "none"
    return "POS, status page" if status_token_may(method, concrete) else "POS"


def test_the_endpoint_table_lists_every_served_route_and_who_may_call_it() -> None:
    served, documented = served_routes(), documented_routes()
    assert not served - set(documented), \
        f"served but not in docs/api.md's endpoint table: {sorted(served - set(documented))}"
    assert not set(documented) - served, f"in the endpoint table but not served: {sorted(set(documented) - served)}"
    wrong = {route: (token, who_may(*route)) for route, token in documented.items() if token != who_may(*route)}
    assert not wrong, f"the token column (documented, actual): {wrong}"


# -- every error code, with its status ---------------------------------------------------------------
# Codes of upstream errors that never reach the API: each shows as its `cause` instead (connect_failed,
# http_503, bad_answer, refused_http_401: documented as causes), or is an abstract base never raised.
# The national platform's adapter (terminald/upstream/nhsa) is likewise translated at the uploader's edge
# (and not wired into the uploader yet): its codes are in docs/nhsa.md, never in an API answer.
NOT_SHOWN = {"upstream_error", "upstream_transient", "upstream_busy", "upstream_bad_answer", "upstream_refused",
             "upstream_halt", "nhsa_error", "nhsa_unknown_outcome", "nhsa_amount_invalid", "nhsa_envelope_invalid",
             "nhsa_call_log", "nhsa_msgid_exhausted"}


def _subclasses(base: type) -> Iterator[type]:
    for cls in base.__subclasses__():
        yield cls
        yield from _subclasses(cls)


def _takes_code(cls: type) -> bool:
    """Errors whose code is given where they are raised (ConflictError(code=...), PolicyDenied("...")."""
    return "code" in inspect.signature(cls.__init__).parameters


def _sources() -> Iterator[tuple[Path, str]]:
    for package in ("terminald", "drivers", "spool"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "sim" not in path.relative_to(ROOT).parts:
                yield path, path.read_text(encoding="utf-8")


def emitted_codes() -> tuple[dict[str, set[int]], set[str]]:
    """({problem code: the statuses it is answered with}, every other code the API can show).

    From the error classes the app has loaded (their `code` and status: a TerminaldError's own,
    a spool or driver error's from the problem registry), the codes given where errors are raised,
    and the problems access control and the HTTP layer answer with literally.
    """
    create_app(cast(Daemon, object()))  # everything the served app imports is loaded
    for target in ADAPTERS.values():  # and every upstream adapter (the uploader loads one, lazily)
        importlib.import_module(target.partition(":")[0])
    statuses: dict[str, set[int]] = {}
    other: set[str] = set()

    def problem(code: str, status: int) -> None:
        statuses.setdefault(code, set()).add(status)

    for cls in _subclasses(TerminaldError):
        code = cls.__dict__.get("code")
        if code is None or _takes_code(cls):
            continue
        if issubclass(cls, UpstreamError) or issubclass(cls, ConfigError):
            other.add(code)  # the link's causes and alarms; a config error stops the start
        else:
            problem(code, cast(int, cast(Any, cls).status))
    for base in (SpoolError, DriverError):
        for cls in [base, *_subclasses(base)]:
            code = cls.__dict__.get("code")
            if code is None:
                continue
            if code in problems.STATUS_BY_CODE:
                problem(code, problems.STATUS_BY_CODE[code])
            else:
                other.add(code)  # a print job's `error`, a startup failure, or a base never raised
    # Errors whose code is given where they are raised: ConflictError(detail, code="..."), PolicyDenied("...").
    given_at_raise = {cls.__name__: cls for cls in _subclasses(TerminaldError) if _takes_code(cls)}
    for path, text in _sources():
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.Call):
                continue
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            args = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
            if called in given_at_raise:
                cls = given_at_raise[called]
                at = list(inspect.signature(cls.__init__).parameters).index("code") - 1
                codes = [k.value.value for k in node.keywords if k.arg == "code" and isinstance(k.value, ast.Constant)]
                codes += [args[at]] if len(args) > at and isinstance(args[at], str) else []
                for code in codes:
                    problem(code, cast(int, cast(Any, cls).status))
            elif called == "problem_response" and len(args) > 1 and isinstance(args[0], int) \
                    and isinstance(args[1], str):
                problem(args[1], args[0])
        if path.name == "problems.py" and path.parent.name == "api":
            m = re.search(r"code = \{(.*?)\}\.get\(exc\.status_code, \"([a-z_]+)\"\)", text)
            assert m, "the HTTP layer's code table moved: update this test"
            for status, code in re.findall(r'(\d{3}): "([a-z_]+)"', m[1]):
                problem(code, int(status))
            other.add(m[2])
        # Halt codes given by name (`self._halt("upstream_config", ...)`) and the alarms' codes.
        other.update(re.findall(r'_halt\(\s*"([a-z_]+)"', text))
        other.update(re.findall(r'\.alarm\(\s*"([a-z_]+)"', text))
    statuses = {code: found for code, found in statuses.items() if code not in NOT_SHOWN}
    return statuses, other - NOT_SHOWN - set(statuses)


def test_every_error_code_is_documented_with_its_status() -> None:
    statuses, other = emitted_codes()
    errors = section(doc(), "## Errors")
    table: dict[str, set[int]] = {}
    for row in first_table(section(errors, "### Problem codes")):
        for code in ticked(row[0]):
            table.setdefault(code, set()).update(int(s) for s in re.findall(r"\b[1-5]\d\d\b", row[1]))
    missing = sorted(set(statuses) - set(table))
    assert not missing, f"problem codes the code answers with, missing from the Problem codes table: {missing}"
    wrong = {code: (sorted(table[code]), sorted(s)) for code, s in statuses.items() if not s <= table[code]}
    assert not wrong, f"documented status(es) vs the code's: {wrong}"
    unknown = sorted(set(table) - set(statuses) - {"http_error"})
    assert not unknown, f"documented problem codes the code never answers with: {unknown}"
    mentioned = set(ticked(errors))
    assert not other - mentioned, f"codes the API can show, not in docs/api.md's Errors: {sorted(other - mentioned)}"


# -- every event, with every field -------------------------------------------------------------------
def _dict_keys(node: ast.AST) -> set[str]:
    """The string keys of every dict literal in `node` (nested ones too) and of `x["key"] = ...`."""
    keys = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Dict):
            keys.update(k.value for k in sub.keys if isinstance(k, ast.Constant) and isinstance(k.value, str))
        elif isinstance(sub, ast.Subscript) and isinstance(sub.ctx, ast.Store):  # data["a" if x else "b"] = ...
            options = [sub.slice.body, sub.slice.orelse] if isinstance(sub.slice, ast.IfExp) else [sub.slice]
            keys.update(o.value for o in options if isinstance(o, ast.Constant) and isinstance(o.value, str))
    return keys


def published_events() -> dict[str, set[str]]:
    """{event name: the fields of its data} for every event the daemon publishes, read from the code:
    calls of publish / (_)emit / on_event with a name and a dict literal, or the result of a function
    (terminald/upload/eventdata.py), and the `reset` event of the stream."""
    functions: dict[str, ast.FunctionDef] = {}
    calls: list[tuple[ast.Call, str]] = []
    for _, text in _sources():
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                functions.setdefault(node.name, node)
            if (isinstance(node, ast.Call) and len(node.args) == 2
                    and isinstance(node.func, ast.Attribute | ast.Name)
                    and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
                    in ("publish", "_emit", "emit", "on_event", "_on_event")):
                calls.append((node, text))
    events: dict[str, set[str]] = {}
    for call, _ in calls:
        name, data = call.args
        if isinstance(name, ast.Constant) and isinstance(name.value, str):
            names = [name.value]
        elif isinstance(name, ast.JoinedStr) and ast.unparse(name) == "f'transaction.{record.status}'":
            names = ["transaction.settled", "transaction.rejected"]  # the uploader's decided outcomes
        else:
            continue  # a relay of a name given by its caller
        if isinstance(data, ast.Dict):
            keys = _dict_keys(data)
        elif isinstance(data, ast.Call) and isinstance(data.func, ast.Name) and data.func.id in functions:
            keys = _dict_keys(functions[data.func.id])
        else:
            raise AssertionError(f"event {names} published with data this test cannot read: {ast.unparse(data)}")
        for n in names:
            events.setdefault(n, set()).update(keys)
    events["reset"] = _dict_keys(functions["_reset"])
    assert {"transaction.settled", "upstream.offline", "spool.backlog", "card.inserted"} <= set(events)
    return events


def test_every_event_is_documented_with_its_fields() -> None:
    documented: dict[str, set[str]] = {}
    table = section(section(doc(), "## Events"), "### Event names and payloads")
    assert "besides `at`" in table, "the event table says that every event has `at`"
    for row in first_table(table):
        for name in ticked(row[0]):
            documented.setdefault(name, set()).update(ticked(" ".join(row[1:])))
    published = published_events()
    missing = sorted(set(published) - set(documented))
    assert not missing, f"events published but not in docs/api.md's event table: {missing}"
    extra = sorted(set(documented) - set(published))
    assert not extra, f"events in the table that nothing publishes: {extra}"
    fields = {name: sorted(keys - documented[name] - {"at"}) for name, keys in published.items()
              if keys - documented[name] - {"at"}}
    assert not fields, f"payload fields missing from the event table: {fields}"


# -- configuration keys -------------------------------------------------------------------------------
def _section_model(annotation: Any) -> tuple[type[BaseModel], bool]:
    """The model of a config section, and whether the section is a list of them (`[[printers]]`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    for arg in get_args(annotation):  # tuple[Model, ...], maybe | None
        for inner in (*get_args(arg), arg):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner, True
    raise AssertionError(f"not a config section: {annotation}")


def config_keys() -> set[str]:
    """Every key, as docs/config.md writes it: `offline.max_tx_fen`, `printers[].uri`."""
    keys = set()
    for name, field in Config.model_fields.items():
        if name == "source":
            continue
        model, listed = _section_model(field.annotation)
        keys.update(f"{name}[].{key}" if listed else f"{name}.{key}" for key in model.model_fields)
    return keys


def test_every_config_key_is_in_the_config_doc_and_the_offline_policy_in_the_api_doc() -> None:
    keys = config_keys()
    assert "offline.max_total_fen" in keys and "printers[].uri" in keys and "downtime[].start" in keys
    written = set(ticked(CONFIG_MD.read_text(encoding="utf-8")))
    assert not keys - written, f"keys missing from docs/config.md: {sorted(keys - written)}"
    policy = set(ticked(section(doc(), "## The offline policy")))
    offline = {k for k in keys if k.startswith("offline.")}
    assert not offline - policy, f"offline keys missing from docs/api.md: {sorted(offline - policy)}"


# -- self-contained -------------------------------------------------------------------------------------
@pytest.mark.parametrize("page", [API_MD, CONFIG_MD, ROOT / "README.md"], ids=lambda p: p.name)
def test_the_pages_point_only_to_files_in_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "contracts/" not in text
    for ref in set(re.findall(r"(?<![\w/.-])((?:docs|tests|terminald|drivers|spool|bench|scripts)/[\w./-]*\w)", text)):
        assert (ROOT / ref).exists(), f"{page.name} names {ref}, which is not in the repository"
