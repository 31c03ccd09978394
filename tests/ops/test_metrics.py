"""/metrics: a per-daemon registry with state read at scrape time and counters fed as things happen."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from spool import SpoolStats
from terminald.cardservice import ReportingCardService
from terminald.metrics import DaemonCollector, Metrics
from terminald.sim.central import CentralSim
from terminald.upload.link import Link
from tests.fixtures.daemon import DaemonProcess
from tests.ops._helpers import post_transaction, settlement
from tests.waiting import wait_for


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(text: str, metric: str, **labels: str) -> float:
    return samples(text)[(metric, tuple(sorted(labels.items())))]


def _iso(delta: timedelta) -> str:
    return (datetime.now().astimezone() - delta).isoformat(timespec="milliseconds")


def fake_daemon(tmp_path: Path, *, link: Link | None = None, spool: Any = "default") -> Any:
    stats = SpoolStats(pending=3, pending_amount_fen=7500, oldest_pending_at=_iso(timedelta(hours=2)),
                       rejected_unresolved=1, settled_total=5, last_seq=9, last_hash="0" * 64)
    (tmp_path / "spool.db").write_bytes(b"x" * 4096)
    readers = [SimpleNamespace(name="Reader 0", card_present=True), SimpleNamespace(name="Reader 1",
                                                                                    card_present=False)]
    return SimpleNamespace(
        version="9.9", instance_id="inst-1",
        cfg=SimpleNamespace(terminal=SimpleNamespace(id="T0001"), spool_path=tmp_path / "spool.db",
                            offline=SimpleNamespace(deadline_working_days=10)),
        spool=SimpleNamespace(stats=lambda: stats, integrity="ok") if spool == "default" else spool,
        uploader=SimpleNamespace(link=link or Link(state="offline", cause="unreachable",
                                                   outage_since=_iso(timedelta(minutes=10)),
                                                   last_ok_at=_iso(timedelta(minutes=11)),
                                                   alarms=[{"code": "reentry_deadline"}])),
        cards=SimpleNamespace(readers=lambda: readers, state="ok"),
        printers={"receipt": object()},
        print_queue=SimpleNamespace(printer_states=lambda: {"receipt": "paper_out"}),
    )


def test_collector_reads_the_daemon_state_at_scrape_time(tmp_path: Path) -> None:
    metrics = Metrics(fake_daemon(tmp_path))
    text = metrics.render().decode()
    assert value(text, "terminald_spool_pending_records") == 3
    assert value(text, "terminald_spool_pending_amount_fen") == 7500
    assert 7100 < value(text, "terminald_spool_oldest_pending_age_seconds") < 7300
    assert value(text, "terminald_spool_rejected_unresolved_records") == 1
    assert value(text, "terminald_spool_size_bytes") == 4096
    assert value(text, "terminald_spool_integrity", state="ok") == 1
    assert value(text, "terminald_upstream_state", state="offline") == 1
    assert value(text, "terminald_upstream_state", state="online") == 0
    assert 590 < value(text, "terminald_upstream_outage_seconds") < 700
    assert value(text, "terminald_upstream_alarms") == 1
    assert value(text, "terminald_printer_state", printer="receipt", state="paper_out") == 1
    assert value(text, "terminald_printer_state", printer="receipt", state="ok") == 0
    assert value(text, "terminald_card_present", reader="Reader 0") == 1
    assert value(text, "terminald_card_readers") == 2
    assert value(text, "terminald_info", version="9.9", terminal_id="T0001", instance_id="inst-1") == 1
    assert value(text, "terminald_spool_reentry_deadline_workdays") == 10


def test_online_means_zero_outage_seconds(tmp_path: Path) -> None:
    link = Link(state="online", cause=None, outage_since=None, last_ok_at=_iso(timedelta(seconds=3)))
    text = Metrics(fake_daemon(tmp_path, link=link)).render().decode()
    assert value(text, "terminald_upstream_outage_seconds") == 0
    assert value(text, "terminald_upstream_state", state="online") == 1
    assert value(text, "terminald_upstream_last_ok_age_seconds") < 60


def test_a_failing_part_does_not_hide_the_others(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise OSError("disk gone")

    daemon = fake_daemon(tmp_path, spool=SimpleNamespace(stats=broken, integrity="ok"))
    text = Metrics(daemon).render().decode()
    assert "terminald_spool_pending_records" not in text
    assert value(text, "terminald_upstream_state", state="offline") == 1
    assert "could not read spool" in caplog.text


def test_counters_follow_events_card_reads_errors_and_commits(tmp_path: Path) -> None:
    metrics = Metrics(fake_daemon(tmp_path))
    happened: list[tuple[str, dict[str, Any]]] = [
        ("transaction.settled", {}), ("transaction.settled", {}), ("transaction.rejected", {}),
        ("upstream.offline", {"planned": False}), ("upstream.offline", {"planned": True})]
    for name, data in happened:
        metrics.observe_event(name, data)
    metrics.observe_card_read("ok")
    metrics.observe_card_read("no_card")
    metrics.observe_upload_error("timeout")
    metrics.observe_upload_error("http_503")
    for seconds in (0.0004, 0.003, 0.2):
        metrics.observe_commit(seconds)
    text = metrics.render().decode()
    assert value(text, "terminald_upload_records_total", outcome="settled") == 2
    assert value(text, "terminald_upload_records_total", outcome="rejected") == 1
    assert value(text, "terminald_upstream_outages_total", planned="false") == 1
    assert value(text, "terminald_upstream_outages_total", planned="true") == 1
    assert value(text, "terminald_upload_errors_total", kind="timeout") == 1
    assert value(text, "terminald_upload_errors_total", kind="http_503") == 1
    assert value(text, "terminald_card_reads_total", outcome="no_card") == 1
    assert value(text, "terminald_events_total", name="transaction.settled") == 2
    assert value(text, "terminald_spool_commit_seconds_count") == 3
    assert value(text, "terminald_spool_commit_seconds_bucket", le="0.0005") == 1
    assert value(text, "terminald_spool_commit_seconds_bucket", le="0.005") == 2


def test_each_daemon_has_its_own_registry(tmp_path: Path) -> None:
    first, second = Metrics(fake_daemon(tmp_path)), Metrics(fake_daemon(tmp_path))  # no duplicate-name error
    first.observe_card_read("ok")
    assert value(first.render().decode(), "terminald_card_reads_total", outcome="ok") == 1
    assert value(second.render().decode(), "terminald_card_reads_total", outcome="ok") == 0
    # Nothing of the process-global registry (process_*, python_*) leaks in.
    assert "process_cpu_seconds_total" not in first.render().decode()
    assert "python_info" not in first.render().decode()


def test_describe_does_not_touch_the_spool(tmp_path: Path) -> None:
    def boom() -> None:
        raise AssertionError("describe must not read the spool")

    collector = DaemonCollector(fake_daemon(tmp_path, spool=SimpleNamespace(stats=boom, integrity="ok")))
    assert list(collector.describe()) == []


# -- a real daemon ------------------------------------------------------------------------------------------
def test_metrics_of_a_running_daemon(daemon_proc: Callable[..., DaemonProcess],
                                     central_sim: CentralSim) -> None:
    central_sim.control(down=True)
    d = daemon_proc(f'[upstream]\nurl = "{central_sim.url}"\n[offline]\nrequire_card_present = false\n'
                    '[card]\nreaders = ["Counter Reader"]\n')
    with d.client() as api:
        assert httpx.get(d.url + "/metrics").status_code == 401
        response = post_transaction(api, settlement(total_fen=4200), wait=0)
        assert response.status_code == 202, response.text
        # A read of a reader that is not configured fails at once, whether pcscd runs or not.
        assert api.post("/v1/card/read", json={"reader": "Another Reader"}).status_code == 503
        text = wait_for(lambda: (t := api.get("/metrics").text) and
                        _total(t, "terminald_upload_errors_total") >= 1 and t,
                        30, "a failed call to central")
        assert value(text, "terminald_spool_pending_records") == 1
        assert value(text, "terminald_spool_pending_amount_fen") == 4200
        assert value(text, "terminald_spool_commit_seconds_count") >= 1
        assert value(text, "terminald_spool_size_bytes") > 0
        assert value(text, "terminald_card_reads_total", outcome="no_reader") == 1
        assert value(text, "terminald_events_total", name="spool.backlog") == 1
        assert "process_cpu_seconds_total" not in text

        central_sim.control(down=False)
        text = wait_for(lambda: (t := api.get("/metrics").text) and
                        value(t, "terminald_upload_records_total", outcome="settled") == 1 and t,
                        30, "the backlog to upload")
        assert value(text, "terminald_spool_pending_records") == 0
        assert value(text, "terminald_spool_oldest_pending_age_seconds") == 0
        assert value(text, "terminald_upstream_state", state="online") == 1
        assert value(text, "terminald_events_total", name="transaction.settled") == 1

        assert api.post(f"/v1/transactions/{response.json()['id']}/receipt", json={}).status_code == 202
        wait_for(lambda: value(api.get("/metrics").text, "terminald_print_jobs", state="done") == 1,
                 30, "the receipt to print")


def _total(text: str, metric: str) -> float:
    return sum(v for (name, _), v in samples(text).items() if name == metric)


def test_promtool_finds_nothing_to_lint(daemon_proc: Callable[..., DaemonProcess]) -> None:
    """Issue #13: a real scrape passes `promtool check metrics` (Debian package `prometheus`)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    d = daemon_proc('[offline]\nrequire_card_present = false\n[card]\nreaders = ["Counter Reader"]\n')
    with d.client() as api:
        response = post_transaction(api, settlement(total_fen=4200), wait=0)
        assert api.post(f"/v1/transactions/{response.json()['id']}/receipt", json={}).status_code == 202
        assert api.post("/v1/card/read", json={"reader": "Another Reader"}).status_code == 503
        text = wait_for(lambda: (t := api.get("/metrics").text) and
                        value(t, "terminald_print_jobs", state="done") == 1 and t, 30, "the receipt to print")
    checked = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True,
                             timeout=60, check=False)
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()


