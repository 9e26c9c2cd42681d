"""The demo page and /docs in headless Chromium (Debian's chromium and chromedriver, which
scripts/test.sh installs): load, recommend, click an item and see it leave the list, switch
to a brand-new user; /docs renders the API; and no request leaves this machine."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serve.helpers import deploy, embedded_stores

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [pytest.mark.ray, pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver: apt-get install chromium "
           "chromium-driver (scripts/test.sh does)")]


@pytest.fixture(scope="module")
def server(tiny_artifacts: Path, serve_port: int, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[str]:
    from ray import serve

    yield deploy(tiny_artifacts.parent, serve_port,
                 embedded_stores(tmp_path_factory.mktemp("page")))
    serve.delete("warmstart")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    import os

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch a browser or driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def requested(driver: Any) -> list[str]:
    """Every network URL (http, https, ws) the browser asked for since the last call, from
    Chrome's performance log; its own chrome:// pages are not the network."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            url = msg["params"]["request"]["url"]
            if url.split(":", 1)[0] in ("http", "https", "ws", "wss"):
                urls.append(url)
    return urls


def test_the_page_recommends_takes_a_click_and_shows_a_new_user(
        server: str, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(server + "/")
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    version = browser.find_element(By.ID, "version").text
    assert version and version != "…"
    user = browser.find_element(By.ID, "user").get_attribute("value")
    assert user  # an example user from /healthz

    browser.find_element(By.ID, "go").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#items li")) == 12)
    items = browser.find_elements(By.CSS_SELECTOR, "#items li")
    first = items[0].get_attribute("data-item-id")
    assert items[0].find_element(By.CLASS_NAME, "name").text
    assert "score" in items[0].find_element(By.CLASS_NAME, "meta").text
    assert "a known user" in browser.find_element(By.ID, "status").text

    items[0].click()  # POST /events, then the next answer
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "it is gone"))
    after = [li.get_attribute("data-item-id")
             for li in browser.find_elements(By.CSS_SELECTOR, "#items li")]
    assert first not in after and len(after) == 12
    assert browser.find_elements(By.CSS_SELECTOR, "#items li.new")  # what replaced it
    shot = tmp_path / "demo-page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"\nscreenshot: {shot}")

    browser.find_element(By.ID, "cold").click()  # a brand-new user
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "not trained on"))
    assert browser.find_element(By.ID, "user").get_attribute("value").startswith("new-")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#items li")) == 12

    urls = requested(browser)
    assert any(u.endswith("/recommend") for u in urls) and any(u.endswith("/events")
                                                                for u in urls)
    assert all(u.startswith(server) for u in urls), urls


def test_docs_render_from_the_package_with_no_request_leaving(server: str,
                                                               browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server + "/docs")
    WebDriverWait(browser, 60).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock")) >= 4)
    text = browser.find_element(By.CSS_SELECTOR, ".swagger-ui").text
    assert "/recommend" in text and "/events" in text and "/admin/promote" in text
    urls = requested(browser)
    assert any("swagger-ui-bundle.js" in u for u in urls)
    assert all(u.startswith(server) for u in urls), urls
