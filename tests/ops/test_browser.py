"""The status page in a real browser: Debian's chromium driven by Python playwright.

A real daemon with central down: the page shows OFFLINE 离线 and the backlog;
central comes back and the page follows over the event stream (fetch
streaming with the bearer token) to 在线, an empty backlog and one rejected
record, whose reprint button queues a job. Then the language switch, and a
screenshot in test-artifacts/status-page.png. The page runs on the status
page's read-only token (what its desktop shortcut carries), never the POS's,
and every answer it receives has card numbers already masked.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from terminald.sim.central import CentralSim
from terminald.sim.printer import PrinterSim
from tests.fixtures.daemon import DaemonProcess
from tests.ops._helpers import TYPED_CARD, TYPED_NAME, TYPED_SSN, post_transaction, settlement
from tests.waiting import wait_for

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
# Live updates must come from the event stream: the page's own poll is every 30 s.
LIVE_TIMEOUT_MS = 20_000


def status_page_token(d: DaemonProcess) -> str:
    """The read-only token of the status page (`api.status_token_file`, beside the POS's)."""
    return d.token_path.with_name("status-token").read_text(encoding="ascii").strip()


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=ARGS,
            viewport={"width": 1280, "height": 1000}, locale="zh-CN")
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def test_status_page_live_offline_to_online_reprint_and_language(
        browser_page: Any, daemon_proc: Callable[..., DaemonProcess], central_sim: CentralSim) -> None:
    from playwright.sync_api import expect

    page = browser_page
    central_sim.control(down=True)
    central_sim.control(not_insured=[TYPED_CARD])
    d = daemon_proc(f'[upstream]\nurl = "{central_sim.url}"\n[offline]\nrequire_card_present = false\n'
                    '[terminal]\ninstitution_name = "测试大药房"\n')
    api = d.client()
    wait_for(lambda: api.get("/v1/status").json()["mode"] == "offline", 20, "the daemon to see central down")
    other = {"card_number": "C30000789", "ssn": "110101199001011237", "name": "李四", "issuer_code": ""}
    for body in (settlement(), settlement(card=other, total_fen=1800)):
        assert post_transaction(api, body, wait=0).status_code == 202

    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    responses: list[Any] = []
    page.on("response", lambda res: responses.append(res))

    token = status_page_token(d)
    assert token != d.token
    page.goto(f"{d.url}/#token={token}")
    expect(page.locator("#mode-text")).to_have_text("离线")
    expect(page.locator("#mode-alt")).to_have_text("OFFLINE")
    expect(page.locator("#mode")).to_have_attribute("data-mode", "offline")
    expect(page.locator("#pending-count")).to_have_text("2")
    expect(page.locator("#pending-amount")).to_have_text("¥43.00")
    expect(page.locator("#deadline")).to_contain_text("剩")
    expect(page.locator("#institution")).to_have_text("测试大药房")
    expect(page.locator("#live")).to_have_attribute("data-state", "ok")
    # The token left the address bar (and was never sent as part of a URL).
    assert "token" not in page.url
    assert page.evaluate("sessionStorage.getItem('terminald.token')") == token
    assert not any(token in url for url in requests)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "status-page-offline.png"), full_page=True)

    central_sim.control(down=False)  # recovery: the uploader drains, the page follows live
    expect(page.locator("#mode-text")).to_have_text("在线", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#pending-count")).to_have_text("0", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#deadline")).to_have_text("无待上传")
    row = page.locator("#rejected tbody tr")
    expect(row).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(row).to_contain_text("欧**珠")
    expect(row).to_contain_text("¥25.00")
    expect(page.locator("#outages tbody tr")).not_to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    # Both sales were outage sales: one rejected (settle as self-pay), one settled with the
    # fund's share owed back to the patient. The page shows both to follow up, and what is owed.
    followups = api.get("/v1/followups").json()
    assert followups["count"] == 2 and followups["owed_fen"] > 0
    expect(page.locator("#followups-count")).to_have_text("2", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#refunds-owed")).to_have_text(f"¥{followups['owed_fen'] / 100:.2f}")
    assert any(url.endswith("/v1/events") for url in requests)

    content = page.content()
    for secret in (TYPED_NAME, TYPED_SSN, TYPED_CARD):
        assert secret not in content
    # Not only shown masked: the answers themselves never carried the card number (the event
    # stream is still open; its events are masked where they are made).
    answers = [res for res in responses if "/v1/" in res.url and not res.url.endswith("/v1/events")]
    assert any("/v1/transactions" in res.url for res in answers)
    for res in answers:
        assert res.status == 200, res.url
        body = res.text()
        for secret in (TYPED_NAME, TYPED_SSN, TYPED_CARD, other["card_number"]):
            assert secret not in body, res.url

    row.locator("button.reprint").click()
    message = page.locator("#message")
    expect(message).to_contain_text("已提交打印")
    job_id = message.inner_text().split("(")[-1].rstrip(")")
    assert api.get(f"/v1/print-jobs/{job_id}").status_code == 200

    page.locator("#lang").click()
    expect(page.locator("#mode-text")).to_have_text("Online")
    expect(page.locator("#lang")).to_have_text("中文")
    expect(page.locator("h2[data-i18n=backlog_title]")).to_have_text("Backlog (re-entry)")
    expect(row.locator("button.reprint")).to_have_text("Reprint receipt")
    assert page.evaluate("document.documentElement.lang") == "en"
    page.reload()  # language and token survive a reload
    expect(page.locator("#mode-text")).to_have_text("Online")
    expect(page.locator("#pending-count")).to_have_text("0")
    page.locator("#lang").click()
    expect(page.locator("#mode-text")).to_have_text("在线")

    page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)
    assert (ARTIFACTS / "status-page.png").stat().st_size > 10_000
    assert errors == []


def test_a_wrong_token_asks_for_the_right_one(browser_page: Any,
                                              daemon_proc: Callable[..., DaemonProcess]) -> None:
    from playwright.sync_api import expect

    page = browser_page
    d = daemon_proc()
    page.goto(f"{d.url}/#token=not-the-token")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#login-error")).to_have_text("令牌无效，请重新输入。")
    page.locator("#token-input").fill(status_page_token(d))
    page.locator("#login-form button").click()
    expect(page.locator("#board")).to_be_visible()
    expect(page.locator("#mode-text")).to_have_text("离线")  # no upstream configured
    expect(page.locator("#printers li")).to_contain_text("receipt")


def test_without_a_token_the_page_asks_and_loads_nothing(browser_page: Any,
                                                         daemon_proc: Callable[..., DaemonProcess]) -> None:
    from playwright.sync_api import expect

    page = browser_page
    d = daemon_proc()
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.goto(d.url + "/")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#board")).to_be_hidden()
    assert not [url for url in requests if "/v1/" in url]


def test_chromium_is_the_debian_one() -> None:
    # The test above must not silently use a downloaded browser.
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed")
    assert shutil.which("chromium") == str(CHROMIUM)


def test_planned_downtime_is_shown_as_停机_with_its_end(browser_page: Any, central_sim: CentralSim,
                                                      daemon_proc: Callable[..., DaemonProcess]) -> None:
    from datetime import datetime, timedelta

    from playwright.sync_api import expect

    now = datetime.now().astimezone()
    start, end = (now - timedelta(hours=1)).isoformat(timespec="seconds"), (now + timedelta(days=2)).isoformat(
        timespec="seconds")
    d = daemon_proc(f'[upstream]\nurl = "{central_sim.url}"\n'
                    f'[[downtime]]\nstart = "{start}"\nend = "{end}"\nreason = "切换国家医保信息平台"\n')
    page = browser_page
    page.goto(f"{d.url}/#token={status_page_token(d)}")
    expect(page.locator("#mode")).to_have_attribute("data-mode", "planned_downtime", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#mode-text")).to_have_text("停机")
    expect(page.locator("#mode-alt")).to_have_text("PLANNED DOWNTIME")
    expect(page.locator("#mode-detail")).to_contain_text("切换国家医保信息平台")
    expect(page.locator("#mode-advice")).to_contain_text("计划停机")


# -- the counter's chores, in words staff read ----------------------------------------------------------
CONNECT_FAILED = {"zh-CN": "无法连接医保中心（网络或服务器故障）",
                  "en": "Cannot reach the central system (network or server down)"}
NOT_INSURED = {"zh-CN": "未参保或参保状态异常", "en": "Not insured, or the insurance status is irregular"}
# Codes the daemon emits that must never reach the page as such: each is shown as a sentence.
RAW_CODES = ("connect_failed", "not_insured", "print_interrupted", "planned:", "self_pay", "voided")


def collect_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return errors


def visible_text(page: Any) -> str:
    return str(page.locator("body").inner_text())


def assert_no_raw_code(page: Any) -> None:
    text = visible_text(page)
    for code in RAW_CODES:
        assert code not in text, code


def test_rejections_resolved_from_the_page_in_words_staff_read(
        browser_page: Any, daemon_proc: Callable[..., DaemonProcess], central_sim: CentralSim) -> None:
    """Central down, then back: two sales of a card central says is not insured come back
    rejected, one insured sale is settled with the fund's share owed to the patient. From the
    page, in zh-CN: the cause is a sentence (never `connect_failed`), a mistaken click is
    cancelled, one rejection is settled as self-pay and the other voided (a note with it); the
    rows leave, the API agrees; the refund is listed with where to record it. Then in English."""
    from playwright.sync_api import expect

    page = browser_page
    central_sim.control(down=True)
    central_sim.control(not_insured=[TYPED_CARD])
    d = daemon_proc(f'[upstream]\nurl = "{central_sim.url}"\n[offline]\nrequire_card_present = false\n')
    api = d.client()
    wait_for(lambda: api.get("/v1/status").json()["upstream"]["cause"] == "connect_failed", 20,
             "the daemon to find central unreachable")
    insured = {"card_number": "C30000789", "ssn": "110101199001011237", "name": "李四", "issuer_code": ""}
    first, second, owed = (post_transaction(api, body, wait=0).json() for body in (
        settlement(total_fen=2500), settlement(total_fen=1200), settlement(card=insured, total_fen=1800)))

    errors = collect_errors(page)
    page.goto(f"{d.url}/#token={status_page_token(d)}")
    expect(page.locator("#mode-text")).to_have_text("离线")
    expect(page.locator("#cause")).to_have_text(CONNECT_FAILED["zh-CN"])
    assert_no_raw_code(page)

    central_sim.control(down=False)  # the backlog goes up: two rejections, one settlement
    rows = page.locator("#rejected tbody tr")
    expect(rows).to_have_count(2, timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#mode-text")).to_have_text("在线")
    expect(rows.first).to_contain_text(NOT_INSURED["zh-CN"])
    outage = page.locator("#outages tbody tr").first
    expect(outage).to_contain_text(CONNECT_FAILED["zh-CN"])
    # Follow-ups: both rejections and the refund owed for the outage sale that central settled.
    followups = page.locator("#followups tbody tr")
    expect(followups).to_have_count(3, timeout=LIVE_TIMEOUT_MS)
    refund = page.locator(f'#followups tr[data-id="{owed["id"]}"]')
    owed_fen = api.get(f"/v1/transactions/{owed['id']}").json()["refund_owed_fen"]
    assert owed_fen > 0
    expect(refund).to_contain_text(f"¥{owed_fen / 100:.2f}")
    expect(refund).to_contain_text("请在收银系统登记退款")
    expect(refund.locator("button")).to_have_count(0)  # a refund is the POS's call, never the page's
    assert_no_raw_code(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "status-page-chores.png"), full_page=True)

    # A mistaken click: the dialog asks, 取消 leaves everything as it was.
    row = page.locator(f'#rejected tr[data-id="{first["id"]}"]')
    row.locator("button.self-pay").click()
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    expect(page.locator("#confirm-title")).to_have_text("确认按自费结算？")
    expect(page.locator("#confirm-record")).to_contain_text(f"序号 {first['seq']}")
    expect(page.locator("#confirm-record")).to_contain_text("¥25.00")
    page.locator("#confirm-cancel").click()
    expect(dialog).to_be_hidden()
    expect(rows).to_have_count(2)
    assert api.get(f"/v1/transactions/{first['id']}").json()["status"] == "rejected"

    # Settled as self-pay, with a note.
    row.locator("button.self-pay").click()
    page.locator("#confirm-note").fill("患者同意自费")
    expect(page.locator("#confirm-ok")).to_have_text("确认按自费结算")
    page.locator("#confirm-ok").click()
    expect(dialog).to_be_hidden()
    expect(row).to_have_count(0)
    expect(rows).to_have_count(1)
    message = page.locator("#message")
    expect(message).to_contain_text(f"已按自费结算：序号 {first['seq']}")
    resolved = api.get(f"/v1/transactions/{first['id']}").json()
    assert resolved["status"] == "resolved", resolved
    assert resolved["resolution"]["resolution"] == "self_pay" and resolved["resolution"]["note"] == "患者同意自费"

    # Voided, no note.
    other = page.locator(f'#rejected tr[data-id="{second["id"]}"]')
    other.locator("button.void").click()
    expect(page.locator("#confirm-title")).to_have_text("确认作废？")
    page.locator("#confirm-ok").click()
    expect(rows).to_have_count(0)
    expect(page.locator("#rejected-empty")).to_be_visible()
    expect(message).to_contain_text(f"已作废：序号 {second['seq']}")
    voided = api.get(f"/v1/transactions/{second['id']}").json()
    assert voided["status"] == "resolved" and voided["resolution"]["resolution"] == "voided", voided
    assert [r["id"] for r in api.get("/v1/transactions", params={"status": "rejected"}).json()["items"]] == []
    # They leave the follow-ups as rejections: the refund stays, and the voided outage sale now
    # owes the patient all they paid, to be handed back (and recorded) at the POS.
    assert voided["refund_owed_fen"] == voided["paid_at_counter_fen"] == voided["total_fen"] > 0, voided
    expect(followups).to_have_count(2, timeout=LIVE_TIMEOUT_MS)
    void_refund = page.locator(f'#followups tr[data-id="{second["id"]}"]')
    expect(void_refund).to_contain_text(f"¥{voided['total_fen'] / 100:.2f}")
    expect(void_refund).to_contain_text("请在收银系统登记退款")
    expect(void_refund.locator("button")).to_have_count(0)
    expect(page.locator("#rejected-count")).to_have_text("0")
    assert_no_raw_code(page)

    page.locator("#lang").click()
    expect(message).to_contain_text(f"Voided: seq {second['seq']}")
    expect(outage).to_contain_text(CONNECT_FAILED["en"])
    expect(refund).to_contain_text("record it at the POS")
    expect(page.locator("h2[data-i18n=followups_title]")).to_have_text("Patients to contact")
    expect(page.locator("#rejected-empty")).to_have_text("None")
    assert_no_raw_code(page)
    for zh in (CONNECT_FAILED["zh-CN"], "登记退款", "按自费结算"):
        assert zh not in visible_text(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "status-page-chores-en.png"), full_page=True)
    assert errors == []


def test_rejection_buttons_in_english_and_a_refused_resolve(
        browser_page: Any, daemon_proc: Callable[..., DaemonProcess], central_sim: CentralSim) -> None:
    """In English: the buttons, the dialog and the message; a record resolved meanwhile (by the
    POS) is refused in a sentence (`invalid_transition` is not shown) and leaves the table."""
    from playwright.sync_api import expect

    page = browser_page
    central_sim.control(not_insured=[TYPED_CARD])
    d = daemon_proc(f'[upstream]\nurl = "{central_sim.url}"\n[offline]\nrequire_card_present = false\n')
    api = d.client()
    first, second = (post_transaction(api, settlement(total_fen=n), wait=10).json() for n in (2500, 800))
    assert first["status"] == second["status"] == "rejected", (first, second)

    errors = collect_errors(page)
    page.goto(f"{d.url}/#token={status_page_token(d)}")
    rows = page.locator("#rejected tbody tr")
    expect(rows).to_have_count(2)
    page.locator("#lang").click()
    expect(rows.first).to_contain_text(NOT_INSURED["en"])
    row = page.locator(f'#rejected tr[data-id="{first["id"]}"]')
    expect(row.locator("button.self-pay")).to_have_text("Settle as self-pay")
    expect(row.locator("button.void")).to_have_text("Void")
    row.locator("button.self-pay").click()
    expect(page.locator("#confirm-title")).to_have_text("Settle as self-pay?")
    expect(page.locator("#confirm-cancel")).to_have_text("Cancel")
    page.locator("#confirm-ok").click()
    expect(page.locator("#message")).to_contain_text(f"Settled as self-pay: seq {first['seq']}")
    expect(rows).to_have_count(1)
    assert api.get(f"/v1/transactions/{first['id']}").json()["resolution"]["resolution"] == "self_pay"

    # The POS voids the other one while the page still shows it: the page's confirm is refused.
    page.locator(f'#rejected tr[data-id="{second["id"]}"] button.self-pay').click()
    assert api.post(f"/v1/transactions/{second['id']}/resolve", json={"resolution": "voided"}).status_code == 200
    page.locator("#confirm-ok").click()
    expect(page.locator("#confirm-error")).to_contain_text("This record was handled already")
    assert "invalid_transition" not in visible_text(page)
    page.locator("#confirm-cancel").click()
    expect(rows).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    assert api.get(f"/v1/transactions/{second['id']}").json()["resolution"]["resolution"] == "voided"
    # Chromium logs the refused call itself (the 409 this test provoked); nothing else went wrong.
    assert [e for e in errors if "status of 409" not in e] == [] and len(errors) == 1, errors


def test_an_unknown_print_job_is_shown_and_reprinted_from_the_page(
        browser_page: Any, daemon_proc: Callable[..., DaemonProcess], printer_sim: PrinterSim) -> None:
    """The printer emulator drops the connection mid-receipt: the job's outcome is `unknown`.
    The page lists it (seq, document, time, printer, what happened in words), 重打 prints it
    again as a new job marked REPRINT, and the page shows the new job's state; in English too."""
    from playwright.sync_api import expect

    page = browser_page
    d = daemon_proc('[offline]\nrequire_card_present = false\n'
                    f'[[printers]]\nname = "counter"\nuri = "{printer_sim.uri}"\ncolumns = 32\n')
    api = d.client()
    tx = post_transaction(api, settlement(), wait=0).json()
    printer_sim.drop_next_connection_after(100)
    cut = api.post(f"/v1/transactions/{tx['id']}/receipt", json={}).json()["job_id"]
    wait_for(lambda: api.get(f"/v1/print-jobs/{cut}").json()["state"] == "unknown", what="the transfer broke")
    printer_sim.clear()

    errors = collect_errors(page)
    assert [j["job_id"] for j in api.get("/v1/print-jobs", params={"state": "unknown"}).json()["items"]] == [cut]
    page.goto(f"{d.url}/#token={status_page_token(d)}")
    row = page.locator(f'#jobs tr[data-id="{cut}"]')
    expect(row).to_have_count(1)
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    for text in (str(tx["seq"]), "医保结算凭条", "counter", "结果不明", "打印中途中断"):
        expect(row).to_contain_text(text)
    assert_no_raw_code(page)
    row.locator("button.retry").click()
    expect(page.locator("#message")).to_contain_text("已提交重打")
    expect(row.locator(".job-state")).to_have_text("已重打，新凭条：已打印", timeout=LIVE_TIMEOUT_MS)
    expect(row.locator("button.retry")).to_have_count(0)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "status-page-print-jobs.png"), full_page=True)

    old = api.get(f"/v1/print-jobs/{cut}").json()
    assert old["state"] == "unknown" and old["retried_by"]
    new = api.get(f"/v1/print-jobs/{old['retried_by']}").json()
    assert new["state"] == "done" and new["reprint"] is True and new["retry_of"] == cut
    assert new["job_id"] in page.locator("#message").inner_text()
    wait_for(lambda: printer_sim.jobs_text(32), what="the reprint came out")
    assert [j.count("重打 REPRINT") for j in printer_sim.jobs_text(32)] == [2]

    page.locator("#lang").click()
    expect(page.locator("h2[data-i18n=jobs_title]")).to_have_text("Receipts whose printing is uncertain")
    expect(row.locator(".job-state")).to_have_text("Reprinted, new receipt: printed")
    expect(row).to_contain_text("Insurance receipt")
    page.reload()  # the old job is retried: it needs nothing more, so it is no longer listed
    expect(page.locator("#jobs-empty")).to_be_visible()
    expect(page.locator("#jobs-empty")).to_have_text("None")
    assert errors == []