def test_the_daemon_subscribes_its_metrics_to_its_hooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon builds the registry and feeds it through its hooks: commits, failed calls to
    central, card reads (from the card service it builds) and every event it publishes."""
    from drivers.cards.errors import NoReader
    from terminald.config import load_config
    from terminald.daemon import Daemon

    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    daemon = Daemon(load_config(None, card={"readers": ["Counter Reader"]}))
    other: list[str] = []
    daemon.add_card_read_hook(other.append)
    daemon.add_card_read_hook(lambda outcome: 1 / 0)  # a failing observer is logged, never raised
    daemon._on_commit(0.002)
    daemon._on_upload_error("connect_failed")
    daemon.publish("upstream.offline", {"planned": True})
    daemon.publish("transaction.settled")
    # The card service the daemon builds reports each read (built in start(); built here alone).
    cards = ReportingCardService(readers=["Counter Reader"], on_read=daemon._on_card_read)
    with pytest.raises(NoReader):
        cards.read("Another Reader")
    with pytest.raises(ValueError):
        cards.read(None, timeout_s=-1)
    text = daemon.metrics.render().decode()
    assert value(text, "terminald_spool_commit_seconds_count") == 1
    assert value(text, "terminald_upload_errors_total", kind="connect_failed") == 1
    assert value(text, "terminald_upstream_outages_total", planned="true") == 1
    assert value(text, "terminald_upload_records_total", outcome="settled") == 1
    assert value(text, "terminald_events_total", name="transaction.settled") == 1
    assert value(text, "terminald_card_reads_total", outcome="no_reader") == 1
    assert value(text, "terminald_card_reads_total", outcome="ValueError") == 1
    assert other == ["no_reader", "ValueError"]
