"""The status page shell and its assets over HTTP (the browser test drives the page itself)."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from terminald.web.routes import ASSETS
from tests.fixtures.daemon import DaemonProcess


@pytest.fixture
def daemon(daemon_proc: Callable[..., DaemonProcess]) -> DaemonProcess:
    return daemon_proc("[offline]\ndeadline_working_days = 7\n")


def test_shell_is_public_strict_and_carries_no_secret(daemon: DaemonProcess) -> None:
    response = httpx.get(daemon.url + "/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert daemon.token not in response.text
    assert '<meta name="terminald-deadline-days" content="7">' in response.text
    # Everything the page loads is local: no CDN, no absolute URL.
    refs = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert refs and all(ref.startswith("/") and not ref.startswith("//") for ref in refs)
    for ref in refs:
        assert httpx.get(daemon.url + ref).status_code == 200, ref


def test_assets_are_served_with_their_type_and_revalidate(daemon: DaemonProcess) -> None:
    for name, content_type in ASSETS.items():
        first = httpx.get(f"{daemon.url}/static/{name}")
        assert first.status_code == 200, name
        assert first.headers["content-type"] == content_type
        assert first.headers["x-content-type-options"] == "nosniff"
        again = httpx.get(f"{daemon.url}/static/{name}", headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304, name
        assert "http://" not in first.text and "https://" not in first.text, "no remote resources"
    favicon = httpx.get(daemon.url + "/favicon.ico")
    assert favicon.status_code == 200 and favicon.headers["content-type"] == "image/svg+xml"


def test_anything_else_under_static_is_not_found(daemon: DaemonProcess) -> None:
    for path in ("/static/index.html", "/static/%2e%2e%2froutes.py", "/static/..%2F..%2Fdaemon.py",
                 "/static/nope.js", "/static/"):
        response = httpx.get(daemon.url + path)
        assert response.status_code in (401, 404), path  # never 200: no path reaches the file system
        assert response.headers["content-type"] == "application/problem+json"


def test_the_data_behind_the_page_still_needs_the_token(daemon: DaemonProcess) -> None:
    for path in ("/v1/status", "/v1/outages", "/v1/transactions?status=rejected", "/v1/events"):
        assert httpx.get(daemon.url + path).status_code == 401, path


def test_both_languages_have_the_same_texts() -> None:
    from importlib import resources

    source = resources.files("terminald.web").joinpath("static", "i18n.js").read_text(encoding="utf-8")
    zh = source[source.index('"zh-CN": {'):source.index("    en: {")]
    en = source[source.index("    en: {") + len("    en: {"):source.index("  const KEY")]
    keys = re.compile(r"([a-z0-9_]+):\s*[{\"]")

    def names(block: str) -> list[str]:
        return sorted(keys.findall(re.sub(r'"(?:[^"\\]|\\.)*"', '""', block)))  # values emptied first

    assert len(names(zh)) > 150
    assert names(zh) == names(en)
    # The sentences for causes and codes are a table of their own, the same in both languages.
    code_zh = zh[zh.index("code: {"):zh.index("},", zh.index("code: {"))]
    code_en = en[en.index("code: {"):en.index("},", en.index("code: {"))]
    assert {"connect_failed", "planned_downtime", "not_insured", "print_interrupted"} <= set(names(code_zh))
    assert names(code_zh) == names(code_en)


def test_the_page_has_no_way_to_record_a_refund() -> None:
    """The status page's token may resolve rejections and reprint, never hand over money: the page
    neither calls the refund endpoint nor offers to (it sends staff to the POS)."""
    from importlib import resources

    static = resources.files("terminald.web").joinpath("static")
    app = static.joinpath("app.js").read_text(encoding="utf-8")
    assert "/refund" not in app
    assert "/resolve" in app and "/retry" in app
    i18n = static.joinpath("i18n.js").read_text(encoding="utf-8")
    assert "请在收银系统登记退款（状态页不能登记" in i18n
    assert "record it at the POS (not from this page" in i18n