def emitted_codes() -> set[str]:
    """Every link cause, alarm code, rejection code (central's simulator) and print-job error code
    the daemon emits, read from the code that emits them."""
    import re

    from drivers.errors import PrinterError
    from terminald.upload import errors
    from terminald.upload.link import NO_UPSTREAM, PLANNED_DOWNTIME, Link
    from terminald.upstream.nhsa import adapter as nhsa_adapter
    from terminald.upstream.nhsa import settle as nhsa_settle
    from terminald.upstream.v1 import errors as v1_errors

    root = Path(__file__).resolve().parents[2]

    def grep(path: str, pattern: str) -> set[str]:
        found = set(re.findall(pattern, (root / path).read_text(encoding="utf-8")))
        assert found, (path, pattern)
        return found

    def subclasses(cls: type) -> set[type]:
        return {cls} | {s for c in cls.__subclasses__() for s in subclasses(c)}

    codes = {c.code for c in subclasses(errors.UpstreamError)} | {c.code for c in subclasses(PrinterError)}
    codes |= grep("terminald/upstream/v1/client.py", r'Unreachable\([^\n]*?"(\w+)"\) from')
    codes |= {errors.Unreachable("x").cause, errors.BadAnswer("x").cause, errors.ServerBusy(503).cause,
              errors.ServerBusy(429).cause, errors.Refused(401, "x").cause, v1_errors.SequenceGap(1, []).cause}
    codes |= grep("terminald/upload/uploader.py", r'(?:alarm|_halt)\(\s*"(\w+)"')
    codes |= {NO_UPSTREAM, PLANNED_DOWNTIME, str(Link().cause)}
    codes |= grep("terminald/sim/central_store.py", r'_reject\("(\w+)"')
    # The national platform adapter: its alarms, and the rejection codes it gives a record.
    codes |= {nhsa_adapter.REVERSAL_REFUSED, nhsa_adapter.RECORD_STUCK, nhsa_settle.REFUSED, nhsa_settle.INVALID}
    codes |= grep("terminald/upstream/nhsa/settle.py", r'rejected\(record, "(\w+)"')
    return codes


