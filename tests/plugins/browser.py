"""A real browser for tests: Debian's ``chromium`` driven headless by Selenium through ``chromedriver``.

``chromium_driver`` (function scope) -> a ``selenium.webdriver.Chrome`` on /usr/bin/chromium with
/usr/bin/chromedriver (never a downloaded browser or driver: Selenium Manager is not used). It skips
with the reason when chromium, chromedriver or selenium is missing, except under ``CI=true``, where it
fails (``./scripts/test`` installs chromium there). Selenium is synchronous: call it through
``asyncio.to_thread`` from async tests so the engine's event loop keeps serving the browser.
``OUTPUT`` (tests/output/, git-ignored) keeps what a run wants to look at afterwards (screenshots).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("KEYTURN_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("KEYTURN_CHROMEDRIVER", "/usr/bin/chromedriver")
OUTPUT = Path(__file__).resolve().parent.parent / "output"


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium chromium-driver; scripts/test does in CI)"
    if not Path(CHROMEDRIVER).exists() and shutil.which("chromedriver") is None:
        return f"{CHROMEDRIVER} is missing (apt-get install -y chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture
def chromium_driver() -> Iterator[Any]:
    reason = _missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--window-size=390,844",  # a phone's viewport
    ):
        options.add_argument(arg)
    driver_path = CHROMEDRIVER if Path(CHROMEDRIVER).exists() else shutil.which("chromedriver")
    driver = webdriver.Chrome(service=Service(str(driver_path)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
