"""`terminald demo --mirror`: the day's records copied to a PostgreSQL of the demo's own.

`start_mirror` starts a primary and its synchronous standby in the demo's work directory (the
test suite's pair starter, tests/fixtures/postgres.py, used as a library as bench/mirror.py
does: a source checkout with the test install, which also installs PostgreSQL), then sets the
database up as IT would (docs/mirror.md, section 2): an owner with CREATEROLE, `terminald mirror
init-db --terminal T0001` (schema, fleet view, row-level security; the role lines run as that
owner), and a reader login in `terminald_reader`. The counter's `[mirror]` names both servers
and the terminal's own role.

During the day `DemoMirror` shows the mirror's state as `/v1/status` reports it: after a sale;
while the primary is stopped during the outage (sales answered as before, records waiting, the
lag growing); catching up once the primary is back. At the end it compares the mirror with the
spool (every seq, hash and status) and prints the fleet table as `terminald fleet` does, read
with the reader role. It stops only the two servers it started.

When PostgreSQL cannot run, `start_mirror` returns the reason instead: the day is played
without the mirror.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from terminald.sim.counter import TERMINAL, Counter, DemoFailed
from terminald.sim.demo import console, say
from terminald.sim.postgres import PgPair, pg_unavailable_reason, start_pair

__all__ = ["DemoMirror", "start_mirror"]

DBNAME = "terminald"
ADMIN = "terminald_admin"  # the database's owner, who runs init-db (docs/mirror.md, section 1)
READER = "it_wang"  # IT's login, a member of terminald_reader (docs/mirror.md, section 2)
LAG_ALARM_S = 60
RETRY_MAX_S = 1  # the primary's return is noticed within about a second
DOWN_AT_LEAST_S = 3.0  # the primary stays stopped this long at least: the lag visibly grows
CATCH_UP_S = 30
FLEET_WAIT_S = 45  # the heartbeat goes every 30 s, and at once when the mode changes or the backlog empties


def start_mirror(work: Path) -> DemoMirror | str:
    """The running pair, set up as IT would; or why PostgreSQL cannot run here."""
    reason = pg_unavailable_reason()
    if reason:
        return str(reason)
    if os.geteuid() == 0:
        # The servers run as the postgres user: it must reach its directory inside the work dir.
        os.chmod(work, 0o711)
    try:
        pair = start_pair(work)
    except (RuntimeError, OSError, subprocess.SubprocessError, AssertionError) as exc:
        return f"it is installed but did not start: {(str(exc).strip() or type(exc).__name__).splitlines()[0]}"
    mirror = DemoMirror(pair)
    try:
        mirror.set_up()
    except BaseException:
        pair.close()
        raise
    return mirror


def _terminald(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "terminald.cli", *args], capture_output=True, text=True,
                          timeout=60, check=False)


class DemoMirror:
    """The demo's PostgreSQL pair and what the day shows of the mirror."""

    def __init__(self, pair: PgPair) -> None:
        self.pair = pair
        self.facts: dict[str, Any] = {}

    # -- set-up, as IT does it ---------------------------------------------------------------------
    def set_up(self) -> None:
        from terminald.mirror.schema import READER_ROLE, role_name

        pair = self.pair
        with pair.admin() as conn:  # the superuser (sudo -u postgres psql)
            conn.execute(f"CREATE ROLE {ADMIN} LOGIN CREATEROLE")
            conn.execute(f"CREATE DATABASE {DBNAME} OWNER {ADMIN}")
        admin_dsn = pair.dsn(DBNAME, user=ADMIN)
        done = _terminald("mirror", "init-db", "--dsn", admin_dsn, "--terminal", TERMINAL)
        if done.returncode != 0:
            raise DemoFailed(f"terminald mirror init-db exited {done.returncode}: {done.stderr.strip()}")
        role_lines = [line for line in done.stdout.splitlines() if line.strip() and not line.startswith("--")]
        with self._connect(admin_dsn, "terminald demo (IT, psql -f roles.sql)") as conn:
            for line in role_lines:  # roles.sql, run as the same owner
                conn.execute(line)
            conn.execute(f"CREATE ROLE {READER} LOGIN IN ROLE {READER_ROLE}")
        self.role = role_name(TERMINAL)
        ok = next((line for line in done.stderr.splitlines() if "OK" in line), "").replace("OK ", "", 1)
        say("07:50", f"IT sets up the mirror: PostgreSQL {pair.bindir.parent.name}, primary :{pair.primary.port} "
                     f"with a synchronous standby :{pair.standby.port} (in the demo's directory)")
        say("", f"`terminald mirror init-db --terminal {TERMINAL}`: {ok}; role {self.role} (its own rows only), "
                f"{READER} reads every counter (terminald_reader)")

    def config(self) -> str:
        """The counter's `[mirror]`: both servers, the terminal's own role."""
        return (f'[mirror]\ndsn = "{self.pair.dsn(DBNAME, user=self.role)}"\n'
                f"lag_alarm_s = {LAG_ALARM_S}\nretry_max_s = {RETRY_MAX_S}\n")

    @staticmethod
    def _connect(dsn: str, application_name: str) -> Any:
        from terminald.mirror.connect import conninfo, sync_connect

        return sync_connect(conninfo(dsn, application_name=application_name))

    # -- during the day ----------------------------------------------------------------------------
    @staticmethod
    def _state(counter: Counter) -> dict[str, Any]:
        section: dict[str, Any] = counter.status().get("mirror") or {}
        if not section.get("enabled"):
            raise DemoFailed("/v1/status shows no mirror although [mirror] dsn is set")
        return section

    def _caught_up(self, counter: Counter, timeout_s: float = CATCH_UP_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            m = self._state(counter)
            if m["unmirrored"] == 0 and m["mirrored_seq"] is not None and m["mirrored_seq"] == m["spool_seq"]:
                return m
            if m["alarms"] and any(a["code"] != "mirror_lag" for a in m["alarms"]):
                raise DemoFailed(f"the mirror raised an alarm: {m['alarms']}")
            if time.monotonic() > deadline:
                raise DemoFailed(f"the mirror did not catch up within {timeout_s:g} s: {m}")
            time.sleep(0.1)

    def show(self, counter: Counter) -> None:
        """The mirror's line of /v1/status once the sale is copied."""
        m = self._caught_up(counter)
        say("", f"mirror (/v1/status): seq {m['mirrored_seq']} of {m['spool_seq']} copied to PostgreSQL "
                f"{m['server']}, {m['unmirrored']} waiting, lag {m['lag_s']:.2f} s")

    def sold(self, counter: Counter, r: httpx.Response) -> None:
        """A sale made while the primary is stopped: how fast it was answered, and the lag."""
        m = self._state(counter)
        say("", f"sale answered {r.status_code} in {r.elapsed.total_seconds() * 1000:.0f} ms; mirror (/v1/status): "
                f"{m['unmirrored']} record(s) waiting, lag {m['lag_s'] or 0:.1f} s")

    @contextlib.contextmanager
    def primary_stopped(self, counter: Counter) -> Iterator[None]:
        """The primary stopped for the body (sales go on), then started; the catch-up shown."""
        pair = self.pair
        before = self._caught_up(counter)
        started = time.monotonic()
        pair.stop(pair.primary, "fast")
        say("", f"[bold]the hospital's PostgreSQL primary stops[/] (:{pair.primary.port}); the standby takes "
                "no writes: the mirror has nowhere to copy to, sales go on")
        yield
        time.sleep(max(DOWN_AT_LEAST_S - (time.monotonic() - started), 0))
        m = self._state(counter)
        down_s = time.monotonic() - started
        if not m["unmirrored"]:
            raise DemoFailed(f"with the primary stopped the mirror shows no lag: {m}")
        waiting, lag_s = m["unmirrored"], m["lag_s"] or 0.0
        say("", f"after {down_s:.1f} s without the primary: {waiting} record(s) only on this PC's disk, lag "
                f"{lag_s:.1f} s and growing (alarm after {m['lag_alarm_s']:g} s); the copier retries: "
                f"{m['last_error'] or '-'}")
        back = time.monotonic()
        pair.start(pair.primary)
        pair.wait_sync()
        m = self._caught_up(counter)
        caught_up_s = time.monotonic() - back
        first, last = before["mirrored_seq"] + 1, m["mirrored_seq"]
        copied = f"seq {first}" if first == last else f"seq {first}..{last}"
        say("", f"the primary is back: the mirror caught up in {caught_up_s:.1f} s ({copied} copied): seq "
                f"{m['mirrored_seq']} of {m['spool_seq']}, {m['unmirrored']} waiting, lag {m['lag_s']:.2f} s")
        self.facts["outage"] = {"down_s": down_s, "waiting": waiting, "lag_s": lag_s, "caught_up_s": caught_up_s}

    # -- at the end --------------------------------------------------------------------------------
    def finish(self, counter: Counter) -> None:
        """The mirror equals the spool; the fleet table as IT sees it (read with the reader role)."""
        self._caught_up(counter)
        equal = self._until(lambda: self._compare(counter), CATCH_UP_S, "the mirror to equal the spool")
        count, last_seq, last_hash = equal
        self.facts.update(records=count, last_seq=last_seq, last_hash=last_hash)
        say("18:10", f"mirror = spool: {count} records, last seq {last_seq}, last hash {last_hash[:16]}…; every "
                     "seq, hash and status equal")
        self._fleet(counter)

    @staticmethod
    def _until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            found = check()
            if not isinstance(found, str):
                return found
            if time.monotonic() > deadline:
                raise DemoFailed(f"timed out waiting for {what}: {found}")
            time.sleep(0.2)

    def _compare(self, counter: Counter) -> tuple[int, int, str] | str:
        """(count, last seq, last hash) when the mirror's rows are the spool's; else what differs."""
        from spool import Spool

        with Spool.open_readonly(counter.state / "spool.db", TERMINAL) as spool:
            local = [(r.seq, r.hash, r.status) for r in spool.records(limit=1_000_000)]
        with self._connect(self.pair.dsn(DBNAME, user=READER), "terminald demo (IT)") as conn:
            rows = conn.execute("SELECT seq, hash, status FROM terminald_records WHERE terminal_id = %s ORDER BY seq",
                                (TERMINAL,)).fetchall()
        mirrored = [(int(seq), str(digest), str(status)) for seq, digest, status in rows]
        if not local:
            return "the spool is empty"
        if mirrored != local:
            differ = sorted(set(mirrored) ^ set(local))[:4]
            return f"mirror {len(mirrored)} rows, spool {len(local)} records; differing: {differ}"
        return len(local), local[-1][0], local[-1][1]

    def _fleet(self, counter: Counter) -> None:
        from terminald.cli.mirror import show_fleet
        from terminald.mirror.fleet import fleet_rows

        status = counter.status()
        spool = status["spool"]
        say("18:30", f"IT's fleet view (`terminald fleet`, read as {READER}), once the counter's heartbeat "
                     "(every 30 s) reports the end of the day:")

        def fresh() -> Any:
            with self._connect(self.pair.dsn(DBNAME, user=READER), "terminald fleet (demo)") as conn:
                rows = fleet_rows(conn)
            mine = [row for row in rows if row.terminal_id == TERMINAL]
            if (len(mine) == 1 and mine[0].pending == spool["pending"] and mine[0].mode == status["mode"]
                    and mine[0].spool_last_seq == spool["last_seq"] and mine[0].mirror_lag_records == 0):
                return rows
            return f"fleet rows {[row.as_dict() for row in mine]}"

        asked = time.monotonic()
        rows = self._until(fresh, FLEET_WAIT_S, "the fleet row to show the end of the day")
        show_fleet(rows, console)
        say("", f"(the counter's row as of its heartbeat {time.monotonic() - asked:.0f} s later: what IT sees in "
                "psql or Grafana with the same query, docs/operations.md)")
        self.facts["fleet"] = rows[0].as_dict()

    def print_summary(self) -> None:
        f = self.facts
        console.print(f"mirror: PostgreSQL holds {f['records']} records = the spool (last seq {f['last_seq']}, "
                      f"last hash {f['last_hash'][:16]}…)")
        o = f.get("outage")
        if o:
            console.print(f"mirror outage: primary stopped {o['down_s']:.1f} s, {o['waiting']} record(s) waited "
                          f"(lag {o['lag_s']:.1f} s), caught up {o['caught_up_s']:.1f} s after it came back")
        row = f["fleet"]
        console.print(f"fleet: {row['terminal_id']} {row['mode']}, pending {row['pending']}, mirror lag "
                      f"{row['mirror_lag_records']} records")

    def stop(self, keep: bool) -> None:
        """Stop the two servers this demo started (their files stay with --keep)."""
        if keep:
            for node in list(self.pair.started):
                with contextlib.suppress(OSError):
                    self.pair.stop(node, "fast")
        else:
            self.pair.close()