def test_every_code_the_daemon_emits_has_a_sentence_in_both_languages(
        browser_page: Any, daemon_proc: Callable[..., DaemonProcess]) -> None:
    """The page's table (i18n.js) against the daemon's own code: no cause, alarm, rejection or
    print error reaches staff as a raw code, in either language."""
    codes = emitted_codes()
    for expected in ("connect_failed", "timeout", "connection_lost", "transport", "http_503", "bad_answer",
                     "chain_broken", "chain_forked", "cursor_ahead", "cursor_regression", "upstream_config",
                     "no upstream configured", "reentry_deadline", "downtime_notice_ignored", "uploader_error",
                     "spool_error", "card_frozen", "not_insured", "original_not_found", "invalid_record",
                     "already_revoked", "print_interrupted", "printer_unavailable"):
        assert expected in codes, expected
    d = daemon_proc()
    page = browser_page
    errors = collect_errors(page)
    page.goto(d.url + "/")  # the texts load with the shell: no token needed
    page.wait_for_function("() => window.TerminaldI18n !== undefined")
    for lang in ("zh-CN", "en"):
        page.evaluate("lang => TerminaldI18n.set(lang)", lang)
        answers = page.evaluate("codes => codes.map(c => [c, TerminaldI18n.knows(c), TerminaldI18n.sentence(c)])",
                                sorted(codes))
        unknown = [code for code, known, _ in answers if not known]
        assert unknown == [], (lang, unknown)
        for code, _, text in answers:
            assert text and code not in text and "_" not in text and "{" not in text, (lang, code, text)
        texts = dict((code, text) for code, _, text in answers)
        assert "503" in texts["http_503"] and "401" in texts["refused_http_401"]
        assert page.evaluate("TerminaldI18n.sentence('connect_failed')") == CONNECT_FAILED[lang]
        # A code the table does not know is shown as it is (or as the fallback given).
        assert page.evaluate("TerminaldI18n.sentence('brand_new_code')") == "brand_new_code"
        assert page.evaluate("TerminaldI18n.sentence('brand_new_code', '中心的说明')") == "中心的说明"
    page.evaluate("TerminaldI18n.set('zh-CN')")
    assert errors == []
