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
